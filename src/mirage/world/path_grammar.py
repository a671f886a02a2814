"""A short written form for hand-made camera paths: ``"forward 2, turn-left 30, up 0.5"``.

Grammar (whitespace and case are free)::

    path  := step ("," step)*
    step  := move NUMBER | turn NUMBER
    move  := forward | back | left | right | up | down          NUMBER in metres (world units)
    turn  := turn-left | turn-right | look-up | look-down        NUMBER in degrees

Meaning: the camera starts at the start pose (frame 0) and runs the steps in order.

- Moves translate along the camera's *current level heading*: ``forward``/``back`` along the
  horizontal viewing direction (pitch is ignored, as when walking), ``left``/``right`` along the
  horizontal right axis, ``up``/``down`` along the start pose's vertical axis (−y / +y in the
  OpenCV axes of the start camera).
- ``turn-left``/``turn-right`` change the heading (yaw about the start's vertical axis);
  ``look-up``/``look-down`` change the pitch (about the camera's right axis), limited to ±89°.
- Numbers are ≥ 0 (use the opposite word to go the other way).

Frames: the path is sampled at ``frames`` poses evenly spaced along its *effort*, the sum over
steps of metres + radians (1 rad counts as 1 m), so the camera moves at constant speed within
and across steps; frame 0 is the start pose and the last frame the end of the last step.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import numpy as np

from mirage.errors import ConfigError
from mirage.geometry import yaw_rotation

__all__ = ["GRAMMAR", "PathGrammarError", "PathStep", "is_written_path", "parse_path", "path_poses"]

MOVES = {"forward": (0, 0, 1), "back": (0, 0, -1), "right": (1, 0, 0), "left": (-1, 0, 0),
         "up": (0, -1, 0), "down": (0, 1, 0)}
TURNS = {"turn-left": ("yaw", -1), "turn-right": ("yaw", 1), "look-up": ("pitch", 1), "look-down": ("pitch", -1)}
GRAMMAR = ('a written path is steps separated by commas, each "WORD NUMBER": '
           "forward|back|left|right|up|down METRES, turn-left|turn-right|look-up|look-down DEGREES "
           '(numbers ≥ 0), e.g. "forward 2, turn-left 30, up 0.5, forward 1"')
_STEP = re.compile(r"^\s*([a-z-]+)\s+([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*$")
_MAX_PITCH = math.radians(89.0)


class PathGrammarError(ConfigError):
    """A written path does not follow :data:`GRAMMAR`; the message shows the grammar."""


class PathStep(NamedTuple):
    """One step: ``word`` and ``amount`` (metres for moves, degrees for turns)."""

    word: str
    amount: float


def is_written_path(spec: str) -> bool:
    """True when ``spec``'s first word is a step word of the grammar (it may still be malformed)."""
    first = str(spec).strip().lower().split(",")[0].split()
    return bool(first) and (first[0] in MOVES or first[0] in TURNS)


def parse_path(text: str) -> list[PathStep]:
    """The steps of a written path; :class:`PathGrammarError` (showing the grammar) on bad input."""
    if not isinstance(text, str) or not text.strip():
        raise PathGrammarError(f"`trajectory` must be a non-empty written path: {GRAMMAR}; got {text!r}")
    steps = []
    for i, part in enumerate(text.lower().split(",")):
        m = _STEP.match(part)
        if m is None or (m.group(1) not in MOVES and m.group(1) not in TURNS):
            raise PathGrammarError(f"step {i + 1} of the written path is {part.strip()!r}, which is not "
                                   f"\"WORD NUMBER\" with a known WORD: {GRAMMAR}")
        value = float(m.group(2))
        if not math.isfinite(value):
            raise PathGrammarError(f"step {i + 1} ({part.strip()!r}) needs a finite number: {GRAMMAR}")
        steps.append(PathStep(m.group(1), value))
    return steps


def _effort(step: PathStep) -> float:
    return step.amount if step.word in MOVES else math.radians(step.amount)


def _local_pose(x: np.ndarray, yaw: float, pitch: float) -> np.ndarray:
    """(4, 4) pose in the start camera's frame: heading ``yaw`` (turn right > 0), ``pitch`` (up > 0)."""
    cp, sp = math.cos(pitch), math.sin(pitch)
    r_yaw = yaw_rotation(yaw).numpy()  # about the down axis (OpenCV y)
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])  # forward tilts towards −y (up)
    pose = np.eye(4)
    pose[:3, :3] = r_yaw @ r_pitch
    pose[:3, 3] = x
    return pose


def path_poses(text: str, frames: int, start_cam2world=None) -> np.ndarray:
    """(frames, 4, 4) float64 cam2world (OpenCV axes) of the written path ``text`` from
    ``start_cam2world`` (4, 4; default identity). See the module docstring for the meaning."""
    steps = parse_path(text)
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ConfigError(f"`frames` must be an int ≥ 1 but is {frames!r}")
    start = np.eye(4) if start_cam2world is None else np.asarray(start_cam2world, dtype=np.float64)
    total = sum(_effort(s) for s in steps)
    # the state (position, yaw, pitch) at the end of each step, then sampled by effort
    states = [(np.zeros(3), 0.0, 0.0)]
    for s in steps:
        x, yaw, pitch = states[-1]
        if s.word in MOVES:
            dx, dy, dz = MOVES[s.word]
            heading = np.array([math.sin(yaw), 0.0, math.cos(yaw)])
            right = np.array([math.cos(yaw), 0.0, -math.sin(yaw)])
            x = x + s.amount * (dx * right + dy * np.array([0.0, 1.0, 0.0]) + dz * heading)
        else:
            axis, sign = TURNS[s.word]
            if axis == "yaw":
                yaw += sign * math.radians(s.amount)
            else:
                pitch = pitch + sign * math.radians(s.amount)
                if abs(pitch) > _MAX_PITCH:
                    raise PathGrammarError(f"the written path pitches to {math.degrees(pitch):.1f}° at "
                                           f"{s.word} {s.amount:g}; the pitch must stay within ±89°")
        states.append((x, yaw, pitch))
    bounds = np.cumsum([0.0] + [_effort(s) for s in steps])
    poses = np.empty((frames, 4, 4))
    for k in range(frames):
        e = 0.0 if frames == 1 or total == 0 else total * k / (frames - 1)
        i = min(int(np.searchsorted(bounds, e, side="right")) - 1, len(steps) - 1)
        f = 0.0 if bounds[i + 1] == bounds[i] else (e - bounds[i]) / (bounds[i + 1] - bounds[i])
        (x0, y0, p0), (x1, y1, p1) = states[i], states[i + 1]
        local = _local_pose(x0 + f * (x1 - x0), y0 + f * (y1 - y0), p0 + f * (p1 - p0))
        poses[k] = start @ local
    return poses
