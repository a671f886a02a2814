"""Files up and down for one tab, addressed by the session id its socket was given:

- ``GET  /api/sessions/{id}/world``     the session file (Save world)
- ``POST /api/sessions/{id}/world``     replace the world by an uploaded session file (Load world)
- ``POST /api/sessions/{id}/start``     a new world from an uploaded image (+ depth map)
- ``GET  /api/sessions/{id}/points.ply`` the memory's points with their colours (Export PLY)
- ``GET  /api/sessions/{id}/path.json``  the walk as a trajectory JSON (Export path)

Each runs as a job on the worker, in turn with the tab's steps. A bad upload answers 400 with
a message the page shows; the tab's world is unchanged.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, File, HTTPException, Request, UploadFile
from fastapi.responses import Response

from mirage.errors import MirageError
from mirage.explore.tab import WORLD_SUFFIX, Tab

router = APIRouter(prefix="/api/sessions/{session_id}")


async def _run(request: Request, session_id: str, fn):
    manager = request.app.state.manager
    if manager.get(session_id) is None:
        raise HTTPException(404, detail="no such session: it was closed or never opened; reload the page")
    try:
        return await asyncio.wrap_future(manager.submit(session_id, fn, kind="file"))
    except MirageError as err:
        raise HTTPException(400, detail=str(err)) from None
    except asyncio.CancelledError:
        raise HTTPException(410, detail="the session closed before this finished") from None


async def _read(upload: UploadFile, what: str, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, detail=f"the {what} is larger than the limit of {limit / 2**20:.1f} MiB")
    if not data:
        raise HTTPException(400, detail=f"the {what} is empty")
    return data


def _download(data: bytes, filename: str, media_type: str) -> Response:
    return Response(data, media_type=media_type,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/world")
async def save_world(request: Request, session_id: str) -> Response:
    data = await _run(request, session_id, Tab.save)
    return _download(data, f"world{WORLD_SUFFIX}", "application/octet-stream")


@router.post("/world")
async def load_world(request: Request, session_id: str, world: UploadFile = File(...)) -> dict:
    data = await _read(world, "world file", request.app.state.manager.config.max_upload_bytes)
    await _run(request, session_id, lambda tab: tab.load(data, world.filename or "world file"))
    return {"ok": True}


@router.post("/start")
async def start_from_image(request: Request, session_id: str, image: UploadFile = File(...),
                           depth: UploadFile | None = File(None)) -> dict:
    limit = request.app.state.manager.config.max_upload_bytes
    image_data = await _read(image, "image", limit)
    depth_data = await _read(depth, "depth map", limit) if depth is not None and depth.filename else None
    await _run(request, session_id, lambda tab: tab.start_from_image(
        image_data, depth_data, image.filename or "image.png", depth.filename if depth_data else None))
    return {"ok": True}


@router.get("/points.ply")
async def export_ply(request: Request, session_id: str) -> Response:
    return _download(await _run(request, session_id, Tab.ply), "memory.ply", "application/octet-stream")


@router.get("/path.json")
async def export_path(request: Request, session_id: str) -> Response:
    return _download(await _run(request, session_id, Tab.path_json), "path.json", "application/json")
