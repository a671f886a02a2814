"""Batch work over the ranks of ``torchrun`` / ``accelerate launch``: a jobs file, each rank's share.

``mirage generate --jobs FILE.jsonl`` and ``mirage eval`` split their jobs with
``accelerate.PartialState().split_between_processes`` (contiguous shares, one device per rank),
skip every job whose output is complete (so a killed run resumes), wait for each other, and
merge on rank 0. Without a launcher this is one process and nothing changes.

A jobs file holds one JSON object per line whose keys are ``mirage generate``'s long options
without the leading dashes (``memory-branch`` or ``memory_branch``), e.g.
``{"scene": 7, "family": "courtyard", "trajectory": "loop", "frames": 49, "memory": "rgb",
"out": "runs/7-rgb"}``. Options given on the command line are every line's defaults. Blank
lines and lines starting with ``#`` are skipped. Relative paths in a line are relative to the
file. Each line needs its own ``out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mirage.errors import ConfigError

__all__ = ["rank_state", "rank_device", "gather", "read_jobs", "PATH_OPTIONS"]

PATH_OPTIONS = ("image", "depth", "weights", "memory-branch", "lora", "depth-model", "out")  # relative to the file
NOT_IN_JOBS = ("help", "jobs")


def rank_state():
    """accelerate's ``PartialState``: this process's rank among those ``torchrun`` /
    ``accelerate launch`` started (gloo on CPUs, NCCL on GPUs), or the only process."""
    import datetime

    import torch
    from accelerate import PartialState

    # A rank waits at the final barrier until the slowest rank's jobs are done: a long timeout.
    return PartialState(cpu=not torch.cuda.is_available(), timeout=datetime.timedelta(hours=48))


def rank_device(state, device: str | None) -> str | None:
    """``device``, or with several processes on GPUs and none given, this rank's own GPU."""
    import torch

    if device is None and state.num_processes > 1 and torch.cuda.is_available():
        return str(state.device)
    return device


def gather(state, items: list) -> list:
    """Every rank's ``items`` (picklable), concatenated in rank order, on every rank."""
    if state.num_processes == 1:
        return list(items)
    from accelerate.utils import gather_object

    return list(gather_object(list(items)))


def progress(state, text: str) -> None:
    """One progress line, prefixed with the rank (stderr, flushed: ranks interleave by line)."""
    print(f"[rank {state.process_index}/{state.num_processes}] {text}", file=sys.stderr, flush=True)


def _option_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    actions = {}
    for action in parser._actions:
        for opt in action.option_strings:
            if opt.startswith("--") and opt[2:] not in NOT_IN_JOBS:
                actions[opt[2:]] = action
    return actions


def _value(action: argparse.Action, value, where: str, key: str):
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: `{key}` must be true or false but is {value!r}")
        return value
    if isinstance(action, argparse.BooleanOptionalAction):
        if value is not None and not isinstance(value, bool):
            raise ConfigError(f"{where}: `{key}` must be true, false or null but is {value!r}")
        return value
    if value is None:
        return None
    if isinstance(value, (bool, list, dict)):
        raise ConfigError(f"{where}: `{key}` must be a number or a string but is {value!r}")
    if action.type is None:
        return str(value)
    try:
        return action.type(str(value))
    except (TypeError, ValueError):
        name = getattr(action.type, "__name__", "value")
        raise ConfigError(f"{where}: `{key}` must be a{'n' if name[0] in 'aeiou' else ''} {name} but is "
                          f"{value!r}") from None


def read_jobs(path, parser: argparse.ArgumentParser,
              defaults: argparse.Namespace) -> list[tuple[int, argparse.Namespace]]:
    """(line number, arguments) of every job in ``path``, each ``defaults`` with the line's options.

    Every line is checked before any job runs; a bad one raises a one-line
    :class:`~mirage.errors.ConfigError` that starts with ``FILE:LINE:``.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"`--jobs` {str(path)!r} is not a file: it must be a .jsonl file with one JSON "
                          f"object of generate options per line")
    root = path.resolve().parent
    actions = _option_actions(parser)
    jobs, outs = [], {}
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        where = f"{path}:{number}"
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        try:
            entry = json.loads(text)
        except ValueError as err:
            raise ConfigError(f"{where}: not valid JSON ({err})") from None
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a JSON object of generate options but is {type(entry).__name__}")
        args = argparse.Namespace(**vars(defaults))
        for key, value in entry.items():
            name = str(key).replace("_", "-")
            if name not in actions:
                raise ConfigError(f"{where}: unknown option {key!r}; the options are "
                                  f"{', '.join(sorted(actions))}")
            value = _value(actions[name], value, where, name)
            if name in PATH_OPTIONS and value is not None and not Path(value).is_absolute():
                value = str(root / value)
            if name == "trajectory" and value is not None and (root / value).exists():
                value = str(root / value)
            setattr(args, actions[name].dest, value)
        if "out" not in {str(k).replace("_", "-") for k in entry}:
            raise ConfigError(f"{where}: every job needs its own `out` folder")
        out = str(Path(args.out).resolve())
        if out in outs:
            raise ConfigError(f"{where}: `out` {entry.get('out')!r} is also the `out` of line {outs[out]}")
        outs[out] = number
        jobs.append((number, args))
    if not jobs:
        raise ConfigError(f"`--jobs` {str(path)!r} holds no jobs")
    return jobs
