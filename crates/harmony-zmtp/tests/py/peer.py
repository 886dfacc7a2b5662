"""libzmq (pyzmq) peer for harmony-zmtp's interop tests.

usage: peer.py SCENARIO ENDPOINT [options]

ENDPOINT is bound when it ends in ':*' or a fixed port with --bind, else connected to.
The bound endpoint is printed as 'READY <endpoint>'; a client scenario prints 'OK' when every
check passed. Every receive has a timeout, so the script never hangs.
"""

import argparse
import os
import sys

import zmq

from zmq_helpers import BIG, TIMEOUT_MS, curve_client, curve_server, fail, out

COUNT = 10000


def make(ctx, kind, args, **opts):
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 1000)
    s.setsockopt(zmq.IPV6, 1)
    for name, value in opts.items():
        s.setsockopt(getattr(zmq, name), value)
    s.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
    s.setsockopt(zmq.SNDTIMEO, TIMEOUT_MS)
    if args.identity:
        s.setsockopt(zmq.ROUTING_ID, args.identity.encode())
    if args.curve_server:
        curve_server(s, args.curve_server)
    if args.curve_client:
        curve_client(s, args.curve_client)
    if args.heartbeat:
        s.setsockopt(zmq.HEARTBEAT_IVL, args.heartbeat)
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, args.heartbeat * 3)
        s.setsockopt(zmq.HEARTBEAT_TTL, args.heartbeat * 10)
    if args.bind:
        s.bind(args.endpoint)
        out("READY " + s.getsockopt(zmq.LAST_ENDPOINT).decode())
    else:
        s.connect(args.endpoint)
        out("READY " + args.endpoint)
    return s


def monitor(s):
    """Counts disconnections seen by `s` (a heartbeat failure shows up as one)."""
    return s.get_monitor_socket(zmq.EVENT_DISCONNECTED)


def disconnects(mon):
    n = 0
    while mon.poll(0):
        mon.recv_multipart()
        n += 1
    return n


def echo(args, kind):
    """ROUTER or DEALER echo server: sends every message back; 'whoami' gets the identity."""
    ctx = zmq.Context()
    s = make(ctx, kind, args)
    mon = monitor(s)
    s.setsockopt(zmq.RCVTIMEO, 30000)
    while True:
        try:
            msg = s.recv_multipart(copy=True)
        except zmq.Again:
            fail("echo: nothing received")
        env, body = (msg[:1], msg[1:]) if kind == zmq.ROUTER else ([], msg)
        if os.environ.get("PEER_DEBUG"):
            print("echo", [len(f) for f in msg], [f[:20] for f in msg[:3]], file=sys.stderr, flush=True)
        if body == [b"whoami"]:
            s.send_multipart(env + [b"whoami"] + env)
        elif body == [b"disconnects"]:
            s.send_multipart(env + [b"disconnects", str(disconnects(mon)).encode()])
        elif body == [b"quit"]:
            s.send_multipart(env + [b"bye"])
            break
        else:
            s.send_multipart(env + body)
    mon.close()
    s.close()
    ctx.term()


def roundtrip(s, frames):
    s.send_multipart(frames)
    got = s.recv_multipart()
    if got != frames:
        fail("echo mismatch: sent %d frames, got %r" % (len(frames), [len(f) for f in got]))


def client(args, kind):
    """DEALER client of a Harmony echo server: multipart, 1 MiB, 10 000 in order, identity."""
    ctx = zmq.Context()
    s = make(ctx, kind, args)
    roundtrip(s, [b"a", b"", b"c"])
    roundtrip(s, [b"x" * BIG])
    window = 500
    for start in range(0, COUNT, window):
        for i in range(start, start + window):
            s.send(i.to_bytes(4, "big"))
        for i in range(start, start + window):
            got = s.recv()
            if got != i.to_bytes(4, "big"):
                fail("order: expected %d, got %r" % (i, got))
    if args.expect_identity:
        s.send(b"whoami")
        got = s.recv_multipart()
        if got != [b"whoami", args.identity.encode()]:
            fail("identity: got %r" % got)
    if args.heartbeat:
        import time

        mon = monitor(s)
        time.sleep(1.0)  # idle: only PING/PONG on the wire
        roundtrip(s, [b"after idle"])
        if disconnects(mon):
            fail("heartbeat: the connection was dropped")
        mon.close()
    s.send(b"quit")
    if s.recv() != b"bye":
        fail("no bye")
    out("OK")
    s.close()
    ctx.term()


