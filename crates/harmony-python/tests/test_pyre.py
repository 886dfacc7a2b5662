"""harmony.pyre: pyre's API on loopback, against a real pyre node across a veth pair (pyre
ignores loopback), and pyre's own chat example with only its imports changed."""

import inspect
import json
import signal
import subprocess
import sys
import time
import uuid

import pytest
import zmq

import harmony
from conftest import JsonProc, is_event, peer_argv
from harmony.pyre import Pyre, PyreEvent

WAIT = 20.0


def recv_until(node, kind, timeout=WAIT):
    """pyre-style: poll the node's socket, read frames until one of `kind` comes."""
    poller = zmq.Poller()
    poller.register(node.socket(), zmq.POLLIN)
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        items = dict(poller.poll(100))
        if node.socket() in items and items[node.socket()] == zmq.POLLIN:
            frames = node.recv()
            seen.append(frames)
            if frames[0] == kind:
                return frames
    raise AssertionError(f"no {kind} within {timeout} s; saw {seen}")


def loopback_pyre(name, port):
    node = Pyre(name)
    node.set_interface("loopback")
    node.set_port(str(port).encode())  # pyre's set_port takes what zmq's send takes
    node.set_interval(50)
    return node


def test_pyre_api_on_loopback(port):
    a, b = loopback_pyre("a", port), loopback_pyre("b", port)
    a.set_header("X-HELLO", "world")
    a.join("CHAT")  # before start, as pyre's chat example does
    assert a.own_groups() == ["CHAT"]
    a.start()
    b.start()
    b.join("CHAT")
    try:
        enter = recv_until(b, b"ENTER")
        assert enter[1] == a.uuid().bytes and enter[2] == b"a"
        assert json.loads(enter[3]) == {"X-HELLO": "world"}
        assert enter[4] == a.endpoint().encode()
        assert recv_until(b, b"JOIN")[1:] == [a.uuid().bytes, b"a", b"CHAT"]
        assert recv_until(a, b"JOIN")[1:] == [b.uuid().bytes, b"b", b"CHAT"]

        a.shout("CHAT", [b"one", b"two"])
        assert recv_until(b, b"SHOUT") == [b"SHOUT", a.uuid().bytes, b"a", b"CHAT", b"one", b"two"]
        a.shouts("CHAT", "%s-%d", "fmt", 7)
        assert recv_until(b, b"SHOUT")[4:] == [b"fmt-7"]
        b.whisper(a.uuid(), b"w")
        assert recv_until(a, b"WHISPER") == [b"WHISPER", b.uuid().bytes, b"b", b"w"]
        b.whispers(a.uuid(), "text")
        event = PyreEvent(a)
        assert (event.type, event.peer_uuid, event.peer_name, event.msg) == ("WHISPER", b.uuid(), "b", [b"text"])
        b.whisper(uuid.uuid4(), b"dropped")  # pyre drops messages to unknown peers

        assert a.peers() == [b.uuid()] and a.peers_by_group("CHAT") == [b.uuid()]
        assert a.peer_groups() == ["CHAT"] and b.own_groups() == ["CHAT"]
        assert b.get_peer_name(a.uuid()) == "a"
        assert b.peer_address(a.uuid()) == a.endpoint() == b.get_peer_address(a.uuid())
        assert b.peer_header_value(a.uuid(), "X-HELLO") == "world"
        assert b.get_peer_header_value(a.uuid(), "X-NONE") == ""
        assert b.peer_headers(a.uuid()) == {"X-HELLO": "world"}
        assert b.get_peer_name(uuid.uuid4()) == ""
        assert Pyre.version() == (0, 3, 4)
        with pytest.raises(RuntimeError, match="before start"):
            a.set_header("late", "x")
        with pytest.raises(NotImplementedError, match="gossip"):
            a.set_endpoint("tcp://127.0.0.1:1")
    finally:
        a.stop()
    assert recv_until(b, b"EXIT")[1] == a.uuid().bytes
    assert recv_until(a, b"STOP")[1] == a.uuid().bytes
    b.stop()


def test_pyre_bad_arguments():
    node = Pyre("x")
    with pytest.raises(ValueError, match="port must be 1 to 65535"):
        node.set_port(0)
    with pytest.raises(ValueError, match="port must be a number"):
        node.set_port("lots")
    with pytest.raises(ValueError, match="interval must be more than 0"):
        node.set_interval(0)
    with pytest.raises(TypeError, match="group name must be a str"):
        node.join(5)
    with pytest.raises(RuntimeError, match="start"):
        node.recv()
    with pytest.raises(TypeError, match="name must be a str"):
        Pyre(b"bytes")


def pyre_peer(pair, ns, impl, name, *extra):
    argv = peer_argv(impl, name, "CHAT", *extra)
    return JsonProc(f"{impl} {name}", pair.command(ns, *argv))


