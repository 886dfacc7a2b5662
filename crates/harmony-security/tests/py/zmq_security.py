"""pyzmq/libzmq side of harmony-security's interop tests.

Subcommands (all output is JSON or one line per value on stdout):
  create-certs DIR NAME          zmq.auth.create_certificates; prints both keys and file names
  load-cert FILE                 zmq.auth.load_certificate; prints public and secret key
  load-certs DIR                 zmq.auth.load_certificates; prints the public keys found
  curve-server SECRET ALLOW      ROUTER with CURVE on 127.0.0.1; ALLOW is a certificate
                                 directory or "any"; prints the port, echoes one message
  curve-client SERVER_PUB CLIENT_SECRET PORT
                                 DEALER with CURVE; sends [b"ping", b"pong"], prints the reply
  plain-server USER PASS         ROUTER with PLAIN and that one user; prints port, echoes
  plain-client USER PASS PORT    DEALER with PLAIN; sends [b"ping", b"pong"], prints the reply

Every socket has a 10 s receive timeout, so the script always ends on its own.
"""

import json
import sys

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

TIMEOUT_MS = 10_000


def out(value):
    print(json.dumps(value), flush=True)


def decode(b):
    return b.decode() if isinstance(b, bytes) else b


def serve(sock, ctx, auth):
    sock.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
    sock.setsockopt(zmq.LINGER, 1000)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    out({"port": port})
    try:
        msg = sock.recv_multipart()
        sock.send_multipart(msg)
        out({"echoed": [m.hex() for m in msg[1:]]})
    except zmq.Again:
        out({"timeout": True})
    finally:
        auth.stop()
        sock.close()
        ctx.term()


def connect_and_ask(sock, ctx, port):
    """Sends one message and prints the reply; on a failed handshake prints the first
    handshake-failure event libzmq reports (name and value, e.g. HANDSHAKE_FAILED_AUTH 400)."""
    from zmq.utils.monitor import recv_monitor_message

    sock.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
    sock.setsockopt(zmq.LINGER, 0)
    monitor = sock.get_monitor_socket(
        zmq.EVENT_HANDSHAKE_FAILED_AUTH
        | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
        | zmq.EVENT_HANDSHAKE_SUCCEEDED
    )
    sock.connect(f"tcp://127.0.0.1:{port}")
    sock.send_multipart([b"ping", b"pong"])
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(monitor, zmq.POLLIN)
    for _ in range(100):
        ready = dict(poller.poll(TIMEOUT_MS))
        if not ready:
            out({"timeout": True})
            break
        if monitor in ready:
            event = recv_monitor_message(monitor)
            name = zmq.Event(event["event"]).name
            if name != "HANDSHAKE_SUCCEEDED":
                out({"handshake_failed": name, "value": event["value"]})
                break
        if sock in ready:
            reply = sock.recv_multipart()
            out({"reply": [m.decode() for m in reply]})
            break
    sock.disable_monitor()
    monitor.close()
    sock.close()
    ctx.term()


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "create-certs":
        public_file, secret_file = zmq.auth.create_certificates(args[0], args[1])
        public, secret = zmq.auth.load_certificate(secret_file)
        out({"public": decode(public), "secret": decode(secret),
             "public_file": public_file, "secret_file": secret_file})
    elif cmd == "load-cert":
        public, secret = zmq.auth.load_certificate(args[0])
        out({"public": decode(public), "secret": decode(secret)})
    elif cmd == "load-certs":
        out(sorted(decode(k) for k in zmq.auth.load_certificates(args[0])))
    elif cmd == "curve-server":
        ctx = zmq.Context()
        auth = ThreadAuthenticator(ctx)
        auth.start()
        if args[1] == "any":
            auth.configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)
        else:
            auth.configure_curve(domain="*", location=args[1])
        sock = ctx.socket(zmq.ROUTER)
        sock.curve_server = True
        sock.curve_secretkey = args[0].encode()
        serve(sock, ctx, auth)
    elif cmd == "curve-client":
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.curve_serverkey = args[0].encode()
        sock.curve_secretkey = args[1].encode()
        sock.curve_publickey = zmq.curve_public(args[1].encode())
        connect_and_ask(sock, ctx, args[2])
    elif cmd == "plain-server":
        ctx = zmq.Context()
        auth = ThreadAuthenticator(ctx)
        auth.start()
        auth.configure_plain(domain="*", passwords={args[0]: args[1]})
        sock = ctx.socket(zmq.ROUTER)
        sock.plain_server = True
        serve(sock, ctx, auth)
    elif cmd == "plain-client":
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.plain_username = args[0].encode()
        sock.plain_password = args[1].encode()
        connect_and_ask(sock, ctx, args[2])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
