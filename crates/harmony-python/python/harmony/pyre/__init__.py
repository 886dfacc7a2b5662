"""pyre's API on Harmony: change ``from pyre import Pyre`` to ``from harmony.pyre import Pyre``.

``Pyre`` has pyre's methods and returns what pyre returns: ``recv()`` gives the same multipart
lists (``[type, uuid bytes, name, ...]``), ``peers()`` gives ``uuid.UUID`` objects, ``socket()``
can be registered in a ``zmq.Poller`` (or ``select``), ``PyreEvent`` parses an event, and
``harmony.pyre.zhelper`` has ``zthread_fork``/``zcreate_pipe`` (these two need pyzmq).

Where Harmony differs from pyre, on purpose:

- ``socket()`` is not a zmq socket but an object with ``fileno()`` that is readable while
  events wait: ``zmq.Poller``, ``select`` and ``asyncio`` accept it; read events with
  ``recv()``, not from the socket (``socket().recv_multipart()`` is ``recv()`` for pyre code
  that reads the socket itself). ``zmq.Poller`` reports it by its descriptor (an int); the
  socket compares equal to that int, so ``n.socket() in dict(poller.poll())`` works as in pyre.
  Register it after ``start()`` (pyre programs do).
- ``set_interface`` is honoured ("loopback" gives one-machine mode; pyre ignores the call and
  cannot use loopback at all), and ``set_curve_secret_key`` turns on CURVE encryption.
- Events pyre never sends (EVASIVE, SILENT, LEADER) are not delivered.
- ``set_endpoint`` (gossip discovery) is not supported and raises ``NotImplementedError``.
- Settings after ``start()`` (``set_header``, ``set_port``, ...) raise ``RuntimeError``: in pyre
  they are silently lost.
- ``whisper`` to a peer that is gone drops the message (as pyre); a malformed argument raises
  ``TypeError``/``ValueError`` at the call instead of breaking the node's thread.
- ``recv()`` after the node stopped and every event was read raises ``NodeStoppedError``
  instead of blocking forever.
"""

from __future__ import annotations

import json
import logging
import uuid as _uuid
from typing import Any, Iterator, List, Optional, Union

from .. import DEFAULT_PORT, Node, NodeStoppedError, UnknownPeerError

__all__ = ["Pyre", "PyreEvent", "zhelper"]
__version__ = "0.3.4"
__version_info__ = (0, 3, 4)

logger = logging.getLogger(__name__)

Frames = Union[bytes, str, List[Union[bytes, str]]]


class _Socket:
    """What ``Pyre.socket()`` returns: pollable through ``fileno()``."""

    def __init__(self, pyre: "Pyre") -> None:
        self._pyre = pyre

    def fileno(self) -> int:
        return self._pyre._started("socket().fileno()").fileno()

    def recv_multipart(self) -> List[bytes]:
        return self._pyre.recv()

    # zmq.Poller reports objects that are not zmq sockets by their descriptor: equal to it, the
    # socket is found in `dict(poller.poll())` as pyre programs look it up.
    def __eq__(self, other: object) -> bool:
        if isinstance(other, int) and self._pyre._node is not None:
            return other == self.fileno()
        return other is self

    def __hash__(self) -> int:
        return hash(self.fileno()) if self._pyre._node is not None else id(self)

    def __repr__(self) -> str:
        return "<harmony.pyre socket of %r>" % (self._pyre.name(),)


