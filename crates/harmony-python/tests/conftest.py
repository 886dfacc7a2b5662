"""Helpers of the harmony pytest suite: free ports, the Rust `harmony` program, JSON-speaking
child processes and network namespaces (veth pairs) for the tests against pyre."""

import faulthandler
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
PEER = HERE / "peer.py"
WAIT = 20.0


def free_udp_port():
    """A UDP port that was free a moment ago (so parallel tests do not hear each other)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def watchdog():
    """Every test stops by itself: one that hangs (a deadlock in the module, say) ends the run
    with every thread's traceback after two minutes."""
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def port():
    return free_udp_port()


@pytest.fixture(scope="session")
def harmony_bin():
    """The Rust `harmony` program: $HARMONY_BIN, else target/debug/harmony."""
    path = Path(os.environ.get("HARMONY_BIN", ROOT / "target" / "debug" / "harmony"))
    if not path.exists():
        pytest.fail(f"{path} is missing: run `cargo build -p harmony` (or set HARMONY_BIN)")
    return path


class JsonProc:
    """A child process that prints one JSON object per line; lines are read on a thread."""

    def __init__(self, label, argv):
        self.label = label
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.lines = queue.Queue()
        self.seen = []
        self.stderr = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _read_err(self):
        for line in self.proc.stderr:
            self.stderr.append(line)

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, what, pred, timeout=WAIT):
        """The first line (JSON object) for which pred is true; fails after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.0)) if left > 0 else None
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError(
                    f"{self.label}: no {what} within {timeout} s; saw {self.seen}; "
                    f"stderr: {''.join(self.stderr)[-2000:]}"
                )
            try:
                obj = json.loads(line)
            except ValueError:
                self.seen.append(line.strip())
                continue
            self.seen.append(obj)
            if pred(obj):
                return obj

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def is_event(kind, **fields):
    return lambda obj: obj.get("event") == kind and all(obj.get(k) == v for k, v in fields.items())


@pytest.fixture
def procs():
    """Children started by a test, closed (then killed) at its end."""
    started = []
    yield started
    for p in started:
        p.close()


class NetnsPair:
    """Two fresh network namespaces joined by a veth pair (10.77.0.1/24 and 10.77.0.2/24)."""

    ADDR_A = "10.77.0.1"
    ADDR_B = "10.77.0.2"
    _next = 0

    def __init__(self, tag):
        NetnsPair._next += 1
        ident = f"{os.getpid() % 100000}{NetnsPair._next}"
        self.a, self.b = f"hp{tag}{ident}a", f"hp{tag}{ident}b"
        self.if_a, self.if_b = f"hpv{ident}a", f"hpv{ident}b"
        try:
            self._ip("netns", "add", self.a)
            self._ip("netns", "add", self.b)
            self._ip("link", "add", self.if_a, "netns", self.a, "type", "veth",
                     "peer", "name", self.if_b, "netns", self.b)
            for ns, ifname, addr in ((self.a, self.if_a, self.ADDR_A), (self.b, self.if_b, self.ADDR_B)):
                self._ip("-n", ns, "link", "set", "lo", "up")
                self._ip("-n", ns, "addr", "add", f"{addr}/24", "dev", ifname)
                self._ip("-n", ns, "link", "set", ifname, "up")
        except BaseException:
            self.delete()
            raise

    @staticmethod
    def _ip(*args):
        subprocess.run(["ip", *args], check=True, capture_output=True)

    def command(self, ns, *argv):
        return ["ip", "netns", "exec", ns, *argv]

    def delete(self):
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def require_netns():
    """Fails (never skips) when namespaces cannot be made: `cargo xtask ci` leaves the tests
    named *netns* out, with the reason, where they cannot run."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root and iproute2 to create network namespaces "
                    "(`cargo xtask ci` deselects tests named *netns* when it cannot create them)")
    if subprocess.run(["ip", "-V"], capture_output=True).returncode != 0:
        pytest.fail("this test needs iproute2 (`ip`) to create network namespaces")


@pytest.fixture
def netns_pair():
    require_netns()
    pair = NetnsPair("py")
    yield pair
    pair.delete()


def peer_argv(impl, name, group, *extra):
    return [sys.executable, "-u", str(PEER), impl, name, group, *extra]
