"""pyre's thread helpers for its examples (needs pyzmq): a PAIR pipe, a thread at its end."""

from __future__ import annotations

import threading
import uuid
from typing import Any, Callable, Tuple

import zmq

__all__ = ["zcreate_pipe", "zthread_fork"]


def zcreate_pipe(ctx: zmq.Context, hwm: int = 1000) -> Tuple[zmq.Socket, zmq.Socket]:
    """Two connected PAIR sockets over inproc, (front, back)."""
    front = ctx.socket(zmq.PAIR)
    back = ctx.socket(zmq.PAIR)
    for s in (front, back):
        s.linger = 0
        s.sndhwm = hwm
        s.rcvhwm = hwm
    endpoint = "inproc://harmony-pipe-%s" % uuid.uuid4().hex
    front.bind(endpoint)
    back.connect(endpoint)
    return front, back


def zthread_fork(ctx: zmq.Context, func: Callable[..., Any], *args: Any, **kwargs: Any) -> zmq.Socket:
    """Runs ``func(ctx, pipe, *args, **kwargs)`` on a daemon thread; returns the other end."""
    front, back = zcreate_pipe(ctx)
    thread = threading.Thread(target=func, args=(ctx, back) + args, kwargs=kwargs, daemon=True)
    thread.start()
    return front
