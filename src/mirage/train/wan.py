"""`mirage train wan`: the two training stages of the Wan2.2 memory model (docs/design.md §4.3).

- Stage ``branch`` trains the memory-control branch only (every other weight frozen) and writes
  ``OUT/memory_branch.safetensors``.
- Stage ``lora`` starts from a stage-1 run (``resume_from``: its ``memory_branch.safetensors``
  is loaded and frozen), adds a rank-64 LoRA through peft and trains it alone; it writes
  ``OUT/lora.safetensors``.

Objective (flow matching, as the sampler integrates it). A sample from ``mirage data build`` is
turned back into the :class:`~mirage.backbones.base.ChunkConditioning` inference would build,
and laid out by ``backbone.assemble`` exactly as at inference: [references, preceding, first,
targets] along T, clean frames at t = 0, control = memory read + mask on the targets. Each
target frame k gets its own noise level σ_k ~ U(0, 1): x_k = (1 − σ_k)·x0_k + σ_k·ε_k at
timestep 1000·σ_k, and the loss is the MSE between the predicted velocity and ε − x0 on the
target frames only.

Determinism: step i's global batch (sample indices, σ, ε) comes from generators seeded by
(seed, i); process r of N takes items [r·B, (r+1)·B) of the N·B items. So a resumed run sees the
same batches as an uninterrupted one, and N processes see the same global batch as one process
with N·B samples.

Bookkeeping under ``OUT``: ``checkpoint-<stage>.safetensors`` (trainable weights, AdamW state,
loop state; rerunning the same command continues from it, and a larger ``max_steps`` trains
on), ``log.jsonl`` (one line per step: step, loss, lr; or TensorBoard events with
``logger="tensorboard"``; steps redone after a crash are appended again, the last record of a
step is its final one), ``train_config.json`` and ``train_report.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from mirage.errors import ConfigError

__all__ = ["WanTrainConfig", "train_wan", "STAGES", "OUTPUTS", "make_wan_batch", "flow_matching_loss"]

STAGES = ("branch", "lora")
OUTPUTS = {"branch": "memory_branch.safetensors", "lora": "lora.safetensors"}
LOGGERS = ("jsonl", "tensorboard")


@dataclass(frozen=True)
class WanTrainConfig:
    """One stage of Wan2.2 memory training.

    stage: "branch" (stage 1) or "lora" (stage 2). max_steps: optimizer steps.
    lr: AdamW learning rate, constant after ``warmup`` steps (1e-5 in the reference).
    batch_size: samples per process per step (the global batch is this × processes).
    gradient_checkpointing: recompute DiT blocks in the backward pass (saves activation memory).
    mixed_precision: "auto" (bf16 on GPU, none on CPU) | "no" | "bf16" | "fp16".
    lora_rank / lora_alpha: stage-2 LoRA (rank 64 in the reference).
    logger: "jsonl" (``OUT/log.jsonl``) or "tensorboard" (needs the tensorboard package).
    """

    stage: str
    max_steps: int
    lr: float = 1e-5
    warmup: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    batch_size: int = 1
    checkpoint_every: int = 100
    gradient_checkpointing: bool = True
    mixed_precision: str = "auto"
    lora_rank: int = 64
    lora_alpha: float = 64.0
    seed: int = 0
    logger: str = "jsonl"

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"`stage` must be one of {STAGES} but is {self.stage!r}")
        for name, low in (("max_steps", 1), ("batch_size", 1), ("checkpoint_every", 1), ("lora_rank", 1),
                          ("warmup", 0), ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"`{name.replace('_', '-')}` must be an int ≥ {low} but is {v!r}")
        if not self.lr > 0 or not self.lora_alpha > 0:
            raise ConfigError(f"`lr` and `lora_alpha` must be > 0 but are {self.lr} and {self.lora_alpha}")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ConfigError(f"`mixed_precision` must be auto | no | bf16 | fp16 but is {self.mixed_precision!r}")
        if self.logger not in LOGGERS:
            raise ConfigError(f"`logger` must be one of {LOGGERS} but is {self.logger!r}")


class _Velocity(nn.Module):
    """The module accelerate wraps (DDP/FSDP): the DiT, called through ``backbone.predict``."""

    def __init__(self, backbone) -> None:
        super().__init__()
        self.transformer = backbone.transformer  # registered: its parameters are the model's
        self._backbone = backbone  # not a Module: not registered twice

    def forward(self, latents: Tensor, timesteps: Tensor, control: Tensor, context: Tensor) -> Tensor:
        return self._backbone.predict(latents, timesteps, control, context)


class _Trainable(nn.Module):
    """The trainable parameters under their transformer names: what a checkpoint holds."""

    def __init__(self, named: list[tuple[str, nn.Parameter]]) -> None:
        super().__init__()
        self.params = nn.ParameterDict({name.replace(".", "__"): p for name, p in named})


def _gen(*keys: int) -> torch.Generator:
    seed = 0
    for k in keys:
        seed = (seed * 1_000_003 + int(k)) % (2**62)
    return torch.Generator().manual_seed(seed)


def make_wan_batch(dataset, backbone, step: int, *, batch_size: int, seed: int,
                   rank: int = 0, world: int = 1) -> list[dict]:
    """Process ``rank``'s share of step ``step``'s global batch of ``world·batch_size`` items.

    Item j of the global batch is sample ``perm_e[p mod N]`` with p = step·world·B + j, where
    perm_e is the seeded permutation of epoch e = p // N. Each item: latents (1, C, S, h, w)
    (noised targets), timesteps (1, S), control (1, 96, S, h, w), context (1, L, text_dim),
    target velocity (1, C, n, h, w) and ``first_target``. σ and ε come from a generator seeded by
    (seed, step, j) on the CPU.
    """
    from mirage.data.samples import to_conditioning

    N, G = len(dataset), world * batch_size
    items = []
    for j in range(rank * batch_size, (rank + 1) * batch_size):
        p = step * G + j
        perm = torch.randperm(N, generator=_gen(seed, 1, p // N))
        tensors, meta = dataset[int(perm[p % N])]
        cond = to_conditioning(tensors, meta)
        inputs = backbone.assemble(cond)
        x0 = tensors["targets"].float().permute(1, 0, 2, 3)[None]  # (1, C, n, h, w)
        g = _gen(seed, 2, step, j)
        sigma = torch.rand(x0.shape[2], generator=g)  # (n,) one level per target frame
        eps = torch.randn(x0.shape, generator=g)
        s = sigma.view(1, 1, -1, 1, 1)
        x_t = (1 - s) * x0 + s * eps
        dev = inputs.latents.device
        timesteps = torch.zeros(1, len(inputs.layout))
        timesteps[0, inputs.first_target:] = 1000.0 * sigma
        items.append({
            "latents": inputs.with_targets(x_t.to(dev)),
            "timesteps": timesteps.to(dev),
            "control": inputs.control,
            "context": backbone.encode_text([cond.text] if cond.text else None),
            "target": (eps - x0).to(dev),
            "first_target": inputs.first_target,
            "sigma": sigma,
        })
    return items


def flow_matching_loss(model: nn.Module, batch: list[dict]) -> tuple[Tensor, dict]:
    """Mean over items of the velocity MSE on the target frames (clean frames carry no loss)."""
    losses = []
    for item in batch:
        v = model(item["latents"], item["timesteps"], item["control"], item["context"])
        v = v[:, :, item["first_target"]:].float()  # (1, C, n, h, w) targets only
        losses.append((v - item["target"].float()).pow(2).mean())
    loss = torch.stack(losses).mean()
    return loss, {"sigma_mean": torch.cat([i["sigma"] for i in batch]).mean()}


def _check_data(dataset, backbone) -> None:
    info = dataset.info.get("config", {}).get("backbone", {})
    mine = {"temporal_stride": backbone.temporal_stride, "spatial_stride": backbone.spatial_stride,
            "latent_channels": backbone.latent_channels, "max_frames": backbone.max_frames}
    if info != mine:
        raise ConfigError(f"`--data` {str(dataset.root)!r} was built for a backbone with {info} but these "
                          f"weights have {mine}; rebuild it with `mirage data build --weights` these weights")


def _trainable(backbone, config: WanTrainConfig, resume_from) -> list[tuple[str, nn.Parameter]]:
    """Freeze everything, set up the stage, and return its (name, parameter) list."""
    tr = backbone.transformer
    tr.requires_grad_(False)
    branch = None if resume_from is None else Path(resume_from) / OUTPUTS["branch"]
    if config.stage == "lora":
        if branch is None or not branch.is_file():
            raise ConfigError(
                f"stage `lora` needs `--resume` naming a finished stage-1 run folder that holds "
                f"{OUTPUTS['branch']}, but {'none was given' if branch is None else repr(str(branch)) + ' does not exist'}")
        backbone.load_memory_branch(branch)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)  # the LoRA's A init is random: seeded, so runs agree
            backbone.add_lora(rank=config.lora_rank, alpha=config.lora_alpha)
        named = [(n, p) for n, p in tr.named_parameters() if "lora_" in n]
    else:
        if branch is not None:
            if not branch.is_file():
                raise ConfigError(f"`--resume` {str(resume_from)!r} holds no {OUTPUTS['branch']} to start from")
            backbone.load_memory_branch(branch)
        ids = {id(p) for p in backbone.memory_branch_parameters()}
        named = [(n, p) for n, p in tr.named_parameters() if id(p) in ids]
    if not named:
        raise ConfigError(f"stage {config.stage!r} found no parameters to train in this transformer")
    for _, p in named:
        p.requires_grad_(True)
    return named


class _StepLog:
    """One record per step: ``log.jsonl`` lines, or TensorBoard scalars."""

    def __init__(self, out: Path, kind: str) -> None:
        self.path = out / "log.jsonl"
        self.writer = None
        if kind == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError("`logger` 'tensorboard' needs the tensorboard package "
                                  "(pip install tensorboard); or use 'jsonl'") from None
            self.writer = SummaryWriter(str(out / "tensorboard"))

    def __call__(self, step: int, record: dict) -> None:
        if self.writer is not None:
            for k, v in record.items():
                self.writer.add_scalar(k, v, step)
            self.writer.flush()
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"step": step, **record, "time": time.time()}) + "\n")


def train_wan(out, data, backbone, config: WanTrainConfig, *, resume_from=None, engine=None,
              progress: bool = True, log=print) -> dict:
    """Run (or continue) one stage into ``out``; returns the final loop state.

    data: a ``mirage data build`` folder. backbone: a Wan22Backbone (``load_wan22``) on the
    engine's device. engine: :class:`~mirage.train.distributed.AccelerateEngine` (default: one
    built by :func:`~mirage.train.distributed.make_accelerator` from ``config.mixed_precision``).
    Only the main process writes files.
    """
    from mirage.data.shards import SampleIndex
    from mirage.train.distributed import AccelerateEngine, make_accelerator
    from mirage.train.loop import LoopConfig, train_loop

    engine = engine or AccelerateEngine(make_accelerator(config.mixed_precision))
    out = Path(out)
    dataset = SampleIndex(data)
    _check_data(dataset, backbone)
    named = _trainable(backbone, config, resume_from)
    if config.gradient_checkpointing and hasattr(backbone.transformer, "enable_gradient_checkpointing"):
        backbone.transformer.enable_gradient_checkpointing()
    step_log = _StepLog(out, config.logger) if engine.is_main else None  # fails before any write
    if engine.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(
            {**asdict(config), "data": str(data), "resume_from": None if resume_from is None else str(resume_from),
             "processes": engine.num_processes, "samples": len(dataset)}, indent=1))
    rank, world = engine.process_index, engine.num_processes

    def make_batch(step: int) -> list[dict]:
        return make_wan_batch(dataset, backbone, step, batch_size=config.batch_size, seed=config.seed,
                              rank=rank, world=world)

    loop = LoopConfig(config.max_steps, lr=config.lr, weight_decay=config.weight_decay,
                      warmup=config.warmup, min_lr_ratio=1.0, grad_clip=config.grad_clip,
                      checkpoint_every=config.checkpoint_every)
    state = train_loop(config.stage, _Velocity(backbone), [p for _, p in named], make_batch,
                       flow_matching_loss, loop, out / f"checkpoint-{config.stage}.safetensors",
                       progress=progress, log=log, engine=engine, checkpoint_module=_Trainable(named),
                       on_step=step_log)

    def write_outputs() -> None:
        path = out / OUTPUTS[config.stage]
        (backbone.save_memory_branch if config.stage == "branch" else backbone.save_lora)(path)
        report = {**state, "processes": world, "global_batch": world * config.batch_size,
                  "trainable_parameters": sum(p.numel() for _, p in named), "output": str(path)}
        (out / "train_report.json").write_text(json.dumps(report, indent=1))
        if log is not None:
            log(f"stage {config.stage}: {state['step']} steps, loss_ema {state['loss_ema']:.5g} → {path}")

    engine.save(write_outputs)
    return state
