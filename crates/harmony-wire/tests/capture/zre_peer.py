"""The recording side of the ZRE capture (namespace B, 10.77.0.2): a fake ZRE peer "fakeB".

It records pyre's UDP beacon, announces itself with its own 22-byte beacon pointing at a raw TCP
listener, speaks the ZMTP handshake there by hand (recording pyre's DEALER greeting and READY)
and records the HELLO, JOIN, SHOUT and WHISPER pyre sends, as raw wire bytes. To make pyre send
them it greets pyre's inbox with a pyzmq DEALER (HELLO in group GOLDEN), and finally whispers
"done". Usage: python zre_peer.py BROADCAST_ADDR OWN_ADDR OUTPUT_FILE"""

import datetime
import importlib.metadata
import select
import socket
import struct
import sys
import time
import uuid

import zmq

from zmtp_raw import handshake, read_message

ZRE_PORT = 5670


def zre_string(s: bytes) -> bytes:
    return bytes([len(s)]) + s


def zre_longstr(s: bytes) -> bytes:
    return struct.pack(">I", len(s)) + s


def main():
    broadcast, own_addr, output = sys.argv[1], sys.argv[2], sys.argv[3]
    me = uuid.uuid4()

    beacon_rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    beacon_rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    beacon_rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    beacon_rx.bind(("0.0.0.0", ZRE_PORT))
    beacon_tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    beacon_tx.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    beacon_tx.bind((own_addr, 0))

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((own_addr, 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    my_beacon = b"ZRE\x01" + me.bytes + struct.pack(">H", port)

    deadline = time.time() + 60
    records = {}
    conn, next_beacon = None, 0.0
    while conn is None or "beacon" not in records:
        if time.time() > deadline:
            raise SystemExit(f"timed out; have {sorted(records)}")
        if time.time() >= next_beacon:
            beacon_tx.sendto(my_beacon, (broadcast, ZRE_PORT))
            next_beacon = time.time() + 0.5
        watch = [beacon_rx] + ([listener] if conn is None else [])
        ready, _, _ = select.select(watch, [], [], 0.2)
        if beacon_rx in ready:
            data, (src, _) = beacon_rx.recvfrom(1024)
            if src != own_addr and len(data) == 22 and data[:3] == b"ZRE" and "beacon" not in records:
                records["beacon"] = data
        if listener in ready:
            conn, _ = listener.accept()
            conn.settimeout(30)
            records["greeting"], records["ready"] = handshake(conn, b"ROUTER")

    names = {1: "hello", 3: "shout", 4: "join", 2: "whisper"}
    dealer = None
    while not all(name in records for name in names.values()):
        if time.time() > deadline:
            raise SystemExit(f"timed out; have {sorted(records)}")
        raw, is_command, bodies = read_message(conn)
        if is_command:
            continue
        name = names.get(bodies[0][2])
        if name is None or name in records:
            continue
        records[name] = raw
        if name == "hello":
            # pyre's HELLO carries its inbox endpoint: greet it, joined to GOLDEN.
            endpoint = bodies[0][7 : 7 + bodies[0][6]].decode()
            dealer = zmq.Context.instance().socket(zmq.DEALER)
            dealer.setsockopt(zmq.IDENTITY, b"\x01" + me.bytes)
            dealer.setsockopt(zmq.LINGER, 2000)
            dealer.connect(endpoint)
            ours = f"tcp://{own_addr}:{port}".encode()
            hello = (
                b"\xaa\xa1\x01\x02\x00\x01"
                + zre_string(ours)
                + struct.pack(">I", 1)
                + zre_longstr(b"GOLDEN")
                + b"\x01"
                + zre_string(b"fakeB")
                + struct.pack(">I", 0)
            )
            dealer.send(hello)
    dealer.send_multipart([b"\xaa\xa1\x02\x02\x00\x02", b"done"])
    dealer.close()

    today = datetime.date.today().isoformat()
    pyre_version = importlib.metadata.version("zeromq-pyre")
    with open(output, "w") as out:
        out.write(
            f"# captured from pyre {pyre_version} (PyPI zeromq-pyre) with "
            f"pyzmq {zmq.__version__} (libzmq {zmq.zmq_version()}) in a network namespace (veth "
            f"10.77.0.1 <-> {own_addr}) on {today}, with crates/harmony-wire/tests/capture/capture.sh\n"
        )
        out.write(
            "# record = name, then the bytes pyre sent on the wire, in hex: the UDP beacon, its "
            "DEALER's ZMTP greeting and READY, and each ZRE message as its ZMTP frames\n"
        )
        for name in ["beacon", "greeting", "ready", "hello", "join", "shout", "whisper"]:
            out.write(f"{name} {records[name].hex()}\n")


if __name__ == "__main__":
    main()
