"""`create_app`: the explorer as a FastAPI application (tests drive it with ``TestClient``).

Requests that do not come from the server's own page (by ``Host`` and ``Origin``) are refused
(:mod:`mirage.explore.guard`). The app holds one :class:`~mirage.explore.manager.TabManager` in ``app.state.manager``; its
worker thread starts and stops with the app's lifespan.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from mirage.explore.config import ExploreConfig
from mirage.explore.guard import LocalOnly
from mirage.explore.manager import TabManager
from mirage.explore.routers import files, pages, socket
from mirage.explore.worlds import WorldMaker

__all__ = ["create_app"]


def create_app(maker: WorldMaker, config: ExploreConfig | None = None) -> FastAPI:
    """The explorer for sessions made by ``maker``, within the limits of ``config``."""
    config = config or ExploreConfig()
    manager = TabManager(maker, config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        manager.start()
        try:
            yield
        finally:
            manager.stop()

    # Uploads carry an image and a depth map at most, each within max_upload_bytes.
    app = FastAPI(title="mirage explore", lifespan=lifespan, docs_url=None, redoc_url=None,
                  max_body_size=2 * config.max_upload_bytes + 2**16)
    app.state.manager = manager
    app.add_middleware(LocalOnly, allow_origins=config.allow_origins)  # this server's own page only
    app.include_router(pages.router)
    app.include_router(socket.router)
    app.include_router(files.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC), name="static")
    return app
