"""Serving the app with uvicorn: in the foreground (the CLI) or on a thread (tests, benchmarks)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

__all__ = ["make_server", "RunningServer", "start_in_thread"]

WS_MAX_SIZE = 2**20  # larger WebSocket messages close the socket; the app's own limit is far lower


def make_server(app, host: str = "127.0.0.1", port: int = 8000):
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", ws_max_size=WS_MAX_SIZE))


def bound_port(server) -> int:
    return server.servers[0].sockets[0].getsockname()[1]


@dataclass
class RunningServer:
    server: object
    thread: threading.Thread
    url: str

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_in_thread(app, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0) -> RunningServer:
    """Run ``app`` on a daemon thread; returns once it listens (port 0: a free one)."""
    server = make_server(app, host, port)
    thread = threading.Thread(target=server.run, name="mirage-explore-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError("the explorer server did not start")
        time.sleep(0.02)
    return RunningServer(server, thread, f"http://{host}:{bound_port(server)}")
