"""Harmony from Python: ZRE/Zyre nodes on a Rust core.

A node finds its peers by UDP beacons and talks to them over ZMTP (the ZRE protocol: compatible
with Zyre and pyre), in groups (``join``/``shout``) or one to one (``whisper``), optionally
encrypted with CURVE. ``harmony.pyre`` is a drop-in for pyre.

    import harmony

    with harmony.Node("alice", loopback=True) as node:
        node.join("CHAT")
        event = node.recv(timeout=5.0)      # or: async for event in node.events()
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

from ._harmony import (
    DEFAULT_PORT,
    Event,
    HarmonyError,
    NodeStoppedError,
    UnknownPeerError,
    __version__,
    _Node,
    curve_keypair,
)

__all__ = [
    "DEFAULT_PORT",
    "Event",
    "HarmonyError",
    "Node",
    "NodeStoppedError",
    "UnknownPeerError",
    "curve_keypair",
]


class Node(_Node):
    __doc__ = _Node.__doc__

    def __enter__(self) -> "Node":
        return self

    async def events(self) -> AsyncIterator[Event]:
        """Yields the node's events as they come, ending after STOP.

        Waits in the event loop (``loop.add_reader`` on ``fileno()``), never in a thread and
        never holding the GIL.
        """
        loop = asyncio.get_running_loop()
        fd = self.fileno()
        while True:
            event = self.recv(0)
            if event is not None:
                yield event
                if event.type == "STOP":
                    return
                continue
            if self.finished:
                return
            ready = loop.create_future()
            loop.add_reader(fd, _wake, ready)
            try:
                await ready
            finally:
                loop.remove_reader(fd)


def _wake(ready: asyncio.Future) -> None:
    if not ready.done():
        ready.set_result(None)
