"""A real pyre (zeromq-pyre) node driven by a test over stdin/stdout.

Usage: pyre_peer.py NAME GROUP [KEY=VALUE ...]
stdin lines:  shout GROUP TEXT | whisper UUIDHEX TEXT | header UUIDHEX KEY | stop
              (header prints {"event": "HEADER", "uuid": ..., "key": ..., "value": ...})
stdout lines: one JSON object per event (and {"event": "STARTED", "uuid": ...} first).
Exits by itself after 60 seconds at the latest.
"""
import json
import sys
import time
import uuid

import zmq
from pyre import Pyre


def main():
    name, group = sys.argv[1], sys.argv[2]
    node = Pyre(name)
    for kv in sys.argv[3:]:
        k, v = kv.split("=", 1)
        node.set_header(k, v)
    node.start()
    node.join(group)
    out = lambda obj: (sys.stdout.write(json.dumps(obj) + "\n"), sys.stdout.flush())
    out({"event": "STARTED", "uuid": node.uuid().hex.upper()})
    poller = zmq.Poller()
    poller.register(node.socket(), zmq.POLLIN)
    poller.register(sys.stdin, zmq.POLLIN)
    deadline = time.time() + 60
    running = True
    while running and time.time() < deadline:
        ready = dict(poller.poll(200))
        if node.socket() in ready:
            frames = node.recv()
            kind = frames[0].decode()
            ev = {"event": kind, "uuid": uuid.UUID(bytes=frames[1]).hex.upper(), "name": frames[2].decode()}
            if kind == "ENTER":
                ev["headers"] = json.loads(frames[3].decode())
                ev["endpoint"] = frames[4].decode()
            elif kind in ("JOIN", "LEAVE"):
                ev["group"] = frames[3].decode()
            elif kind == "SHOUT":
                ev["group"] = frames[3].decode()
                ev["content"] = [f.decode(errors="replace") for f in frames[4:]]
            elif kind == "WHISPER":
                ev["content"] = [f.decode(errors="replace") for f in frames[3:]]
            out(ev)
        if sys.stdin.fileno() in ready or sys.stdin in ready:
            line = sys.stdin.readline()
            if not line:
                break
            parts = line.rstrip("\n").split(" ", 2)
            if parts[0] == "shout":
                node.shout(parts[1], parts[2].encode())
            elif parts[0] == "whisper":
                node.whisper(uuid.UUID(hex=parts[1]), parts[2].encode())
            elif parts[0] == "header":
                peer = uuid.UUID(hex=parts[1])
                value = node.peer_header_value(peer, parts[2])
                out({"event": "HEADER", "uuid": peer.hex.upper(), "key": parts[2], "value": value})
            elif parts[0] == "stop":
                running = False
    node.stop()
    out({"event": "STOPPED"})


if __name__ == "__main__":
    main()
