"""``/ws``: one WebSocket per tab. Moves and acts come in as JSON text; frames, points and
state go out (:mod:`mirage.explore.models`). A bad message gets an error message and changes
nothing; the tab's session lives as long as its socket (or until it idles out). What waits to
be sent is bounded (``max_send_bytes``): a page that stops reading is disconnected."""

from __future__ import annotations

import asyncio
import collections
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ValidationError

from mirage.explore.manager import ServerFull
from mirage.explore.models import CLIENT_MESSAGE, Error, Full, Move, Options, Ping, Reroll, Undo
from mirage.explore.tab import Tab

router = APIRouter()

CLOSE_TRY_AGAIN_LATER = 1013


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "message"
    return f"bad message ({where}: {first.get('msg', 'invalid')}); expected JSON like {{\"type\": \"move\", \"forward\": 0.25}}"


class Outbox:
    """A connection's messages waiting to be sent, bounded in bytes. Past ``limit`` the page is
    not reading (or the network cannot carry them): the outbox drops everything and marks
    itself overflowed, and the connection is closed. Used on the event loop only."""

    def __init__(self, limit: int) -> None:
        self.limit, self.bytes, self.overflowed = limit, 0, False
        self._items: collections.deque = collections.deque()
        self._ready = asyncio.Event()
        self.overflow = asyncio.Event()  # set once, when the limit is passed

    def put(self, message) -> None:
        """Queue a pydantic model (sent as JSON text), bytes, or None (close the connection)."""
        if self.overflowed:
            return
        if isinstance(message, BaseModel):
            message = message.model_dump_json()
        size = 0 if message is None else len(message)
        if self._items and self.bytes + size > self.limit:
            self.overflowed = True
            self._items.clear()
            self.bytes = 0
            self.overflow.set()
        else:
            self._items.append((message, size))
            self.bytes += size
        self._ready.set()

    async def get(self):
        """The next message; :class:`SlowReader` once overflowed."""
        while not self._items:
            if self.overflowed:
                raise SlowReader
            self._ready.clear()
            await self._ready.wait()
        message, size = self._items.popleft()
        self.bytes -= size
        return message


class SlowReader(Exception):
    """The page did not take its messages: more than ``max_send_bytes`` were waiting."""


@router.websocket("/ws")
async def explore_socket(websocket: WebSocket) -> None:
    manager = websocket.app.state.manager
    limit = manager.config.max_message_bytes
    await websocket.accept()
    loop = asyncio.get_running_loop()
    outbox = Outbox(manager.config.max_send_bytes)

    def emit(message) -> None:  # called from the worker thread (and the loop)
        with contextlib.suppress(RuntimeError):  # the loop is gone: the tab is closing anyway
            loop.call_soon_threadsafe(outbox.put, message)

    try:
        tab = manager.open(emit)
    except ServerFull as full:
        await websocket.send_text(Full(message=str(full)).model_dump_json())
        await websocket.close(code=CLOSE_TRY_AGAIN_LATER, reason="server full")
        return

    async def send_all() -> None:
        while True:
            message = await outbox.get()
            if message is None:
                await websocket.close(code=1000, reason="session closed")
                return
            if isinstance(message, str):
                await websocket.send_text(message)
            else:
                await websocket.send_bytes(message)

    async def receive_all() -> None:
        while True:
            received = await websocket.receive()
            if received["type"] == "websocket.disconnect":
                return
            text = received.get("text")
            if text is None:
                emit(Error(message="binary messages are not accepted; send JSON text"))
                continue
            if len(text.encode()) > limit:
                emit(Error(message=f"message of {len(text.encode())} bytes refused: the limit is {limit}"))
                continue
            try:
                message = CLIENT_MESSAGE.validate_json(text)
            except ValidationError as err:
                emit(Error(message=_describe(err)))
                continue
            dispatch(manager, tab, message)

    tasks = [asyncio.create_task(send_all()), asyncio.create_task(receive_all()),
             asyncio.create_task(outbox.overflow.wait())]
    try:
        # whichever ends first ends the connection: a disconnect, the session's close, or a
        # page that stopped reading (the outbox overflowed, while the sender may still wait on a
        # full socket buffer)
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        manager.close(tab.id)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, SlowReader, Exception):
                await task
        if outbox.overflowed:  # the socket may be stuck on a full buffer: do not wait long on it
            with contextlib.suppress(Exception):
                await asyncio.wait_for(websocket.close(code=CLOSE_TRY_AGAIN_LATER,
                                                       reason="the page did not read its messages"), 2.0)


def dispatch(manager, tab: Tab, message) -> None:
    if isinstance(message, Move):
        manager.submit(tab.id, lambda t: t.step(message), kind="step")
    elif isinstance(message, Undo):
        manager.submit(tab.id, Tab.undo, kind="act")
    elif isinstance(message, Reroll):
        manager.submit(tab.id, lambda t: t.reroll(message.seed), kind="act")
    elif isinstance(message, Options):
        manager.submit(tab.id, lambda t: t.set_ground_truth(message.ground_truth), kind="act")
    elif isinstance(message, Ping):  # keeps an idle tab open
        manager.submit(tab.id, lambda t: None, kind="act")
