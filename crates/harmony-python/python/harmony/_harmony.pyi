"""Type stubs of the native module harmony._harmony (see harmony/__init__.py)."""

import os
import uuid
from typing import Dict, List, Optional, Sequence, Tuple, Union

Frame = Union[bytes, bytearray, memoryview, str]
Content = Union[Frame, Sequence[Frame]]
PeerId = Union[uuid.UUID, str, bytes]

DEFAULT_PORT: int
__version__: str

class HarmonyError(Exception):
    """A Harmony node could not start or could not carry out a command."""

class NodeStoppedError(HarmonyError):
    """The node has stopped: it sends nothing more."""

class UnknownPeerError(HarmonyError):
    """No known (ready) peer has this UUID."""

def curve_keypair() -> Tuple[str, str]:
    """A new CURVE key pair, as (public, secret) Z85 strings (40 characters each)."""

class Event:
    """One event of a node (ENTER, EXIT, JOIN, LEAVE, WHISPER, SHOUT, EVASIVE, SILENT, LEADER,
    HEADERS, STOP)."""

    @property
    def type(self) -> str: ...
    @property
    def peer(self) -> uuid.UUID: ...
    @property
    def peer_id(self) -> str:
        """The peer's UUID as 32 lowercase hex digits."""
    @property
    def peer_name(self) -> str: ...
    @property
    def group(self) -> Optional[str]:
        """JOIN, LEAVE, SHOUT, LEADER: the group."""
    @property
    def content(self) -> Optional[List[bytes]]:
        """WHISPER, SHOUT: the message frames."""
    @property
    def headers(self) -> Optional[Dict[str, str]]:
        """ENTER, HEADERS (a Harmony peer changed them): the peer's headers."""
    @property
    def endpoint(self) -> Optional[str]:
        """ENTER: the peer's inbox endpoint, tcp://ip:port."""

class _Node:
    def __init__(
        self,
        name: Optional[str] = None,
        *,
        headers: Optional[Dict[str, str]] = None,
        interface: Optional[str] = None,
        loopback: bool = False,
        port: int = 5670,
        interval: float = 1.0,
        evasive_timeout: Optional[float] = None,
        expired_timeout: Optional[float] = None,
        curve_secret_key: Optional[str] = None,
        curve_cert: Optional[Union[str, os.PathLike]] = None,
        uuid: Optional[PeerId] = None,
    ) -> None: ...
    @property
    def uuid(self) -> uuid.UUID: ...
    @property
    def name(self) -> str: ...
    @property
    def endpoint(self) -> str: ...
    @property
    def interface(self) -> str: ...
    @property
    def public_key(self) -> Optional[str]: ...
    @property
    def finished(self) -> bool:
        """True once the node has stopped and every event was read."""
    def join(self, group: str) -> None: ...
    def leave(self, group: str) -> None: ...
    def shout(self, group: str, content: Content) -> None: ...
    def whisper(self, peer: PeerId, content: Content) -> None: ...
    def recv(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event; None on timeout or once the node stopped and every event was read."""
    def recv_multipart(self, timeout: Optional[float] = None) -> Optional[List[bytes]]:
        """The next event as pyre's recv() returns it."""
    @property
    def pending(self) -> int:
        """How many events wait to be read."""
    def has_events(self) -> bool: ...
    def fileno(self) -> int:
        """Readable exactly while events wait (select, asyncio add_reader, zmq.Poller)."""
    def peers(self) -> List[uuid.UUID]: ...
    def peers_by_group(self, group: str) -> List[uuid.UUID]: ...
    def own_groups(self) -> List[str]: ...
    def peer_groups(self) -> List[str]: ...
    def peer_name(self, peer: PeerId) -> Optional[str]: ...
    def peer_address(self, peer: PeerId) -> Optional[str]: ...
    def peer_header_value(self, peer: PeerId, key: str) -> Optional[str]: ...
    def peer_headers(self, peer: PeerId) -> Optional[Dict[str, str]]: ...
    def set_header(self, key: str, value: str) -> None:
        """Changes (or adds) one of this node's headers while it runs; Harmony peers see a
        HEADERS event, Zyre and pyre peers keep the HELLO's. ValueError for X-HARMONY."""
    def request_properties(self, peer: PeerId, timeout: Optional[float] = None) -> Dict[str, str]:
        """A Harmony peer's current headers, asked for over the network (timeout: 5.0 s).
        Raises TimeoutError, UnknownPeerError, or HarmonyError for a peer that does not
        speak property requests."""
    def stop(self) -> None: ...
    def __enter__(self) -> "_Node": ...
    def __exit__(self, *args: object) -> bool: ...