class Pyre:
    """A ZRE node with pyre's API; nothing is sent before ``start()``."""

    def __init__(self, name: Optional[str] = None, ctx: Any = None, *args: Any, **kwargs: Any) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError("name must be a str, not %s" % type(name).__name__)
        self._ctx = ctx if ctx is not None else kwargs.get("ctx")
        self._uuid = _uuid.uuid4()
        self._name = name
        self._headers: dict = {}
        self._port = DEFAULT_PORT
        self._interval: Optional[float] = None
        self._interface: Optional[str] = None
        self._curve_secret_key: Optional[str] = None
        self._groups: List[str] = []
        self._node: Optional[Node] = None
        self._socket = _Socket(self)

    # -- settings (before start) ------------------------------------------------------------

    def _settable(self, what: str) -> None:
        if self._node is not None:
            raise RuntimeError("harmony.pyre: %s must come before start()" % what)

    def _started(self, what: str) -> Node:
        if self._node is None:
            raise RuntimeError("harmony.pyre: start() the node before %s" % what)
        return self._node

    def uuid(self) -> _uuid.UUID:
        """This node's UUID."""
        return self._uuid

    def name(self) -> str:
        """This node's name (default: the first 6 hex digits of its UUID)."""
        return self._name if self._name else self._uuid.hex[:6]

    def set_name(self, name: str) -> None:
        """Sets the name (deprecated in pyre: give it to the constructor)."""
        self._settable("set_name")
        if not isinstance(name, str):
            raise TypeError("name must be a str, not %s" % type(name).__name__)
        self._name = name

    def set_header(self, key: str, value: str) -> None:
        """Sets a header sent to every peer (in their ENTER)."""
        self._settable("set_header")
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("header names and values must be str")
        self._headers[key] = value

    def set_verbose(self) -> None:
        """Logs this node's API calls (logger ``harmony.pyre``)."""
        logger.setLevel(logging.DEBUG)

    def set_port(self, port_nbr: Union[int, str, bytes]) -> None:
        """Sets the UDP discovery port (default 5670)."""
        self._settable("set_port")
        try:
            port = int(port_nbr)
        except (TypeError, ValueError):
            raise ValueError("port must be a number, not %r" % (port_nbr,)) from None
        if not 0 < port < 65536:
            raise ValueError("port must be 1 to 65535, not %d" % port)
        self._port = port

    def set_interval(self, interval: Union[int, str]) -> None:
        """Sets the beacon interval in milliseconds (default 1000)."""
        self._settable("set_interval")
        try:
            ms = int(interval)
        except (TypeError, ValueError):
            raise ValueError("interval must be a number of milliseconds, not %r" % (interval,)) from None
        if ms <= 0:
            raise ValueError("interval must be more than 0 ms, not %d" % ms)
        self._interval = ms / 1000.0

    def set_interface(self, value: str) -> None:
        """Sets the beacon interface: "auto", "loopback", a name ("eth0") or an address."""
        self._settable("set_interface")
        if not isinstance(value, str):
            raise TypeError("interface must be a str, not %s" % type(value).__name__)
        self._interface = value

    def set_curve_secret_key(self, secret_z85: str) -> None:
        """Harmony only: encrypted mode (CURVE) with this Z85 secret key."""
        self._settable("set_curve_secret_key")
        self._curve_secret_key = secret_z85

    def set_endpoint(self, format: str, *args: Any) -> None:
        raise NotImplementedError("harmony.pyre: gossip discovery (set_endpoint) is not supported")

    # -- life -------------------------------------------------------------------------------

    def start(self) -> None:
        """Starts discovery; joins the groups joined so far."""
        self._settable("start")
        kwargs: dict = {
            "headers": self._headers,
            "port": self._port,
            "uuid": self._uuid,
            "interface": self._interface,
            "curve_secret_key": self._curve_secret_key,
        }
        if self._interval is not None:
            kwargs["interval"] = self._interval
        node = Node(self.name(), **kwargs)
        for group in self._groups:
            node.join(group)
        self._node = node
        logger.debug("started %r", node)

    def stop(self) -> None:
        """Stops: peers are told, a STOP event is the last one."""
        if self._node is not None:
            self._node.stop()

    # -- events -----------------------------------------------------------------------------

    def recv(self) -> List[bytes]:
        """The next event as pyre's multipart list (blocks until one comes)."""
        frames = self._started("recv()").recv_multipart()
        if frames is None:
            raise NodeStoppedError("the node has stopped and every event was read")
        return frames

    def socket(self) -> _Socket:
        """An object to poll (``zmq.Poller``, ``select``): readable while events wait."""
        return self._socket

    def recent_events(self) -> Iterator["PyreEvent"]:
        """Yields the events already waiting."""
        node = self._started("recent_events()")
        while node.has_events():
            yield PyreEvent(self)

    def events(self) -> Iterator["PyreEvent"]:
        """Yields events forever."""
        while True:
            yield PyreEvent(self)

    # -- groups and messages ----------------------------------------------------------------

    def join(self, group: str) -> None:
        """Joins a group."""
        if self._node is None:
            _check_group(group)
            if group not in self._groups:
                self._groups.append(group)
        else:
            self._node.join(group)

    def leave(self, group: str) -> None:
        """Leaves a group."""
        if self._node is None:
            _check_group(group)
            if group in self._groups:
                self._groups.remove(group)
        else:
            self._node.leave(group)

    def whisper(self, peer: _uuid.UUID, msg_p: Frames) -> None:
        """Sends a message (bytes or a list of frames) to one peer; dropped if it is gone."""
        node = self._started("whisper()")
        try:
            node.whisper(peer, msg_p)
        except UnknownPeerError:
            logger.debug("whisper to unknown peer %s dropped", peer)

    def shout(self, group: str, msg_p: Frames) -> None:
        """Sends a message (bytes or a list of frames) to a group."""
        self._started("shout()").shout(group, msg_p)

    def whispers(self, peer: _uuid.UUID, format: str, *args: Any) -> None:
        """Sends a string to one peer (``format % args`` when args are given)."""
        self.whisper(peer, _text(format, args))

    def shouts(self, group: str, format: str, *args: Any) -> None:
        """Sends a string to a group (``format % args`` when args are given)."""
        self.shout(group, _text(format, args))

    # -- queries ----------------------------------------------------------------------------

    def peers(self) -> List[_uuid.UUID]:
        """UUIDs of the known peers."""
        return self._started("peers()").peers()

    def peers_by_group(self, group: str) -> List[_uuid.UUID]:
        """UUIDs of the peers in a group."""
        return self._started("peers_by_group()").peers_by_group(group)

    def endpoint(self) -> str:
        """This node's inbox endpoint."""
        return self._started("endpoint()").endpoint

    def get_peer_name(self, peer: _uuid.UUID) -> str:
        """A peer's name ("" if unknown)."""
        return self._started("get_peer_name()").peer_name(peer) or ""

    def peer_address(self, peer: _uuid.UUID) -> str:
        """A peer's endpoint ("" if unknown)."""
        return self._started("peer_address()").peer_address(peer) or ""

    get_peer_address = peer_address

    def peer_header_value(self, peer: _uuid.UUID, name: str) -> str:
        """One of a peer's headers ("" if unknown)."""
        return self._started("peer_header_value()").peer_header_value(peer, name) or ""

    get_peer_header_value = peer_header_value

    def peer_headers(self, peer: _uuid.UUID) -> Union[dict, str]:
        """A peer's headers ("" if the peer is unknown, as pyre)."""
        headers = self._started("peer_headers()").peer_headers(peer)
        return "" if headers is None else headers

    def own_groups(self) -> List[str]:
        """The groups this node is in."""
        if self._node is None:
            return list(self._groups)
        return self._node.own_groups()

    def peer_groups(self) -> List[str]:
        """The groups known peers are in."""
        return self._started("peer_groups()").peer_groups()

    @staticmethod
    def version() -> tuple:
        """The pyre API version this module follows."""
        return __version_info__


