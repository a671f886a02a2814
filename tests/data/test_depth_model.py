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
    from mirage.depth_model import HFDepthModel

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
    from mirage.depth_model import HFDepthModel

    with pytest.raises(ConfigError, match=r"`--depth-model` must be a local transformers model folder"):
        HFDepthModel(tmp_path)


def test_the_model_as_the_update_depth_estimator(tiny_model_dir):
    """`--depth-model` in the pipeline: a relative model's output goes through the alignment, and
    every chunk says how (random weights: its depth explains nothing, so frames may be skipped,
    and a skipped frame adds no point)."""
    from mirage.pipeline import HFDepthEstimator, LatentDisagreementMasker, PipelineConfig, Session
    from mirage.world import generate_scene, make_trajectory, render
    from tests.backbones.conftest import small_backbone

    estimator = HFDepthEstimator(tiny_model_dir)
    assert estimator.kind == "relative" and estimator.name == f"model:{tiny_model_dir.name}"
    scene = generate_scene("room", 3)
    cams = make_trajectory("pan-return", scene, 9, 32, 32)
    gt = render(scene, cams, torch.arange(9) / 16)
    inverse, valid = estimator(gt.rgb[:2], cams[:2], [0, 1])
    assert inverse.shape == (2, 32, 32) and valid.all() and torch.isfinite(inverse).all()
    session = Session(small_backbone(), gt.rgb[0], cams[[0]], PipelineConfig(steps=1), depth_estimator=estimator,
                      masker=LatentDisagreementMasker(), first_depth=gt.depth[0].clamp(max=50))
    points = session.memory.num_points
    record = session.step(cams[1:9]).depth_alignment
    assert record["chunk"] == 0 and [f["frame"] for f in record["frames"]] == [4, 8]
    written = [f for f in record["frames"] if f["status"] == "aligned"]
    if not written:
        assert record["status"] == "skipped" and session.memory.num_points == points


class _Relative:
    """A stand-in relative model for `clip_samples`: the clip's exact inverse depth through a known
    affine map per frame."""

    metric = False

    def __init__(self, depths):
        self.depths = depths  # (L, H, W) of the key frames

    def __call__(self, frames):
        k = torch.arange(len(frames))[:, None, None]
        return (self.maps(k)[0] / self.depths + self.maps(k)[1]).float().numpy()

    @staticmethod
    def maps(k):
        return 2.0 + 0.25 * k, 0.05 + 0.01 * k


def test_data_build_writes_the_memory_with_aligned_model_depth(tmp_path):
    """Samples built with a relative model's depth: every later frame is aligned to the memory
    (its fit inverts the known map) and the reads match those built with the clips' own depth."""
    from mirage.data import read_clip
    from mirage.data.samples import clip_samples
    from tests.train.wan_standin import StandInWan, render_clips

    render_clips(tmp_path, count=1, frames=17, size=64)
    backbone = StandInWan()
    clip = read_clip(tmp_path / "clip0", temporal_stride=4, spatial_stride=8, min_frames=9)
    key = list(range(0, len(clip.video), 4))
    model = _Relative(torch.where(torch.isfinite(clip.depths[key]), clip.depths[key], torch.inf).double())
    plain = clip_samples(backbone, clip, preceding=1, references=1)
    built = clip_samples(backbone, clip, preceding=1, references=1, depth_model=model)
    last = built[-1][1]["depth_alignment"]
    assert [r["frame"] for r in last] == list(range(1, len(key) - 1)) and all(r["status"] == "aligned" for r in last)
    for r in last:  # the fitted map inverts the known one over the frame's depths (64 anchors: scale and
        a, b = _Relative.maps(r["frame"])  # shift trade off, the depth they give does not)
        z = model.depths[r["frame"]][torch.isfinite(model.depths[r["frame"]])]
        z_fit = 1 / (r["scale"] * (a / z + b) + r["shift"])
        assert float(((z_fit - z).abs() / z).median()) < 0.02 and r["residual"] < 0.02
    for (t0, _), (t1, _) in zip(plain, built):
        same = (t0["memory_mask"] == t1["memory_mask"]).float().mean()
        assert same > 0.9
