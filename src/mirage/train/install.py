"""Installing trained tiny weights into the package, with their model card."""

from __future__ import annotations

import json
from pathlib import Path

from mirage.backbones.tiny import TinyBackbone, TinyConfig

__all__ = ["install_weights"]


def install_weights(out) -> Path:
    """Copy ``out/tiny.safetensors`` into the package (or, for an unfinished run, the newest
    stage checkpoint's model) and write the model card next to it, with the held-out evaluation
    table when present: ``out/eval.md``, or the ``summary.md`` of ``mirage eval --out out/eval``.
    Returns the installed path."""
    from mirage.backbones.tiny.model import SHIPPED_WEIGHTS
    from mirage.train.checkpoint import load_checkpoint
    from mirage.train.model_card import write_model_card

    out = Path(out)
    final = out / "tiny.safetensors"
    if final.exists():
        backbone = TinyBackbone.load(final)
    else:
        cfg_path = out / "config.json"
        raw = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
        backbone = TinyBackbone(TinyConfig(**raw["model"]) if "model" in raw else TinyConfig())
        for stage in ("denoiser", "depth", "vae"):
            ckpt = out / f"{stage}.ckpt.safetensors"
            if ckpt.exists():
                state = load_checkpoint(ckpt, backbone)
                report = json.loads((out / "train_report.json").read_text()) if (out / "train_report.json").exists() else {}
                report["unfinished"] = {"stage": stage, "step": state.get("step")}
                backbone.metadata = {"train": report, "config": raw}
                break
        else:
            raise FileNotFoundError(f"{str(out)!r} holds no weights or checkpoints")
    SHIPPED_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    backbone.save(SHIPPED_WEIGHTS, backbone.metadata)
    table = next((p for p in (out / "eval.md", out / "eval" / "summary.md") if p.exists()), None)
    evaluation = table.read_text() if table else None
    write_model_card(SHIPPED_WEIGHTS.parent / "MODEL_CARD.md", backbone.metadata, evaluation)
    return SHIPPED_WEIGHTS
