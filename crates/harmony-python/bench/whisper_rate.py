"""Whisper messages per second between two Python processes: pyre, harmony.pyre and harmony.

Run as root (`cargo xtask bench python` builds the module and runs this): the two processes of
each pair live in two network namespaces joined by a veth pair, made here and deleted at the
end, because pyre cannot use loopback. Every implementation runs the same exchange in the same
run: the sender whispers N messages of SIZE bytes, at most WINDOW ahead of the receiver's
acknowledgements (so nobody's queue overflows), and the receiver times the first to the last.

Usage: whisper_rate.py [--size BYTES] [--window N] [--pyre-messages N] [--harmony-messages N]
       whisper_rate.py --role send|recv IMPL N SIZE WINDOW IFACE   (internal)
"""

import argparse
import json
import os
import subprocess
import sys
import time
import uuid

IMPLS = ["pyre", "harmony.pyre", "harmony"]
LIMIT = 120.0  # seconds any one process may take


class PyreApi:
    def __init__(self, module, name, iface):
        if module == "pyre":
            from pyre import Pyre
        else:
            from harmony.pyre import Pyre
        self.node = Pyre(name)
        if module != "pyre":
            self.node.set_interface(iface)
        self.node.set_interval("100")  # pyre sends it as text
        self.node.start()

    def wait_enter(self, name):
        while True:
            frames = self.node.recv()
            if frames[0] == b"ENTER" and frames[2] == name.encode():
                return uuid.UUID(bytes=frames[1])

    def whisper(self, peer, payload):
        self.node.whisper(peer, payload)

    def next_whisper(self):
        while True:
            frames = self.node.recv()
            if frames[0] == b"WHISPER":
                return frames[3]

    def stop(self):
        self.node.stop()


class NativeApi:
    def __init__(self, name, iface):
        import harmony

        self.node = harmony.Node(name, interface=iface, interval=0.1)

    def wait_enter(self, name):
        while True:
            event = self.node.recv(LIMIT)
            if event is None:
                raise SystemExit("no ENTER")
            if event.type == "ENTER" and event.peer_name == name:
                return event.peer

    def whisper(self, peer, payload):
        self.node.whisper(peer, payload)

    def next_whisper(self):
        while True:
            event = self.node.recv(LIMIT)
            if event is None:
                raise SystemExit("no WHISPER")
            if event.type == "WHISPER":
                return event.content[0]

    def stop(self):
        self.node.stop()


def role(args):
    impl, n, size, window, iface = args.impl, args.n, args.size, args.window, args.iface
    me, other = ("sender", "receiver") if args.role == "send" else ("receiver", "sender")
    node = NativeApi(me, iface) if impl == "harmony" else PyreApi(impl, me, iface)
    peer = node.wait_enter(other)
    if args.role == "send":
        payload = b"x" * size
        acked = 0
        for i in range(1, n + 1):
            node.whisper(peer, payload)
            while i - acked >= window:
                acked = int(node.next_whisper())
        while acked < n:
            acked = int(node.next_whisper())
        print(json.dumps({"sent": n}), flush=True)
    else:
        first = None
        for i in range(1, n + 1):
            node.next_whisper()
            if first is None:
                first = time.perf_counter()
            if i % (window // 2) == 0 or i == n:
                node.whisper(peer, str(i).encode())
        took = time.perf_counter() - first
        print(json.dumps({"received": n, "seconds": took, "rate": (n - 1) / took}), flush=True)
    # Let the last acknowledgement leave before the node goes.
    time.sleep(0.2)
    node.stop()


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True)


def orchestrate(args):
    if os.geteuid() != 0:
        raise SystemExit("whisper_rate.py needs root: pyre cannot use loopback, so each pair runs "
                         "in two network namespaces joined by a veth pair")
    tag = str(os.getpid() % 100000)
    ns_a, ns_b, if_a, if_b = f"hbench{tag}a", f"hbench{tag}b", f"hbv{tag}a", f"hbv{tag}b"
    results = {}
    try:
        ip("netns", "add", ns_a)
        ip("netns", "add", ns_b)
        ip("link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b, "netns", ns_b)
        for ns, ifname, addr in ((ns_a, if_a, "10.77.0.1"), (ns_b, if_b, "10.77.0.2")):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", ifname)
            ip("-n", ns, "link", "set", ifname, "up")
        for impl in IMPLS:
            n = args.pyre_messages if impl == "pyre" else args.harmony_messages
            common = [str(n), str(args.size), str(args.window)]
            recv = subprocess.Popen(["ip", "netns", "exec", ns_b, sys.executable, __file__, "--role", "recv",
                                     impl, *common, if_b], stdout=subprocess.PIPE, text=True)
            send = subprocess.Popen(["ip", "netns", "exec", ns_a, sys.executable, __file__, "--role", "send",
                                     impl, *common, if_a], stdout=subprocess.PIPE, text=True)
            deadline = time.monotonic() + LIMIT
            while recv.poll() is None or send.poll() is None:
                failed = any(p.poll() not in (None, 0) for p in (recv, send))
                if failed or time.monotonic() > deadline:
                    for p in (recv, send):
                        p.kill()
                        p.wait()
                    raise SystemExit(f"{impl}: receiver exited {recv.returncode}, sender "
                                     f"{send.returncode} (killed after {LIMIT} s or a failure)")
                time.sleep(0.05)
            results[impl] = json.loads(recv.stdout.read().strip().splitlines()[-1])
    finally:
        for ns in (ns_a, ns_b):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
    base = results["pyre"]["rate"]
    print(f"\nwhisper, {args.size} B messages, window {args.window}, two processes over a veth pair")
    print(f"{'implementation':<16} {'messages':>9} {'msg/s':>11} {'vs pyre':>8}")
    for impl in IMPLS:
        r = results[impl]
        print(f"{impl:<16} {r['received']:>9} {r['rate']:>11.0f} {r['rate'] / base:>7.1f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["send", "recv"])
    parser.add_argument("impl", nargs="?")
    parser.add_argument("n", nargs="?", type=int)
    parser.add_argument("pos_size", nargs="?", type=int)
    parser.add_argument("pos_window", nargs="?", type=int)
    parser.add_argument("iface", nargs="?")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--pyre-messages", type=int, default=20_000)
    parser.add_argument("--harmony-messages", type=int, default=200_000)
    args = parser.parse_args()
    if args.role:
        args.size, args.window = args.pos_size, args.pos_window
        role(args)
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
