"""Training checkpoints without pickle: model and optimizer tensors in safetensors, the rest JSON.

A checkpoint is one safetensors file. Tensor names are ``model.<state key>`` and
``optim.<param index>.<state key>``; the metadata holds the format version, the optimizer's
param groups and the loop state (step, stage, anything JSON-serialisable).
"""

from __future__ import annotations

import json

import torch
from torch import nn

from mirage.errors import MemoryFormatError
from mirage.files import load_safetensors, save_safetensors

__all__ = ["save_checkpoint", "load_checkpoint", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "mirage.checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(path, model: nn.Module, optimizer: torch.optim.Optimizer | None, state: dict) -> None:
    """Write ``model``'s state dict, ``optimizer``'s state and the JSON ``state`` atomically."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    groups = []
    if optimizer is not None:
        opt = optimizer.state_dict()
        for i, entry in opt["state"].items():
            for key, value in entry.items():
                value = value if torch.is_tensor(value) else torch.tensor(value)
                tensors[f"optim.{i}.{key}"] = value.detach().cpu().contiguous()
        groups = opt["param_groups"]
    meta = {
        "format": CHECKPOINT_FORMAT,
        "version": str(CHECKPOINT_VERSION),
        "param_groups": json.dumps(groups),
        "state": json.dumps(state),
    }
    save_safetensors(path, tensors, meta)


def load_checkpoint(path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Restore ``model`` (and ``optimizer``) from :func:`save_checkpoint`; returns the JSON state."""
    tensors, meta = load_safetensors(path, "checkpoint")
    if meta.get("format") != CHECKPOINT_FORMAT or meta.get("version") != str(CHECKPOINT_VERSION):
        raise MemoryFormatError(f"{str(path)!r} is not a mirage checkpoint of version {CHECKPOINT_VERSION}")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    groups = json.loads(meta.get("param_groups", "[]"))
    if optimizer is not None and groups:  # a checkpoint saved without optimizer restores weights only
        state: dict = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    return json.loads(meta["state"])
