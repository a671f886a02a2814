"""The accelerate configs under configs/accelerate load, and FSDP wraps blocks that exist."""

from __future__ import annotations

from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "accelerate"


def test_accelerate_configs_load_and_name_real_block_classes():
    from accelerate.commands.config.config_args import load_config_from_file
    from diffusers import WanTransformer3DModel

    from mirage.backbones.wan22.testing import TINY_TRANSFORMER
    from mirage.backbones.wan22.transformer import MemoryWanTransformer

    ddp = load_config_from_file(str(CONFIGS / "ddp.yaml"))
    fsdp = load_config_from_file(str(CONFIGS / "fsdp_wan22_5b.yaml"))
    assert str(ddp.distributed_type).endswith("MULTI_GPU") and ddp.mixed_precision == "bf16"
    assert str(fsdp.distributed_type).endswith("FSDP") and fsdp.fsdp_config["fsdp_use_orig_params"] is True
    wrap = fsdp.fsdp_config["fsdp_transformer_layer_cls_to_wrap"].split(",")
    model = MemoryWanTransformer.from_base(WanTransformer3DModel(**TINY_TRANSFORMER))
    names = {type(m).__name__ for m in model.modules()}
    assert set(wrap) <= names
    counts = {w: sum(type(m).__name__ == w for m in model.modules()) for w in wrap}
    assert counts == {"WanTransformerBlock": 4, "MemoryBranchBlock": 2}  # every layer; every second one
