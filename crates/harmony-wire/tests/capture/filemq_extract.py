#!/usr/bin/env python3
"""Cuts the FILEMQ frames out of shared/data/captures/filemq-c-session.jsonl (zeromq/filemq C
server and client) into tests/data/filemq-c.txt: one line per ZMTP message frame, in the order
each side sent them, `dir index hex`. The three 1 MB / 0.5 MB chunks of big.bin (byte i is
i mod 251) are written as their header hex then `+big OFFSET LEN`; this script checks that the
captured bytes are exactly that before it abbreviates them.

Usage: filemq_extract.py CAPTURE.jsonl > tests/data/filemq-c.txt
"""
import json
import sys

streams = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    streams.setdefault(d["dir"], []).append(bytes.fromhex(d["hex"]))

print("# zeromq/filemq v2 C server and client, cut from filemq-c-session.jsonl by filemq_extract.py")
print("# dir index hex ['+big' offset len]; ZMTP greeting and READY left out")
for direction in ("c2s", "s2c"):
    buf = b"".join(streams[direction])
    i = 64  # greeting
    index = 0
    while i < len(buf):
        flags = buf[i]
        if flags & 2:
            n, h = int.from_bytes(buf[i + 1 : i + 9], "big"), 9
        else:
            n, h = buf[i + 1], 2
        body = buf[i + h : i + h + n]
        i += h + n
        if flags & 4:
            continue  # READY command
        assert flags & 1 == 0, "single-frame messages only"
        if len(body) > 4096:
            # header: sig(2) id(1) seq(8) op(1) name longstr offset(8) eof(1) headers(4) size(4)
            name_len = int.from_bytes(body[12:16], "big")
            off_at = 16 + name_len
            offset = int.from_bytes(body[off_at : off_at + 8], "big")
            head = off_at + 8 + 1 + 4 + 4
            size = int.from_bytes(body[head - 4 : head], "big")
            assert len(body) == head + size
            assert body[head:] == bytes((offset + k) % 251 for k in range(size))
            print(f"{direction} {index} {body[:head].hex()} +big {offset} {size}")
        else:
            print(f"{direction} {index} {body.hex()}")
        index += 1