def push(args):
    ctx = zmq.Context()
    s = make(ctx, zmq.PUSH, args)
    s.send_multipart([b"a", b"", b"c"])
    s.send(b"x" * BIG)
    for i in range(COUNT):
        s.send(i.to_bytes(4, "big"))
    s.send(b"end")
    out("OK")
    s.close()
    ctx.term()


def expect_sequence(s, prefix=b""):
    got = s.recv_multipart()
    if got != [prefix + b"a", b"", b"c"]:
        fail("multipart: got %r" % got)
    got = s.recv()
    if got != prefix + b"x" * BIG:
        fail("big: got %d bytes" % len(got))
    for i in range(COUNT):
        got = s.recv()
        if got != prefix + i.to_bytes(4, "big"):
            fail("order: expected %d, got %r" % (i, got))
    got = s.recv()
    if got != prefix + b"end":
        fail("end: got %r" % got)


def pull(args):
    ctx = zmq.Context()
    s = make(ctx, zmq.PULL, args)
    expect_sequence(s)
    out("OK")
    s.close()
    ctx.term()


def publisher(args):
    """PUB: sends 'Async' until the test says 'go' on stdin, then the sequence under 'A'."""
    ctx = zmq.Context()
    s = make(ctx, zmq.PUB, args, SNDHWM=0)
    import select
    import time

    deadline = time.time() + TIMEOUT_MS / 1000
    while True:
        s.send(b"Async")
        r, _, _ = select.select([sys.stdin], [], [], 0.01)
        if r and sys.stdin.readline().strip() == "go":
            break
        if time.time() > deadline:
            fail("publisher: never told to go")
    s.send(b"B-not-subscribed")
    s.send_multipart([b"Aa", b"", b"c"])
    s.send(b"A" + b"x" * BIG)
    for i in range(COUNT):
        s.send(b"A" + i.to_bytes(4, "big"))
    s.send(b"Aend")
    out("OK")
    s.close()
    ctx.term()


def subscriber(args):
    """SUB to 'A': waits for 'Async', prints 'SYNCED', then checks the sequence."""
    ctx = zmq.Context()
    s = make(ctx, zmq.SUB, args, RCVHWM=0, SUBSCRIBE=b"A")
    got = s.recv_multipart()
    synced = False
    while got == [b"Async"]:
        if not synced:
            out("SYNCED")
            synced = True
        got = s.recv_multipart()
    if got != [b"Aa", b"", b"c"]:
        fail("multipart: got %r" % got)
    got = s.recv()
    if got != b"A" + b"x" * BIG:
        fail("big: got %d bytes" % len(got))
    for i in range(COUNT):
        got = s.recv()
        if got != b"A" + i.to_bytes(4, "big"):
            fail("order: expected %d, got %r" % (i, got))
    if s.recv() != b"Aend":
        fail("no end")
    out("OK")
    s.close()
    ctx.term()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("scenario")
    p.add_argument("endpoint")
    p.add_argument("--bind", action="store_true")
    p.add_argument("--identity")
    p.add_argument("--expect-identity", action="store_true")
    p.add_argument("--curve-server", help="CURVE server with this Z85 secret key")
    p.add_argument("--curve-client", help="CURVE client: SECRET,SERVERPUBLIC in Z85")
    p.add_argument("--heartbeat", type=int, default=0, help="HEARTBEAT_IVL in ms")
    args = p.parse_args()
    scenarios = {
        "router-echo": lambda: echo(args, zmq.ROUTER),
        "dealer-echo": lambda: echo(args, zmq.DEALER),
        "dealer-client": lambda: client(args, zmq.DEALER),
        "push": lambda: push(args),
        "pull": lambda: pull(args),
        "pub": lambda: publisher(args),
        "sub": lambda: subscriber(args),
    }
    scenarios[args.scenario]()


if __name__ == "__main__":
    main()
