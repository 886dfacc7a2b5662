"""The pyre side of the ZRE capture (namespace A): a node "pyreA" with two headers in group
GOLDEN; once the fake peer "fakeB" has entered and joined GOLDEN it joins LATER, shouts two
frames to GOLDEN and whispers one frame to fakeB, then stops when fakeB whispers back "done"."""

import sys
import time
import uuid

import zmq
from pyre import Pyre


def main():
    node = Pyre("pyreA")
    node.set_header("X-HELLO", "world")
    node.set_header("X-Golden", "1")
    node.join("GOLDEN")
    node.start()
    poller = zmq.Poller()
    poller.register(node.socket(), zmq.POLLIN)
    deadline = time.time() + 60
    peer, sent = None, False
    try:
        while time.time() < deadline:
            if not poller.poll(200):
                continue
            event = node.recv()
            kind = event[0].decode()
            print("pyre event", kind, event[2:], file=sys.stderr)
            if kind == "ENTER" and event[2] == b"fakeB":
                peer = uuid.UUID(bytes=event[1])
            elif kind == "JOIN" and peer and event[3] == b"GOLDEN" and not sent:
                node.join("LATER")
                node.shout("GOLDEN", [b"golden", b"shout"])
                node.whisper(peer, b"golden whisper")
                sent = True
            elif kind == "WHISPER" and event[3] == b"done":
                return 0
        print("pyre side timed out", file=sys.stderr)
        return 1
    finally:
        node.stop()


if __name__ == "__main__":
    sys.exit(main())
