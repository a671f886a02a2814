"""`TabManager`: the open tabs, one worker thread, and fair turns between tabs.

Generation is CPU/GPU bound and a session is not thread-safe, so one worker thread runs every
job. Each tab has its own FIFO of jobs; the worker takes one job from the first tab in a
round-robin ring and puts that tab back at the end if it has more, so four walking tabs
alternate step by step and none waits behind another's backlog. A tab may queue at most
``max_pending`` steps. Tabs idle for ``idle_seconds`` are closed by the worker between jobs.
"""

from __future__ import annotations

import collections
import secrets
import threading
import time
import traceback
from concurrent.futures import Future
from typing import Callable

from mirage.errors import MirageError
from mirage.explore.config import ExploreConfig
from mirage.explore.models import Busy, Error, Notice
from mirage.explore.tab import Tab
from mirage.explore.worlds import WorldMaker

__all__ = ["TabManager", "ServerFull"]


class ServerFull(Exception):
    """Raised by :meth:`TabManager.open` when ``max_sessions`` tabs are open."""


class TabManager:
    def __init__(self, maker: WorldMaker, config: ExploreConfig) -> None:
        self.maker, self.config = maker, config
        self.tabs: dict[str, Tab] = {}
        self._jobs: dict[str, collections.deque] = {}
        self._ring: collections.deque[str] = collections.deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.busy_seconds = 0.0  # worker time spent in jobs (benchmarks)

    # -- worker ---------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._work, name="mirage-explore-worker", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._ring and not self._stopping:
                    self._cond.wait(timeout=min(5.0, self.config.idle_seconds))
                    self._close_idle()
                if self._stopping:
                    return
                tab_id = self._ring.popleft()
                jobs = self._jobs.get(tab_id)
                if not jobs:
                    continue
                job = jobs.popleft()
                if jobs:
                    self._ring.append(tab_id)
                tab = self.tabs.get(tab_id)
            self._run(tab, *job)
            with self._cond:
                self._close_idle()

    def _run(self, tab: Tab | None, fn: Callable, future: Future, kind: str) -> None:
        if tab is None or tab.closed:
            future.cancel()
            return
        t0 = time.perf_counter()
        try:
            result = fn(tab)
        except MirageError as err:  # bad input: the page shows it, the tab goes on
            if kind != "file":  # file jobs answer an HTTP request, which carries the error
                tab.emit(Error(message=str(err)))
            future.set_exception(err)
        except Exception as err:  # a bug: say so, keep the server and the tab alive
            traceback.print_exc()
            message = f"internal error in {kind}: {type(err).__name__}: {err}"
            if kind != "file":
                tab.emit(Error(message=message))
            future.set_exception(MirageError(message))
        else:
            future.set_result(result)
        finally:
            self.busy_seconds += time.perf_counter() - t0
            if kind == "step":
                with self._cond:
                    tab.pending_steps -= 1

    def _close_idle(self) -> None:
        """Close tabs idle longer than ``idle_seconds`` (called with the lock held)."""
        now = time.monotonic()
        for tab in list(self.tabs.values()):
            if now - tab.last_active > self.config.idle_seconds and not self._jobs.get(tab.id):
                tab.emit(Notice(message=f"this session was closed after {self.config.idle_seconds:.0f} s "
                                        f"without activity; reload the page to start again"))
                tab.emit(None)  # tells the connection to close
                self._forget(tab.id)

    # -- tabs -----------------------------------------------------------------------------------
    def open(self, emit: Callable[[object], None]) -> Tab:
        """A new tab (its session is made by its first job); :class:`ServerFull` when full."""
        with self._cond:
            if len(self.tabs) >= self.config.max_sessions:
                raise ServerFull(f"The server is full: {len(self.tabs)} of {self.config.max_sessions} sessions "
                                 f"are open. Close another tab or try again in a while.")
            tab = Tab(secrets.token_urlsafe(12), self.maker, self.config, emit)
            self.tabs[tab.id] = tab
            self._jobs[tab.id] = collections.deque()
        self.submit(tab.id, Tab.open, kind="open")
        return tab

    def close(self, tab_id: str) -> None:
        with self._cond:
            self._forget(tab_id)

    def _forget(self, tab_id: str) -> None:
        tab = self.tabs.pop(tab_id, None)
        for _, future, _ in self._jobs.pop(tab_id, ()):
            future.cancel()
        if tab is not None:
            tab.close()

    def get(self, tab_id: str) -> Tab | None:
        return self.tabs.get(tab_id)

    def submit(self, tab_id: str, fn: Callable[[Tab], object], *, kind: str = "job") -> Future:
        """Queue ``fn(tab)`` on the worker; its future holds the result or the error. A step
        beyond ``max_pending`` is refused with a :class:`Busy` message (future: None)."""
        future: Future = Future()
        with self._cond:
            tab = self.tabs.get(tab_id)
            if tab is None:
                future.set_exception(MirageError("this session is closed; reload the page"))
                return future
            tab.last_active = time.monotonic()
            if kind == "step":
                if tab.pending_steps >= self.config.max_pending:
                    tab.emit(Busy(message=f"{tab.pending_steps} steps are queued; this one was dropped"))
                    future.set_result(None)
                    return future
                tab.pending_steps += 1
            jobs = self._jobs[tab_id]
            jobs.append((fn, future, kind))
            if len(jobs) == 1 and tab_id not in self._ring:
                self._ring.append(tab_id)
            self._cond.notify()
        return future
