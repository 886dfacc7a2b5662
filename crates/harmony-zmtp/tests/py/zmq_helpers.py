"""What peer.py and sec_peer.py share: output lines, failure, limits and CURVE key setup."""

import sys

import zmq

TIMEOUT_MS = 10000
BIG = 1 << 20


def out(line):
    print(line, flush=True)


def fail(why):
    out("FAIL " + why)
    sys.exit(1)


def curve_server(s, secret_z85):
    """Makes `s` a CURVE server with this Z85 secret key."""
    secret = secret_z85.encode()
    s.curve_server = True
    s.curve_secretkey = secret
    s.curve_publickey = zmq.curve_public(secret)


def curve_client(s, keys):
    """Makes `s` a CURVE client; `keys` is 'SECRET,SERVERPUBLIC' in Z85."""
    secret, server = keys.split(",")
    s.curve_secretkey = secret.encode()
    s.curve_publickey = zmq.curve_public(secret.encode())
    s.curve_serverkey = server.encode()


def poller(*sockets):
    """A poller watching `sockets` for input."""
    p = zmq.Poller()
    for s in sockets:
        p.register(s, zmq.POLLIN)
    return p
