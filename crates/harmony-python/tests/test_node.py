"""harmony.Node: Python nodes among themselves and with the Rust `harmony` program (loopback),
CURVE, the GIL, asyncio, the pollable descriptor and argument errors."""

import asyncio
import os
import select
import signal
import threading
import time
import uuid

import pytest

import harmony
from conftest import JsonProc, is_event

WAIT = 20.0


def wait_for(node, pred, what, timeout=WAIT):
    """The first event of `node` for which pred is true."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        left = deadline - time.monotonic()
        event = node.recv(timeout=max(left, 0.0)) if left > 0 else None
        if event is None:
            raise AssertionError(f"{node.name}: no {what} within {timeout} s; saw {seen}")
        seen.append(event)
        if pred(event):
            return event


def loopback_node(name, port, **kwargs):
    return harmony.Node(name, loopback=True, port=port, interval=0.05, **kwargs)


def test_two_python_nodes_chat_and_answer_queries(port):
    with loopback_node("alice", port, headers={"X-ROLE": "a"}) as alice, \
            loopback_node("bob", port) as bob:
        assert alice.interface == "lo" and alice.endpoint.startswith("tcp://127.0.0.1:")
        alice.join("CHAT")
        bob.join("CHAT")
        enter = wait_for(bob, lambda e: e.type == "ENTER", "ENTER")
        assert enter.peer == alice.uuid and enter.peer_name == "alice"
        assert enter.headers == {"X-ROLE": "a"} and enter.endpoint == alice.endpoint
        wait_for(bob, lambda e: e.type == "JOIN" and e.group == "CHAT", "JOIN")
        wait_for(alice, lambda e: e.type == "JOIN" and e.peer == bob.uuid, "JOIN of bob")

        alice.shout("CHAT", ["hello", b"\x00\xff", bytearray(b"ba"), memoryview(b"mv")])
        shout = wait_for(bob, lambda e: e.type == "SHOUT", "SHOUT")
        assert shout.content == [b"hello", b"\x00\xff", b"ba", b"mv"]
        assert shout.group == "CHAT" and shout.peer_id == alice.uuid.hex

        for peer in (alice.uuid, alice.uuid.hex, str(alice.uuid), alice.uuid.bytes):
            bob.whisper(peer, b"psst")
            whisper = wait_for(alice, lambda e: e.type == "WHISPER", "WHISPER")
            assert whisper.content == [b"psst"] and whisper.peer == bob.uuid and whisper.group is None

        assert alice.peers() == [bob.uuid]
        assert alice.peers_by_group("CHAT") == [bob.uuid]
        assert alice.peers_by_group("NOPE") == []
        assert alice.own_groups() == ["CHAT"] and alice.peer_groups() == ["CHAT"]
        assert bob.peer_name(alice.uuid) == "alice"
        assert bob.peer_address(alice.uuid) == alice.endpoint
        assert bob.peer_header_value(alice.uuid, "X-ROLE") == "a"
        assert bob.peer_header_value(alice.uuid, "X-NONE") is None
        assert bob.peer_headers(alice.uuid) == {"X-ROLE": "a"}
        assert bob.peer_name(uuid.uuid4()) is None

        bob.leave("CHAT")
        wait_for(alice, lambda e: e.type == "LEAVE" and e.group == "CHAT", "LEAVE")
        alice.stop()
        wait_for(bob, lambda e: e.type == "EXIT" and e.peer == alice.uuid, "EXIT")
        assert wait_for(alice, lambda e: e.type == "STOP", "STOP").peer == alice.uuid
        assert alice.recv(timeout=WAIT) is None and alice.finished
        with pytest.raises(harmony.NodeStoppedError):
            alice.shout("CHAT", "too late")


def rust_chat(harmony_bin, name, port, *extra):
    return JsonProc(name, [str(harmony_bin), "chat", "--json", "--name", name, "--group", "CHAT",
                           "--interface", "loopback", "--port", str(port), "--interval-ms", "50",
                           *extra])


def test_python_node_chats_with_rust_node(harmony_bin, port, procs):
    rust = rust_chat(harmony_bin, "rusty", port, "--header", "X-IMPL=rust")
    procs.append(rust)
    rust_id = rust.expect("STARTED", is_event("STARTED"))["uuid"].lower()
    with loopback_node("py", port, headers={"X-IMPL": "python"}) as node:
        node.join("CHAT")
        enter = wait_for(node, lambda e: e.type == "ENTER", "ENTER of the Rust node")
        assert enter.peer_id == rust_id and enter.headers == {"X-IMPL": "rust"}
        wait_for(node, lambda e: e.type == "JOIN" and e.peer_id == rust_id, "JOIN")
        seen = rust.expect("ENTER", is_event("ENTER", name="py"))
        assert seen["headers"] == {"X-IMPL": "python"}
        rust.expect("JOIN", is_event("JOIN", name="py", group="CHAT"))

        node.shout("CHAT", "from python")
        assert rust.expect("SHOUT", is_event("SHOUT", name="py"))["content"] == ["from python"]
        node.whisper(enter.peer, ["two", "frames"])
        assert rust.expect("WHISPER", is_event("WHISPER", name="py"))["content"] == ["two", "frames"]
        rust.send("from rust")
        shout = wait_for(node, lambda e: e.type == "SHOUT", "SHOUT from the Rust node")
        assert shout.content == [b"from rust"] and shout.peer_id == rust_id
        rust.send("/w py whispered")
        whisper = wait_for(node, lambda e: e.type == "WHISPER", "WHISPER from the Rust node")
        assert whisper.content == [b"whispered"]
    rust.expect("EXIT", is_event("EXIT", name="py"))


def test_curve_python_and_rust_nodes_talk_encrypted_and_plain_nodes_stay_out(harmony_bin, port, procs):
    public, secret = harmony.curve_keypair()
    assert len(public) == 40 and len(secret) == 40
    with loopback_node("plain", port) as plain:
        rust = rust_chat(harmony_bin, "rusty", port, "--curve")
        procs.append(rust)
        rust_id = rust.expect("STARTED", is_event("STARTED"))["uuid"].lower()
        with loopback_node("secret", port, curve_secret_key=secret) as node:
            assert node.public_key == public
            node.join("CHAT")
            enter = wait_for(node, lambda e: e.type == "ENTER" and e.peer_id == rust_id, "ENTER")
            assert len(enter.headers["X-PUBLICKEY"]) == 40
            seen = rust.expect("ENTER", is_event("ENTER", name="secret"))
            assert seen["headers"]["X-PUBLICKEY"] == public
            wait_for(node, lambda e: e.type == "JOIN" and e.peer_id == rust_id, "JOIN")
            rust.expect("JOIN", is_event("JOIN", name="secret"))
            node.shout("CHAT", "sealed")
            assert rust.expect("SHOUT", is_event("SHOUT", name="secret"))["content"] == ["sealed"]
            rust.send("sealed too")
            shout = wait_for(node, lambda e: e.type == "SHOUT", "SHOUT from the Rust node")
            assert shout.content == [b"sealed too"]
        # The plaintext node heard both encrypted nodes' beacons all along and met neither.
        events = []
        while (event := plain.recv(timeout=0)) is not None:
            events.append(event)
        assert [e for e in events if e.type == "ENTER"] == [], events
    assert not any(obj.get("name") == "plain" for obj in rust.seen if isinstance(obj, dict))


def test_curve_certificate_file(tmp_path, harmony_bin, port):
    import subprocess

    subprocess.run([str(harmony_bin), "keygen", str(tmp_path / "me")], check=True, capture_output=True)
    with loopback_node("certified", port, curve_cert=str(tmp_path / "me")) as node:
        assert node.public_key is not None and len(node.public_key) == 40
    (tmp_path / "public-only").write_text((tmp_path / "me").read_text())
    with pytest.raises(ValueError, match="has no secret key"):
        harmony.Node(loopback=True, port=port, curve_cert=str(tmp_path / "public-only"))


def test_recv_releases_the_gil(port):
    """While one thread waits in recv (and in queries), another keeps running Python code."""
    with loopback_node("waiter", port) as node:
        counter = [0]
        stop = threading.Event()

        def spin():
            while not stop.is_set():
                counter[0] += 1

        thread = threading.Thread(target=spin)
        thread.start()
        try:
            before = counter[0]
            node.recv(timeout=0.5)  # nothing comes: it waits the whole half second
            during_recv = counter[0] - before
        finally:
            stop.set()
            thread.join()
        # With the GIL held for the half second the spinner would not move at all.
        assert during_recv > 10_000, during_recv


def test_asyncio_events_wait_in_the_event_loop(port):
    """A task waiting in `async for event in node.events()` leaves the loop free: the peer it
    waits for is only created by another task after it began waiting."""

    async def main():
        with loopback_node("a", port) as a:
            entered = asyncio.Event()
            got = []

            async def consume():
                async for event in a.events():
                    got.append(event)
                    if event.type == "ENTER":
                        entered.set()
                    if event.type == "WHISPER":
                        return

            consumer = asyncio.create_task(consume())
            await asyncio.sleep(0)  # the consumer runs until it waits for an event
            assert not consumer.done() and got == []
            with loopback_node("b", port) as b:
                await asyncio.wait_for(entered.wait(), WAIT)
                b.whisper(a.uuid, "async hello")
                await asyncio.wait_for(consumer, WAIT)
            a.stop()
            rest = [event.type async for event in a.events()]
            return got, rest

    def alarm(*_):
        raise TimeoutError("the event loop was blocked")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(int(WAIT) + 10)  # a blocked loop cannot time itself out
    try:
        got, rest = asyncio.run(main())
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert got[0].type == "ENTER" and got[-1].type == "WHISPER"
    assert got[-1].content == [b"async hello"]
    assert rest[-1] == "STOP"


def test_fileno_is_readable_exactly_while_events_wait(port):
    with loopback_node("a", port) as a, loopback_node("b", port) as b:
        assert select.select([a], [], [], 0)[0] == [] or a.has_events()
        ready, _, _ = select.select([a], [], [], WAIT)
        assert ready == [a] and a.has_events()
        while a.recv(timeout=0) is not None:
            pass
        assert not a.has_events()
        assert select.select([a], [], [], 0)[0] == []
        b.shout("G", "x")  # nobody is in G: nothing arrives
        b.join("G")
        wait_for(a, lambda e: e.type == "JOIN", "JOIN")


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: harmony.Node(port=0), ValueError, "port must be 1 to 65535"),
        (lambda: harmony.Node(port=70000), OverflowError, "port"),
        (lambda: harmony.Node(port="5670"), TypeError, "port"),
        (lambda: harmony.Node(interval=-1.0), ValueError, "interval must be a finite"),
        (lambda: harmony.Node(interval=float("nan")), ValueError, "interval"),
        (lambda: harmony.Node(interval=0.0), ValueError, "interval must be more than 0"),
        (lambda: harmony.Node("x" * 256), ValueError, "name must be 1 to 255 bytes"),
        (lambda: harmony.Node(headers={"k": 1}), ValueError, "header \"k\" must be a str"),
        (lambda: harmony.Node(headers=[("k", "v")]), TypeError, "headers"),
        (lambda: harmony.Node(loopback=True, interface="eth0"), ValueError, "contradicts"),
        (lambda: harmony.Node(interface="no-such-if0", port=5670), harmony.HarmonyError, "no-such-if0"),
        (lambda: harmony.Node(curve_secret_key="short"), ValueError, "Z85 CURVE secret key"),
        (lambda: harmony.Node(curve_secret_key="a" * 40, curve_cert="x"), ValueError, "not both"),
        (lambda: harmony.Node(curve_cert="/nonexistent/cert"), ValueError, "curve_cert /nonexistent/cert"),
        (lambda: harmony.Node(uuid="not-a-uuid"), ValueError, "is not a UUID"),
        (lambda: harmony.Node(bogus=1), TypeError, "bogus"),
    ],
)
def test_bad_settings_raise_clear_exceptions(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_bad_calls_raise_clear_exceptions(port):
    with loopback_node("a", port) as node:
        with pytest.raises(TypeError, match="peer must be a uuid.UUID"):
            node.whisper(42, "x")
        with pytest.raises(ValueError, match="16 bytes long"):
            node.whisper(b"short", "x")
        with pytest.raises(harmony.UnknownPeerError, match="no known peer"):
            node.whisper(uuid.uuid4(), "x")
        with pytest.raises(TypeError, match="message frame must be bytes"):
            node.shout("G", 3.5)
        with pytest.raises(TypeError, match="message frame must be bytes"):
            node.shout("G", ["ok", None])
        with pytest.raises(ValueError, match="group name must be 1 to 255"):
            node.join("")
        with pytest.raises(ValueError, match="timeout must be a finite"):
            node.recv(timeout=-1)
        with pytest.raises(TypeError):
            node.recv(timeout="soon")
        # The node is unharmed by all of that.
        node.join("G")
        assert node.own_groups() == ["G"]


def test_a_node_dropped_without_stop_leaves_politely(port):
    with loopback_node("stays", port) as stays:
        goes = loopback_node("goes", port)
        gone = goes.uuid
        wait_for(stays, lambda e: e.type == "ENTER" and e.peer == gone, "ENTER")
        del goes  # the last reference: the node stops in the background
        wait_for(stays, lambda e: e.type == "EXIT" and e.peer == gone, "EXIT of the dropped node")


def test_ctrl_c_interrupts_a_blocking_recv(port):
    with loopback_node("alone", port) as node:
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            node.recv()  # no timeout: only the signal ends it
        timer.join()
        assert time.monotonic() - started < 5.0


def test_queries_and_stop_answer_while_nobody_reads_events(port):
    """A node whose application reads nothing fills its event queues, and its driver then waits
    for them to drain. Queries and stop must still answer, and lose no event."""
    capacity = 16 * 1024  # the inbox bound (inbox.rs CAPACITY)
    with loopback_node("reader", port) as reader, loopback_node("flood", port) as flood:
        wait_for(flood, lambda e: e.type == "ENTER", "ENTER")
        total = 40_000  # more than the inbox and the node's own queue hold together
        for i in range(total):
            flood.whisper(reader.uuid, b"%d" % i)
        deadline = time.monotonic() + WAIT
        while reader.pending < capacity and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reader.pending >= capacity  # full (a batch may pass the bound): the driver waits
        assert reader.peers() == [flood.uuid]
        assert reader.peer_name(flood.uuid) == "flood"
        reader.stop()
        whispers, last = [], None
        while (event := reader.recv(timeout=0)) is not None:
            last = event
            if event.type == "WHISPER":
                whispers.append(int(event.content[0]))
        assert last.type == "STOP" and reader.finished
        # Everything that arrived before the stop is there, in order, nothing skipped.
        assert whispers == list(range(len(whispers))) and len(whispers) > capacity


def test_set_header_and_request_properties_between_python_and_rust(harmony_bin, port, procs):
    """A header changed on a running Python node reaches the Rust node (HEADERS) and
    request_properties fetches a peer's current set; a peer that does not answer (its process
    paused) gives TimeoutError after the timeout, and answers again once resumed."""
    rust = rust_chat(harmony_bin, "rusty", port, "--header", "X-IMPL=rust")
    procs.append(rust)
    rust_id = rust.expect("STARTED", is_event("STARTED"))["uuid"].lower()
    with loopback_node("py", port, headers={"X-IMPL": "python"}) as node:
        enter = wait_for(node, lambda e: e.type == "ENTER", "ENTER of the Rust node")
        rust.expect("ENTER", is_event("ENTER", name="py"))

        node.set_header("X-STATUS", "busy")
        seen = rust.expect("HEADERS", is_event("HEADERS", name="py"))
        assert seen["headers"] == {"X-IMPL": "python", "X-STATUS": "busy"}
        with pytest.raises(ValueError, match="reserved"):
            node.set_header("X-HARMONY", "x")

        rust.send("/set X-MOOD calm")
        changed = wait_for(node, lambda e: e.type == "HEADERS", "HEADERS of the Rust node")
        assert changed.peer_id == rust_id and changed.headers == {"X-IMPL": "rust", "X-MOOD": "calm"}
        assert node.request_properties(enter.peer) == {"X-IMPL": "rust", "X-MOOD": "calm"}
        assert node.request_properties(rust_id, timeout=5.0)["X-MOOD"] == "calm"
        with pytest.raises(harmony.UnknownPeerError):
            node.request_properties(uuid.uuid4(), timeout=0.1)

        # Paused, the Rust process cannot answer: the request times out, the node goes on.
        os.kill(rust.proc.pid, signal.SIGSTOP)
        try:
            wait_stopped(rust.proc.pid)
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                node.request_properties(enter.peer, timeout=0.3)
            assert 0.3 <= time.monotonic() - started < 5.0
        finally:
            os.kill(rust.proc.pid, signal.SIGCONT)
        assert node.request_properties(enter.peer)["X-MOOD"] == "calm"


def wait_stopped(pid, timeout=WAIT):
    """Waits until process `pid` is stopped (a signal is delivered a moment after kill())."""
    deadline = time.monotonic() + timeout
    while open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "T":
        assert time.monotonic() < deadline, f"process {pid} did not stop"
        time.sleep(0.005)
