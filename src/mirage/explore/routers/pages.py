"""The page: ``/`` serves ``static/index.html``; ``/static`` is mounted by the app factory."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

router = APIRouter()

STATIC = Path(__file__).resolve().parent.parent / "static"


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


@router.get("/api/health")
async def health() -> dict:
    return {"ok": True}
