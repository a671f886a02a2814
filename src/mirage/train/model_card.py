"""The tiny backbone's MODEL_CARD.md, written from the training report (and evaluation, if any)."""

from __future__ import annotations

import json
from pathlib import Path

from mirage.pipeline import PARTIAL_CELL_FRACTION, PipelineConfig

__all__ = ["write_model_card"]


def _fmt_minutes(seconds) -> str:
    return f"{float(seconds) / 60:.1f} min"


def write_model_card(path, metadata: dict, evaluation: str | None = None) -> None:
    """Write a markdown model card. ``metadata`` is the weights' metadata (config + train
    report); ``evaluation`` an optional markdown table of held-out results."""
    train = metadata.get("train", {})
    cfg = metadata.get("config", {})
    data = cfg.get("data", {})
    model = cfg.get("model", {})
    stages = train.get("stage_seconds", {})
    tau = model.get("temporal_stride", "?")
    if tau == 1:
        vae = ("temporal stride 1: every pixel frame has its own latent, encoded from that frame "
               "alone and decoded with its predecessor as context")
        frames_limit = ""
    else:
        vae = (f"temporal stride {tau} with *keyframe* latents: latent k encodes pixel frame {tau}k "
               "alone, decodes to it alone, and the decoder interpolates the frames in between from "
               "latents k−1 and k")
        frames_limit = (f"In-between frames are interpolated from two keyframes {tau} frames apart, "
                        "so fast camera motion gives ghosted in-betweens. ")
    lines = [
        "# mirage tiny backbone",
        "",
        f"The embedded world model of `mirage`: a small VAE (spatial stride "
        f"{model.get('spatial_stride', '?')}, {vae}), a memory-conditioned "
        "flow-matching denoiser (a small transformer over latent patches, x₀-prediction, "
        "Euler sampling, the prediction is a residual on the memory read"
        + (", with each covered cell's sub-cell offset as input" if model.get("memory_offsets") else "")
        + ") and a small depth "
        "estimator. Trained from scratch on a CPU with `mirage train tiny`. It is a test-bed "
        "model for the memory lifecycle, not a general video generator: it only knows the "
        "procedural world's look.",
        "",
        f"**Known limits.** {frames_limit}Newly seen content is blurry. Cells partly sky are written "
        f"from their pixels with depth when those are at least {PARTIAL_CELL_FRACTION:g} of the cell "
        "(the pipeline's `PARTIAL_CELL_FRACTION`), cells across a depth edge at their nearest depth, "
        "and cells with less depth go to the far field, a map of latent tokens by direction read "
        "behind the points (docs/design.md §3.6). At inference, covered cells whose read is "
        f"aligned within {PipelineConfig.paste_reads:g} cell take the memory's token "
        "(`PipelineConfig.paste_reads`). Revisit fidelity is limited by the content the "
        "model generates for newly seen places (later revisits read it back) and for the cells "
        "the memory cannot cover: `benchmarks/revisit_bound.py` measures each link. The held-out "
        "table below says which of the project's goals these weights meet.",
        "",
        "## Data",
        "",
        f"- {data.get('clips', '?')} clips of {data.get('frames', '?')} frames at "
        f"{data.get('height', '?')}×{data.get('width', '?')}, rendered by `mirage.world` "
        f"(families {', '.join(data.get('families', []))}; presets pan-return, orbit, loop, "
        "forward-back, random-walk with randomised parameters; static scenes).",
        f"- Scene seeds {data.get('first_seed', '?')}…{data.get('first_seed', 0) + data.get('clips', 0) - 1}. "
        "Evaluation uses scene seeds < 100, which training never saw.",
        "- Denoiser samples are built as at inference: the memory read of a chunk's targets comes "
        "from `LatentSpatialMemory` holding the clean latents of every earlier latent frame (frame "
        "0 with exact depth at the first-frame confidence, later frames with this model's "
        "estimated depth at the generated-frame confidence, as the pipeline writes them); "
        "preceding and "
        "reference frames are chosen by the pipeline's own rules; each target frame gets its own "
        "noise level; memory (with references) is dropped for "
        f"{cfg.get('p_drop_memory', '?')} of samples so `--memory none` works.",
        "",
        "## Model",
        "",
        f"- Size {model.get('height', '?')}×{model.get('width', '?')} (latent "
        f"{model.get('latent_channels', '?')}×{model.get('height', 0) // model.get('spatial_stride', 8)}×{model.get('width', 0) // model.get('spatial_stride', 8)}), "
        f"chunks of {model.get('max_frames', '?')} frames, {model.get('steps', '?')} sampling steps.",
        f"- Denoiser: {model.get('layers', '?')} layers, width {model.get('dim', '?')}, "
        f"{model.get('preceding', '?')} preceding + up to {model.get('references', '?')} reference frames.",
        "",
        "## Training",
        "",
        "| stage | steps | wall time | final |",
        "|---|---|---|---|",
    ]
    reused = train.get("init_from") or {}
    for stage in ("data", "vae", "depth", "samples", "denoiser"):
        source = reused if stage in ("vae", "depth") and reused else train
        st = source.get(stage) if isinstance(source.get(stage), dict) else {}
        last = st.get("last", {})
        final = ", ".join(f"{k} {v:.4g}" for k, v in last.items()) if last else ""
        steps = st.get("step", "")
        if st.get("stopped_early"):
            steps = f"{steps} (time budget)"
        seconds = source.get("stage_seconds", {}).get(stage, 0)
        label = f"{stage} (reused)" if source is reused else stage
        lines.append(f"| {label} | {steps} | {_fmt_minutes(seconds)} | {final} |")
    total = sum(stages.values()) if stages else 0
    threads = f"{cfg.get('threads', 1)} torch thread{'s' if cfg.get('threads', 1) != 1 else ''}"
    if reused:
        earlier = sum(reused.get("stage_seconds", {}).values())
        lines += [
            "",
            f"The VAE and depth estimator are those of `{reused.get('path')}` (trained by "
            f"`mirage train tiny` in an earlier run, {_fmt_minutes(earlier)} for those two stages); "
            f"this run rendered the data again and trained the samples and denoiser stages: "
            f"{_fmt_minutes(total)} on a 2-core CPU ({threads}), seed {cfg.get('seed', 0)}, "
            f"{_fmt_minutes(total + earlier)} in all. Reproduce: `mirage train tiny --out runs/tiny "
            "--install` trains every stage; `mirage train tiny --out runs/denoiser --init-from "
            "WEIGHTS --install` retrains only the denoiser on the VAE and depth of WEIGHTS.",
        ]
    else:
        lines += [
            "",
            f"Total: {_fmt_minutes(total)} on a 2-core CPU ({threads}), seed "
            f"{cfg.get('seed', 0)}. Reproduce: `mirage train tiny --out runs/tiny --install` "
            "(stage times are summed; each loop stage counts its own time across resumes).",
        ]
    machines = train.get("machines") or []
    if machines:
        lines += ["", "Machines, one line per session of the run (a measured fp32 matmul rate, "
                  "to compare the stage times with another machine's):"]
        lines += [f"- {m.get('date', '?')}: {m.get('cpu', '?')}, {m.get('cpus', '?')} CPUs, "
                  f"{m.get('threads', '?')} torch threads, {m.get('matmul_gflops', '?')} GFLOP/s"
                  + (f" ({m['note']})" if m.get("note") else "") for m in machines]
    if "unfinished" in train:
        u = train["unfinished"]
        lines += ["", f"**Unfinished run**: installed from the `{u['stage']}` checkpoint at step {u['step']}."]
    if evaluation:
        lines += ["", "## Held-out evaluation", "", evaluation]
    lines += ["", "## Raw config", "", "```json", json.dumps(cfg, indent=1, default=str), "```", ""]
    Path(path).write_text("\n".join(lines))
