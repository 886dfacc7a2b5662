"""A ZRE node driven over stdin/stdout, for tests that run it in another network namespace.

Usage: peer.py IMPL NAME GROUP [--interface IF] [--port N] [--curve] [KEY=VALUE ...]
IMPL: ``pyre`` (the real pyre), ``harmony.pyre`` (the drop-in) or ``harmony`` (the native API).
stdin lines:  shout GROUP TEXT | whisper UUIDHEX TEXT | stop
stdout lines: one JSON object per event, ``{"event": "STARTED", "uuid": HEX}`` first and
``{"event": "STOPPED"}`` last. Exits by itself after 60 seconds at the latest.
"""
import json
import sys
import time
import uuid

import zmq


def parse(argv):
    impl, name, group = argv[1], argv[2], argv[3]
    opts = {"interface": None, "port": None, "curve": False, "headers": {}}
    rest = iter(argv[4:])
    for arg in rest:
        if arg == "--interface":
            opts["interface"] = next(rest)
        elif arg == "--port":
            opts["port"] = int(next(rest))
        elif arg == "--curve":
            opts["curve"] = True
        else:
            k, v = arg.split("=", 1)
            opts["headers"][k] = v
    return impl, name, group, opts


def frames_to_json(frames):
    kind = frames[0].decode()
    ev = {"event": kind, "uuid": uuid.UUID(bytes=frames[1]).hex, "name": frames[2].decode()}
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
    return ev


def event_to_json(event):
    ev = {"event": event.type, "uuid": event.peer_id, "name": event.peer_name}
    if event.headers is not None:
        ev["headers"] = event.headers
        ev["endpoint"] = event.endpoint
    if event.group is not None:
        ev["group"] = event.group
    if event.content is not None:
        ev["content"] = [f.decode(errors="replace") for f in event.content]
    return ev


class PyreLike:
    def __init__(self, module, name, group, opts):
        if module == "pyre":
            from pyre import Pyre
        else:
            from harmony.pyre import Pyre
        self.node = Pyre(name)
        for k, v in opts["headers"].items():
            self.node.set_header(k, v)
        if opts["port"]:
            self.node.set_port(str(opts["port"]).encode())
        if opts["interface"]:
            self.node.set_interface(opts["interface"])
        if opts["curve"]:
            import harmony

            self.node.set_curve_secret_key(harmony.curve_keypair()[1])
        self.node.start()
        self.node.join(group)
        self.uuid = self.node.uuid().hex

    def pollable(self):
        return self.node.socket()

    def read(self):
        return frames_to_json(self.node.recv())

    def shout(self, group, text):
        self.node.shout(group, text.encode())

    def whisper(self, peer, text):
        self.node.whisper(uuid.UUID(hex=peer), text.encode())

    def stop(self):
        self.node.stop()


class Native:
    def __init__(self, name, group, opts):
        import harmony

        kwargs = {"headers": opts["headers"], "interface": opts["interface"], "interval": 0.2}
        if opts["port"]:
            kwargs["port"] = opts["port"]
        if opts["curve"]:
            kwargs["curve_secret_key"] = harmony.curve_keypair()[1]
        self.node = harmony.Node(name, **kwargs)
        self.node.join(group)
        self.uuid = self.node.uuid.hex

    def pollable(self):
        return self.node

    def read(self):
        return event_to_json(self.node.recv())

    def shout(self, group, text):
        self.node.shout(group, text)

    def whisper(self, peer, text):
        self.node.whisper(peer, text)

    def stop(self):
        self.node.stop()


def main():
    impl, name, group, opts = parse(sys.argv)
    node = Native(name, group, opts) if impl == "harmony" else PyreLike(impl, name, group, opts)

    def out(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    out({"event": "STARTED", "uuid": node.uuid})
    poller = zmq.Poller()
    poller.register(node.pollable(), zmq.POLLIN)
    poller.register(sys.stdin, zmq.POLLIN)
    deadline = time.time() + 60
    running = True
    while running and time.time() < deadline:
        ready = dict(poller.poll(200))
        if node.pollable() in ready or node.pollable().fileno() in ready:
            out(node.read())
        if sys.stdin in ready or sys.stdin.fileno() in ready:
            line = sys.stdin.readline()
            if not line:
                break
            parts = line.rstrip("\n").split(" ", 2)
            if parts[0] == "shout":
                node.shout(parts[1], parts[2])
            elif parts[0] == "whisper":
                node.whisper(parts[1], parts[2])
            elif parts[0] == "stop":
                running = False
    node.stop()
    out({"event": "STOPPED"})


if __name__ == "__main__":
    main()
