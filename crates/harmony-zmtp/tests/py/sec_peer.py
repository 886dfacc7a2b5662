"""libzmq (pyzmq) peer guarded by ZAP (zmq.auth.thread.ThreadAuthenticator), for
harmony-zmtp's security_interop tests. (Unguarded CURVE traffic tests use peer.py.)

usage:
  sec_peer.py serve ENDPOINT [--curve-server SECRET] [--allow PUBLIC]... [--plain USER:PASS]...
      ROUTER bound to ENDPOINT; CURVE keys in --allow (Z85) and PLAIN users in --plain are let
      in by the authenticator. Prints 'READY <endpoint>', then 'EVENT <name> <value>' for each
      handshake result or disconnection, and 'GOT <n> frames' for each message, which it echoes.
      A message holding a frame b"intruder" prints 'FAIL intruder delivered' and ends.
      [b"quit"] is answered with b"bye" and ends; so does 30 s without any activity.
  sec_peer.py client ENDPOINT [--curve-client SECRET,SERVERPUBLIC] [--plain-client USER:PASS]
                              [--refused]
      DEALER connecting to ENDPOINT. Without --refused: sends [b"hello", b"", b"libzmq" + 1 MiB
      of b"x"], expects it echoed, prints 'OK'. With --refused: sends [b"intruder"], waits for the first handshake
      failure or disconnection and prints 'REFUSED <name> <value>'; a reply prints 'FAIL'.
"""

import argparse
import os
import tempfile

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from zmq_helpers import BIG, TIMEOUT_MS, curve_client, curve_server, fail, out, poller

IDLE_MS = 30000
EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_DISCONNECTED
)


def event_line(monitor):
    event = recv_monitor_message(monitor)
    return "%s %s" % (zmq.Event(event["event"]).name, event["value"])


def serve(args):
    ctx = zmq.Context()
    auth = ThreadAuthenticator(ctx)
    auth.start()
    certs = tempfile.TemporaryDirectory()
    if args.curve_server:
        # One public certificate file per allowed key, as zmq.auth.load_certificates reads them.
        for i, key in enumerate(args.allow):
            with open(os.path.join(certs.name, "allowed-%d.key" % i), "w") as f:
                f.write('metadata\ncurve\n    public-key = "%s"\n' % key)
        auth.configure_curve(domain="*", location=certs.name)
    if args.plain:
        users = dict(p.split(":", 1) for p in args.plain)
        auth.configure_plain(domain="*", passwords=users)
    s = ctx.socket(zmq.ROUTER)
    s.setsockopt(zmq.LINGER, 1000)
    if args.curve_server:
        curve_server(s, args.curve_server)
    if args.plain:
        s.plain_server = True
    monitor = s.get_monitor_socket(EVENTS)
    s.bind(args.endpoint)
    out("READY " + s.getsockopt(zmq.LAST_ENDPOINT).decode())
    watch = poller(s, monitor)
    while True:
        ready = dict(watch.poll(IDLE_MS))
        if not ready:
            fail("serve: idle too long")
        if monitor in ready:
            out("EVENT " + event_line(monitor))
        if s in ready:
            msg = s.recv_multipart()
            if b"intruder" in msg[1:]:
                fail("intruder delivered")
            out("GOT %d frames" % (len(msg) - 1))
            if msg[1:] == [b"quit"]:
                s.send_multipart([msg[0], b"bye"])
                break
            s.send_multipart(msg)
    s.disable_monitor()
    monitor.close()
    s.close()
    auth.stop()
    ctx.term()
    certs.cleanup()
    out("EXIT")


def client(args):
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if args.curve_client:
        curve_client(s, args.curve_client)
    if args.plain_client:
        user, password = args.plain_client.split(":", 1)
        s.plain_username = user.encode()
        s.plain_password = password.encode()
    monitor = s.get_monitor_socket(EVENTS)
    s.connect(args.endpoint)
    sent = [b"intruder"] if args.refused else [b"hello", b"", b"libzmq" + b"x" * BIG]
    s.send_multipart(sent)
    watch = poller(s, monitor)
    while True:
        ready = dict(watch.poll(TIMEOUT_MS))
        if not ready:
            fail("client: nothing happened in time")
        if s in ready:
            got = s.recv_multipart()
            if args.refused:
                fail("client: a refused client got a reply %r" % got)
            if got != sent:
                fail("client: echo mismatch %r" % got)
            out("OK")
            break
        if monitor in ready:
            line = event_line(monitor)
            if args.refused and not line.startswith("HANDSHAKE_SUCCEEDED"):
                out("REFUSED " + line)
                break
            if args.refused:
                fail("client: handshake succeeded: " + line)
    s.disable_monitor()
    monitor.close()
    s.close()
    ctx.term()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=["serve", "client"])
    p.add_argument("endpoint")
    p.add_argument("--curve-server", help="CURVE server with this Z85 secret key")
    p.add_argument("--allow", action="append", default=[], help="allowed client public key")
    p.add_argument("--plain", action="append", default=[], help="PLAIN user USER:PASS")
    p.add_argument("--curve-client", help="CURVE client: SECRET,SERVERPUBLIC in Z85")
    p.add_argument("--plain-client", help="PLAIN client: USER:PASS")
    p.add_argument("--refused", action="store_true")
    args = p.parse_args()
    if args.scenario == "serve":
        serve(args)
    else:
        client(args)


if __name__ == "__main__":
    main()
