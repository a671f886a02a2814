"""``/ws``: one WebSocket per tab. Moves and acts come in as JSON text; frames, points and
state go out (:mod:`mirage.explore.models`). A bad message gets an error message and changes
nothing; the tab's session lives as long as its socket (or until it idles out)."""

from __future__ import annotations

import asyncio
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


@router.websocket("/ws")
async def explore_socket(websocket: WebSocket) -> None:
    manager = websocket.app.state.manager
    limit = manager.config.max_message_bytes
    await websocket.accept()
    loop = asyncio.get_running_loop()
    outbox: asyncio.Queue = asyncio.Queue()

    def emit(message) -> None:  # called from the worker thread
        with contextlib.suppress(RuntimeError):  # the loop is gone: the tab is closing anyway
            loop.call_soon_threadsafe(outbox.put_nowait, message)

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
            if isinstance(message, BaseModel):
                await websocket.send_text(message.model_dump_json())
            else:
                await websocket.send_bytes(message)

    sender = asyncio.create_task(send_all())
    try:
        while True:
            received = await websocket.receive()
            if received["type"] == "websocket.disconnect":
                break
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
    except WebSocketDisconnect:
        pass
    finally:
        manager.close(tab.id)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender


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
