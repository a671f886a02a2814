"""The frame table of a point store: every written frame's id, grid camera and write confidence.

Reference retrieval names frames by id, the trusted-view test projects into the grid cameras of
frames written at a higher confidence, and files keep the table; a frame written again (the
overlap frame of two chunks) keeps its row and takes the newer pose and confidence.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mirage.errors import ShapeError

__all__ = ["FrameTable"]


class FrameTable:
    """Mixin of :class:`~mirage.memory.store.PointStore`: ``table_ids`` (F,), ``table_K``
    (F, 3, 3) at the grid size, ``table_cam2world`` (F, 4, 4) and ``table_confidence`` (F,)."""

    device: torch.device

    def _init_frame_table(self) -> None:
        self.table_ids = torch.zeros(0, dtype=torch.long, device=self.device)  # (F,)
        self.table_K = torch.zeros(0, 3, 3, dtype=torch.float32, device=self.device)  # (F, 3, 3)
        self.table_cam2world = torch.zeros(0, 4, 4, dtype=torch.float32, device=self.device)
        self.table_confidence = torch.zeros(0, dtype=torch.float32, device=self.device)  # (F,)
        self._table_rows: dict[int, int] = {}

    def _resolve_frame_ids(self, frame_ids, T: int) -> list[int]:
        if frame_ids is None:
            start = int(self.table_ids.max()) + 1 if self.table_ids.numel() else 0
            return list(range(start, start + T))
        frame_ids = [int(f) for f in frame_ids]
        if len(frame_ids) != T:
            raise ShapeError(f"`frame_ids` must hold {T} ids but holds {len(frame_ids)}")
        return frame_ids

    def _register_frames(self, frame_ids: list[int], K: Tensor, cam2world: Tensor,
                         confidence: Tensor) -> None:
        """Record each written frame's grid camera, K (T, 3, 3) and cam2world (T, 4, 4), and
        confidence (T,), in order: a frame written again (the overlap frame of two chunks) keeps
        its row in the table and takes the newer pose and confidence; a new frame is appended."""
        latest: dict[int, int] = {}  # frame id → the last t that writes it
        for t, f in enumerate(frame_ids):
            latest[f] = t
        rows = self.table_rows()
        again = [(rows[f], t) for f, t in latest.items() if f in rows]
        if again:
            at, ts = (list(x) for x in zip(*again))
            self.table_K[at] = K[ts]
            self.table_cam2world[at] = cam2world[ts]
            self.table_confidence[at] = confidence[ts]
        new = [(f, t) for f, t in latest.items() if f not in rows]  # in order of first write
        if new:
            ids, ts = (list(x) for x in zip(*new))
            for f in ids:
                rows[f] = len(rows)
            self.table_ids = torch.cat([self.table_ids, torch.tensor(ids, dtype=torch.long, device=self.device)])
            self.table_K = torch.cat([self.table_K, K[ts]])
            self.table_cam2world = torch.cat([self.table_cam2world, cam2world[ts]])
            self.table_confidence = torch.cat([self.table_confidence, confidence[ts]])

    def table_rows(self) -> dict[int, int]:
        """Frame id → its row in the frame table (kept up to date by writes)."""
        if len(self._table_rows) != self.table_ids.shape[0]:  # e.g. after a load
            self._table_rows = {f: i for i, f in enumerate(self.table_ids.tolist())}
        return self._table_rows
