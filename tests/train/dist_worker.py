"""Run by ``torchrun`` from tests/train/test_distributed.py: one training step of stage ``branch``
on the stand-in backbone (``argv[3]`` samples per process: several forwards per backward), then
dump this process's gradients (after DDP's all-reduce)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.*

from mirage.files import save_safetensors  # noqa: E402
from mirage.train.distributed import AccelerateEngine, make_accelerator  # noqa: E402
from mirage.train.wan import WanTrainConfig, train_wan  # noqa: E402
from tests.train.wan_standin import StandInWan  # noqa: E402

data, out = sys.argv[1], Path(sys.argv[2])
engine = AccelerateEngine(make_accelerator("no", cpu=True))
bb = StandInWan()
cfg = WanTrainConfig(stage="branch", max_steps=1, lr=1e-2, batch_size=int(sys.argv[3]), grad_clip=0.0, gradient_checkpointing=False)
train_wan(out, data, bb, cfg, engine=engine, progress=False, log=None)
grads = {n: p.grad for n, p in bb.transformer.vace_branch.named_parameters()}
save_safetensors(out / f"grads-{engine.process_index}-of-{engine.num_processes}.safetensors", grads, {})