class PyreEvent:
    """One event of a ``Pyre`` node, parsed as pyre's ``PyreEvent`` does (it calls ``recv()``)."""

    def __init__(self, node: Pyre) -> None:
        incoming = node.recv()
        self.type: str = incoming.pop(0).decode("utf-8")
        self.peer_uuid_bytes: bytes = incoming.pop(0)
        self.peer_name: str = incoming.pop(0).decode("utf-8")
        self.headers: Optional[dict] = None
        self.peer_addr: Optional[str] = None
        self.group: Optional[str] = None
        self.msg: Optional[List[bytes]] = None
        if self.type == "ENTER":
            self.headers = json.loads(incoming[0].decode("utf-8"))
            self.peer_addr = incoming[1].decode("utf-8")
        elif self.type in ("JOIN", "LEAVE"):
            self.group = incoming[0].decode("utf-8")
        elif self.type == "WHISPER":
            self.msg = incoming
        elif self.type == "SHOUT":
            self.group = incoming[0].decode("utf-8")
            self.msg = incoming[1:]

    def header(self, name: str) -> Optional[str]:
        """One header of an ENTER event, else None."""
        return self.headers.get(name) if self.headers else None

    @property
    def peer_uuid(self) -> _uuid.UUID:
        return _uuid.UUID(bytes=self.peer_uuid_bytes)

    def __str__(self) -> str:
        return "<%s %s from %s>" % (__name__, self.type, self.peer_uuid.hex)


def _check_group(group: str) -> None:
    if not isinstance(group, str):
        raise TypeError("a group name must be a str, not %s" % type(group).__name__)
    if not 0 < len(group.encode("utf-8")) <= 255:
        raise ValueError("a group name must be 1 to 255 bytes of UTF-8")


def _text(format: str, args: tuple) -> str:
    if not isinstance(format, str):
        raise TypeError("the message must be a str, not %s" % type(format).__name__)
    return format % args if args else format


def __getattr__(name: str) -> Any:
    # `from harmony.pyre import zhelper` imports pyzmq only when asked for.
    if name == "zhelper":
        import importlib

        return importlib.import_module(__name__ + ".zhelper")
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
