"""Hand-rolled ZMTP 3.x pieces for the capture scripts: read exact greetings, frames and
messages off a plain TCP socket, so what a libzmq peer sends is recorded byte for byte."""

import socket
import struct

# The greeting a NULL-mechanism server-less peer sends: signature, version 3.1, "NULL", as-server 0.
GREETING = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x01" + b"NULL".ljust(20, b"\x00") + b"\x00" * 32
assert len(GREETING) == 64


def recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError(f"peer closed after {len(out)} of {n} bytes")
        out += chunk
    return out


def read_frame(sock: socket.socket):
    """One frame: (raw bytes including header, flags, body)."""
    head = recv_exact(sock, 1)
    flags = head[0]
    if flags & 0x02:
        size_raw = recv_exact(sock, 8)
        size = struct.unpack(">Q", size_raw)[0]
    else:
        size_raw = recv_exact(sock, 1)
        size = size_raw[0]
    body = recv_exact(sock, size)
    return head + size_raw + body, flags, body


def read_message(sock: socket.socket):
    """One message or command: (raw bytes of all its frames, is_command, frame bodies)."""
    raw, bodies = b"", []
    while True:
        frame, flags, body = read_frame(sock)
        raw += frame
        bodies.append(body)
        if flags & 0x04:
            return raw, True, bodies
        if not flags & 0x01:
            return raw, False, bodies


def command_frame(name: bytes, data: bytes) -> bytes:
    body = bytes([len(name)]) + name + data
    assert len(body) < 256
    return bytes([0x04, len(body)]) + body


def ready(socket_type: bytes) -> bytes:
    prop = b"\x0bSocket-Type" + struct.pack(">I", len(socket_type)) + socket_type
    return command_frame(b"READY", prop)


def handshake(sock: socket.socket, socket_type: bytes):
    """Sends our greeting and READY; returns the peer's raw greeting and raw READY frame."""
    sock.sendall(GREETING)
    greeting = recv_exact(sock, 64)
    raw_ready, is_command, _ = read_message(sock)
    assert is_command, "expected READY"
    sock.sendall(ready(socket_type))
    return greeting, raw_ready