@pytest.mark.parametrize("impl", ["harmony", "harmony.pyre"])
def test_netns_python_harmony_chats_with_real_pyre(impl, netns_pair, procs):
    pair = netns_pair
    pyre = pyre_peer(pair, pair.a, "pyre", "pyrenode", "X-IMPL=pyre")
    procs.append(pyre)
    ours = pyre_peer(pair, pair.b, impl, "ournode", "--interface", pair.if_b, "X-IMPL=harmony")
    procs.append(ours)
    pyre_id = pyre.expect("STARTED", is_event("STARTED"))["uuid"].lower()
    our_id = ours.expect("STARTED", is_event("STARTED"))["uuid"].lower()

    enter = ours.expect("ENTER of pyre", is_event("ENTER", uuid=pyre_id))
    assert enter["name"] == "pyrenode" and enter["headers"] == {"X-IMPL": "pyre"}
    assert enter["endpoint"].startswith("tcp://10.77.0.1:")
    enter = pyre.expect("ENTER of ours", is_event("ENTER", uuid=our_id))
    # pyre sees a Harmony node's HELLO as it is: its headers plus X-HARMONY, the extensions
    # that Harmony peers may use with it (never sent to pyre).
    headers = dict(enter["headers"])
    assert headers.pop("X-HARMONY", "").startswith("elect"), enter["headers"]
    assert enter["name"] == "ournode" and headers == {"X-IMPL": "harmony"}
    ours.expect("JOIN of pyre", is_event("JOIN", uuid=pyre_id, group="CHAT"))
    pyre.expect("JOIN of ours", is_event("JOIN", uuid=our_id, group="CHAT"))

    ours.send("shout CHAT hello pyre")
    assert pyre.expect("SHOUT", is_event("SHOUT", uuid=our_id))["content"] == ["hello pyre"]
    pyre.send("shout CHAT hello harmony")
    assert ours.expect("SHOUT", is_event("SHOUT", uuid=pyre_id))["content"] == ["hello harmony"]
    ours.send(f"whisper {pyre_id} psst pyre")
    assert pyre.expect("WHISPER", is_event("WHISPER", uuid=our_id))["content"] == ["psst pyre"]
    pyre.send(f"whisper {our_id} psst harmony")
    assert ours.expect("WHISPER", is_event("WHISPER", uuid=pyre_id))["content"] == ["psst harmony"]

    ours.send("stop")
    ours.expect("STOPPED", is_event("STOPPED"))
    pyre.expect("EXIT of ours", is_event("EXIT", uuid=our_id))


def chat_example_source():
    """pyre's own chat example (`chat_task` and the `__main__` block of the installed
    pyre/pyre.py), with its imports replaced by harmony.pyre's."""
    pyre_module = pytest.importorskip("pyre.pyre")
    source = inspect.getsource(pyre_module)
    example = source[source.index("def chat_task(ctx, pipe):"):]
    imports = "\n".join([
        "import logging, sys, uuid",
        "import zmq",
        "from harmony.pyre import Pyre, PyreEvent, zhelper",
        "logger = logging.getLogger(__name__)",
        "raw_input = input",
        "",
    ])
    return imports + example


def test_netns_pyre_chat_example_runs_on_harmony(netns_pair, procs, tmp_path):
    pair = netns_pair
    script = tmp_path / "chat.py"
    script.write_text(chat_example_source())
    pyre = pyre_peer(pair, pair.a, "pyre", "pyrenode")
    procs.append(pyre)
    pyre.expect("STARTED", is_event("STARTED"))
    chat = subprocess.Popen(pair.command(pair.b, sys.executable, "-u", str(script)),
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, bufsize=1)
    try:
        enter = pyre.expect("ENTER of the chat example", is_event("ENTER"))
        pyre.expect("JOIN of the chat example", is_event("JOIN", uuid=enter["uuid"], group="CHAT"))
        chat.stdin.write("hello from the example\n")
        chat.stdin.flush()
        shout = pyre.expect("SHOUT", is_event("SHOUT", uuid=enter["uuid"]))
        assert shout["content"] == ["hello from the example"]
        pyre.send("shout CHAT hello example")
        # The example logs every event it reads from its Pyre node (logger at DEBUG).
        deadline = time.monotonic() + WAIT
        log = []
        while time.monotonic() < deadline:
            line = chat.stderr.readline()
            if not line:
                break
            log.append(line)
            if "NODE_MSG CONT: [b'hello example']" in line:
                break
        else:
            raise AssertionError(f"the example never logged the shout: {log}")
        assert any("NODE_MSG TYPE: ENTER" in l for l in log), log
        assert "NODE_MSG CONT: [b'hello example']" in log[-1], log
    finally:
        chat.send_signal(signal.SIGINT)  # the example's way out: KeyboardInterrupt
        try:
            chat.wait(timeout=10)
        except subprocess.TimeoutExpired:
            chat.kill()
            chat.wait()
