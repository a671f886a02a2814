"""`--depth-model`: the real transformers loading path, with a tiny random Depth Anything."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mirage.errors import ConfigError
from tests.data.conftest import read_json


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessorPil

    torch.manual_seed(0)
    backbone = Dinov2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                            image_size=28, patch_size=14, out_features=["stage1", "stage2"],
                            reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=16, reassemble_factors=[2, 1],
                                 neck_hidden_sizes=[8, 16], fusion_hidden_size=8, head_hidden_size=8, patch_size=14)
    path = tmp_path_factory.mktemp("tiny-depth-anything")
    DepthAnythingForDepthEstimation(config).save_pretrained(path)
    DPTImageProcessorPil(size={"height": 28, "width": 28}, keep_aspect_ratio=False, ensure_multiple_of=14).save_pretrained(path)
    return path


def test_loads_locally_and_predicts_in_batches(tiny_model_dir, rendered):
    from mirage.data.depth_model import HFDepthModel

    model = HFDepthModel(tiny_model_dir, batch_size=2)
    assert model.device == torch.device("cuda" if torch.cuda.is_available() else "cpu") and not model.metric
    calls = []
    model.model.register_forward_hook(lambda m, args, kw_or_out, *rest: calls.append(1), with_kwargs=False)
    pred = model(rendered.frames[:5])
    assert pred.shape == (5, 48, 64) and pred.dtype == np.float32 and np.isfinite(pred).all()
    assert len(calls) == 3  # 5 frames in batches of 2
    whole = HFDepthModel(tiny_model_dir, batch_size=8)(rendered.frames[:5])
    np.testing.assert_allclose(pred, whole, rtol=1e-4, atol=1e-5)  # batching does not change the output


def test_import_with_the_model_records_the_fit_or_the_reason(tiny_model_dir, formats, tmp_path):
    from mirage.cli import main

    root = formats["colmap"]
    code = main(["data", "import", "--cameras", str(root / "sparse" / "0"), "--images", str(root / "images"),
                 "--depth-model", str(tiny_model_dir), "--batch-size", "4", "--out", str(tmp_path / "out"),
                 "--max-residual", "10", "--no-progress"])
    index = read_json(tmp_path / "out" / "index.json")
    # random weights: meaningless depth, but the plumbing reaches the fit on COLMAP's points
    assert index["config"]["depth"] == f"model:{tiny_model_dir.name}"
    if index["clips"]:
        assert code == 0
        rec = index["clips"][0]["depth"]
        assert rec["reference"] == "colmap sparse points" and len(rec["scale"]) == 9
        assert rec["reference_points_min"] == 88 and np.isfinite(rec["fit_residual"])
    else:
        assert code == 2 and "depth alignment" in index["skipped"][0]["reason"]


def test_a_folder_without_a_model_is_refused(tmp_path):
    from mirage.data.depth_model import HFDepthModel

    with pytest.raises(ConfigError, match=r"`--depth-model` must be a local transformers model folder"):
        HFDepthModel(tmp_path)
