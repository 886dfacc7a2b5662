"""Records the ZMTP greeting and READY that a pyzmq (libzmq) DEALER and ROUTER send to a raw TCP
listener on loopback. Usage: python zmtp_handshake.py OUTPUT_FILE"""

import datetime
import socket
import sys

import zmq

from zmtp_raw import handshake


def capture(socket_type: int, our_type: bytes):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(10)
    port = listener.getsockname()[1]
    ctx = zmq.Context.instance()
    s = ctx.socket(socket_type)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(f"tcp://127.0.0.1:{port}")
    conn, _ = listener.accept()
    conn.settimeout(10)
    greeting, ready = handshake(conn, our_type)
    s.close()
    conn.close()
    listener.close()
    return greeting, ready


def main():
    dealer = capture(zmq.DEALER, b"ROUTER")
    router = capture(zmq.ROUTER, b"DEALER")
    today = datetime.date.today().isoformat()
    with open(sys.argv[1], "w") as out:
        out.write(
            f"# captured from pyzmq {zmq.__version__} (libzmq {zmq.zmq_version()}) DEALER and ROUTER "
            f"connecting to a raw TCP listener on 127.0.0.1, on {today}, with "
            "crates/harmony-wire/tests/capture/zmtp_handshake.py\n"
        )
        out.write("# record = name, then the bytes the socket sent on the wire, in hex\n")
        out.write(f"dealer-greeting {dealer[0].hex()}\n")
        out.write(f"dealer-ready {dealer[1].hex()}\n")
        out.write(f"router-greeting {router[0].hex()}\n")
        out.write(f"router-ready {router[1].hex()}\n")


if __name__ == "__main__":
    main()
