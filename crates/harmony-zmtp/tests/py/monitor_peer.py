"""libzmq (pyzmq) side of the socket-API interop tests: one ROUTER or DEALER with a socket
monitor (zmq_socket_monitor), driven by commands on stdin, one answer line per command.

usage: monitor_peer.py router BIND_ENDPOINT | dealer CONNECT_ENDPOINT

The router binds at start and prints 'READY <endpoint>'; the dealer prints 'READY <endpoint>'
too. Commands: connect, disconnect, send TEXT, recv, unbind, wait EVENT (the next EVENT after
the last one waited for), events N (the first N event names), close (closes the socket and
prints every event up to MONITOR_STOPPED), quit. Every wait has a timeout,
so the script never hangs.
"""

import os
import select
import sys
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from zmq_helpers import TIMEOUT_MS, fail, out

NAMES = {
    getattr(zmq, n): n[len("EVENT_"):]
    for n in dir(zmq)
    if n.startswith("EVENT_") and not n.startswith("EVENT_ALL")
}


class Monitored:
    def __init__(self, kind):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(kind)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.IPV6, 1)
        self.sock.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
        self.sock.setsockopt(zmq.SNDTIMEO, TIMEOUT_MS)
        self.mon = self.sock.get_monitor_socket()
        self.mon.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
        self.seen = []
        self.cursor = 0

    def more(self):
        try:
            event = recv_monitor_message(self.mon)
        except zmq.Again:
            fail("no monitor event in time; seen so far: " + " ".join(self.seen))
        self.seen.append(NAMES.get(event["event"], str(event["event"])))

    def wait(self, name):
        while True:
            while self.cursor < len(self.seen):
                self.cursor += 1
                if self.seen[self.cursor - 1] == name:
                    return
            self.more()

    def events(self, n):
        while len(self.seen) < n:
            self.more()
        return self.seen[:n]


def lines(m, deadline):
    """Lines from stdin. While waiting, the socket is polled: libzmq sockets carry out
    pending work (such as finishing a disconnect) only when the application calls them."""
    pending = b""
    while time.time() < deadline:
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            yield line.decode()
        ready, _, _ = select.select([0], [], [], 0.01)
        m.sock.getsockopt(zmq.EVENTS)
        if ready:
            chunk = os.read(0, 4096)
            if not chunk:
                return
            pending += chunk
    fail("ran too long")


def main():
    role, endpoint = sys.argv[1], sys.argv[2]
    m = Monitored(zmq.ROUTER if role == "router" else zmq.DEALER)
    if role == "router":
        m.sock.bind(endpoint)
        endpoint = m.sock.getsockopt_string(zmq.LAST_ENDPOINT)
    out("READY " + endpoint)
    for line in lines(m, time.time() + 120):
        cmd, _, arg = line.strip().partition(" ")
        try:
            if cmd == "connect":
                m.sock.connect(endpoint)
            elif cmd == "disconnect":
                m.sock.disconnect(endpoint)
            elif cmd == "send":
                m.sock.send_string(arg)
            elif cmd == "recv":
                out("GOT " + m.sock.recv_multipart()[-1].decode())
                continue
            elif cmd == "unbind":
                m.sock.unbind(endpoint)
            elif cmd == "wait":
                m.wait(arg)
            elif cmd == "events":
                out("EVENTS " + " ".join(m.events(int(arg))))
                continue
            elif cmd == "close":
                m.sock.close()
                m.wait("MONITOR_STOPPED")
                out("EVENTS " + " ".join(m.seen))
                return
            elif cmd == "quit":
                out("OK")
                return
            else:
                fail("unknown command " + cmd)
        except zmq.ZMQError as e:
            fail(cmd + ": " + str(e))
        out("DONE")


if __name__ == "__main__":
    main()
