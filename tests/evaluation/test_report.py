"""Report and plot generation on a tiny run: a randomly initialised small backbone (32x32)."""

from __future__ import annotations

import json

import pytest
import torch

from mirage.errors import ConfigError
from mirage.evaluation.metrics import gap_closed
from mirage.evaluation.report import aggregate, format_report, main_table
from mirage.evaluation.runs import evaluate_run, load_runs, prepare_ground_truth, save_run
from mirage.evaluation.suite import SUITES, Case, SuiteConfig, mode_label, parse_mode_label, suite_cases, suite_modes


def test_suite_configs_are_held_out_and_cover_the_issue():
    for suite in SUITES.values():
        cases = suite_cases(suite)
        assert {c.family for c in cases} == {"room", "courtyard"}
        assert {"pan-return", "loop", "orbit"} <= {c.preset for c in cases}
        assert all(c.scene < 100 for c in cases) and len(suite.seeds) >= 2
    assert [m for m, *_ in suite_modes(SUITES["quick"])] == ["latent", "rgb", "none"]
    assert suite_modes(SUITES["full"])[3:] == [("latent", "oracle", None, None, True), ("rgb", "tiny", True, None, True),
                                               ("latent", "tiny", None, "inject", True), ("rgb", "tiny", None, "inject", True)]
    relative = suite_modes(SUITES["quick"].with_overrides(relative_ablation=True, depth_model="some/folder"))
    assert [mode_label(*arm) for arm in relative[3:]] == [
        "latent+oracle-relative-depth", "latent+oracle-relative-depth+no-align", "latent+model-depth"]
    given = suite_modes(SUITES["quick"].with_overrides(memory_input="inject", inject_arms=True))
    assert [mode_label(*arm) for arm in given] == ["latent+inject", "rgb+inject", "none"]
    with pytest.raises(ConfigError, match="held out"):
        SuiteConfig(first_scene=99, scenes_per_family=2)
    with pytest.raises(ConfigError, match="presets"):
        SuiteConfig(presets=("spiral",))


def test_mode_labels_name_the_depth_and_the_far_field_and_parse_back():
    cases = {("latent", "tiny", None, None): "latent", ("latent", "oracle", None, None): "latent+oracle-depth",
             ("rgb", "tiny", True, None): "rgb+far-field", ("latent", "tiny", False, None): "latent+no-far-field",
             ("none", "tiny", None, None): "none", ("latent", "tiny", None, "inject"): "latent+inject",
             ("rgb", "tiny", True, "both"): "rgb+far-field+both", ("latent", "oracle", None, "branch"): "latent+oracle-depth+branch",
             ("latent", "oracle-relative", None, None, False): "latent+oracle-relative-depth+no-align",
             ("latent", "model", None, "inject"): "latent+model-depth+inject"}
    for arm, label in cases.items():
        assert mode_label(*arm) == label and parse_mode_label(label) == (*arm, True)[:5]
    for bad in ("sky", "rgb+far-field+far-field", "rgb+oracle", "latent+", "none+inject", "latent+inject+far-field",
                "latent+inject+both", "latent+no-align", "latent+oracle-depth+no-align",
                "latent+oracle-relative-depth+no-align+inject"):
        with pytest.raises(ConfigError, match="mode"):
            parse_mode_label(bad)


def test_rgb_with_a_far_field_map_is_its_own_arm_and_keeps_the_sky(backbone):
    gt = prepare_ground_truth(backbone, Case("courtyard", 4, "pan-return"), 9, proxies=False)
    plain, _ = evaluate_run(backbone, gt, "rgb", 0, steps=1, proxies=False)
    far, _ = evaluate_run(backbone, gt, "rgb", 0, far_field=True, steps=1, proxies=False)
    assert (plain["mode"], far["mode"]) == ("rgb", "rgb+far-field")
    assert far["id"] == "courtyard04-pan-return-rgb+far-field-s0" and far["far_field"] is True
    # the first frame's sky is kept by direction, so more of every read is covered
    assert far["read_coverage"][0] > plain["read_coverage"][0]


@pytest.fixture(scope="module")
def records(backbone, tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module-scoped: the autouse one-thread fixture has not run yet
    try:
        for case in (Case("room", 3, "pan-return"), Case("courtyard", 4, "loop")):
            gt = prepare_ground_truth(backbone, case, 25, proxies=False)
            for mode in ("latent", "rgb", "none"):
                for seed in (0, 1):
                    save_run(folder, *evaluate_run(backbone, gt, mode, seed, steps=2, proxies=False))
    finally:
        torch.set_num_threads(threads)
    return folder, load_runs(folder)


def test_run_with_proxies(backbone):
    pytest.importorskip("cv2")
    gt = prepare_ground_truth(backbone, Case("room", 2, "orbit"), 9)
    record, _ = evaluate_run(backbone, gt, "latent", 0, steps=1)
    assert record["proxy_camera"]["pairs"] == 8 and record["proxy_camera_gt"]["pairs_ok"] >= 1
    assert record["proxy_flow_roundtrip_px"] >= 0 and record["proxy_flow_roundtrip_gt_px"] >= 0
    assert "proxies" not in record


def test_run_records(records):
    folder, runs = records
    assert len(runs) == 12 and len(list(folder.glob("*.npz"))) == 12
    by = {r["id"]: r for r in runs}
    latent, rgb, none = (by[f"room03-pan-return-{m}-s0"] for m in ("latent", "rgb", "none"))
    assert len(latent["psnr"]) == len(latent["ssim"]) == 25 and latent["revisit_frames"]
    assert latent["closed_loop_psnr"] is not None and latent["cache_frames"] == [17, 25]
    assert none["cache_bytes"] == [0, 0] and none["read_latent_rmse"] is None
    assert 0 < latent["cache_bytes"][-1] < rgb["cache_bytes"][-1]
    assert latent["read_latent_rmse"] > 0 and 0 < latent["read_coverage"][-1] <= 1
    assert latent["warp_error_gt"] < latent["warp_error"]
    assert latent["ceiling_revisit_psnr"] == none["ceiling_revisit_psnr"]  # same ground truth
    assert by["room03-pan-return-latent-s1"]["psnr"] != latent["psnr"]  # seeds differ
    assert latent["proxies"] == "not computed (disabled)"


def test_aggregate_is_mean_and_std_over_seeds(records):
    _, runs = records
    metrics = aggregate(runs)
    assert metrics["modes"] == ["latent", "rgb", "none"] and metrics["seeds"] == [0, 1]
    per_seed = [sum(r["revisit_psnr"] for r in runs if r["mode"] == "latent" and r["seed"] == s) / 2 for s in (0, 1)]
    stat = metrics["summary"]["latent"]["revisit_psnr"]
    assert stat["mean"] == pytest.approx(sum(per_seed) / 2)
    assert stat["std"] == pytest.approx(abs(per_seed[0] - per_seed[1]) / 2**0.5)
    assert metrics["summary"]["none"]["cache_bytes"]["mean"] == 0
    assert metrics["summary"]["none"]["read_latent_rmse"] is None
    assert metrics["curves"]["pan-return"]["revisit_frames"]
    assert len(metrics["curves"]["loop"]["psnr"]["rgb"]) == 25


def test_exact_return_in_run_records_and_aggregate(records):
    _, runs = records
    by = {r["id"]: r for r in runs}
    latent = by["room03-pan-return-latent-s0"]
    assert latent["exact_return"] == {"frame": 24, "return_psnr": latent["psnr"][-1],
                                      "decoded_first_psnr": latent["psnr"][0],
                                      "return_loss_db": pytest.approx(latent["psnr"][0] - latent["psnr"][-1])}
    er = aggregate(runs)["exact_return"]
    assert er["families"] == ["room", "courtyard"] and er["modes"] == ["latent", "rgb", "none"]
    assert len(er["paths"]) == 12  # both paths return exactly: 2 cases × 3 modes × 2 seeds
    row = next(r for r in er["paths"] if r["case"] == "room03-pan-return" and r["mode"] == "latent" and r["seed"] == 0)
    none = by["room03-pan-return-none-s0"]["psnr"][-1]
    assert row["none_return_psnr"] == none
    assert row["gap_closed"] == gap_closed(latent["psnr"][-1], none, latent["psnr"][0])
    for r in er["paths"]:  # a random backbone: some returns beat frame 0, which leaves no gap to close
        gap = r["decoded_first_psnr"] - r["none_return_psnr"]
        expected = None if gap <= 0 else (r["return_psnr"] - r["none_return_psnr"]) / gap
        assert r["gap_closed"] == pytest.approx(expected)
        assert r["mode"] != "none" or r["gap_closed"] in (0.0, None)
    room = er["by_family"]["room"]["latent"]["return_psnr"]
    assert room["seeds"] == 2 and room["mean"] == pytest.approx(
        (latent["psnr"][-1] + by["room03-pan-return-latent-s1"]["psnr"][-1]) / 2)


def test_report_and_plots(records, tmp_path):
    pytest.importorskip("matplotlib")
    from mirage.evaluation.plots import PLOTS, save_plots
    from mirage.evaluation.report import save_report
    from mirage.evaluation.runs import load_run_frames

    folder, runs = records
    metrics = aggregate(runs)
    text = format_report(metrics, {"suite": {"name": "test", "frames": 25}})
    for heading in ("## Main table", "## 1. Revisits", "## 2. Closed loops", "## 3. Geometric consistency",
                    "## 4. The memory itself", "## 5. Time and memory", "## 6. Classical PROXIES", "## Not computed"):
        assert heading in text
    assert "LPIPS" in text and "DROID-SLAM" in text and "CLIP" in text
    assert "**Exact return.**" in text and "| courtyard | 4 | loop | 1 |" in text and "| room | none |" in text
    assert main_table(metrics).count("\n| ") == 3 and " ± " in main_table(metrics)
    frames = {m: load_run_frames(folder, f"room03-pan-return-{m}-s0") for m in ("latent", "rgb", "none")}
    assert frames["latent"]["video"].shape == (5, 32, 32, 3) and list(frames["latent"]["indices"]) == [0, 6, 12, 18, 24]
    contact = {"ground_truth": frames["latent"]["ground_truth"], "indices": frames["latent"]["indices"],
               "videos": {m: f["video"] for m, f in frames.items()}}
    paths = save_plots(tmp_path, metrics, contact) + save_report(tmp_path, metrics, {"suite": {"name": "test"}})
    assert sorted(p.name for p in paths) == sorted([*PLOTS, "metrics.json", "report.md", "summary.md"])
    assert main_table(metrics) in (tmp_path / "summary.md").read_text()
    for name in PLOTS:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["summary"]["latent"]["revisit_psnr"]["mean"] == pytest.approx(metrics["summary"]["latent"]["revisit_psnr"]["mean"])
    assert len(saved["exact_return"]["paths"]) == 12


def test_pipeline_keeps_the_reads_the_targets_were_conditioned_on(backbone):
    from mirage.pipeline import LatentDisagreementMasker, PipelineConfig, TinyDepthEstimator, generate

    gt = prepare_ground_truth(backbone, Case("room", 3, "pan-return"), 25, proxies=False)
    first_depth = torch.where(gt.exclude[0], torch.inf, gt.depth[0])
    out = generate(backbone, gt.rgb[0], gt.cameras, PipelineConfig(memory_mode="latent", steps=1),
                   depth_estimator=TinyDepthEstimator(backbone), masker=LatentDisagreementMasker(),
                   first_depth=first_depth, first_exclude=gt.exclude[0])
    assert out.read_latents.shape == out.latents.shape and out.read_mask.shape == (out.latents.shape[1], 4, 4)
    assert not out.read_mask[0].any() and out.read_latents[:, 0].abs().max() == 0
    # latent frames 1–4 are chunk 1's targets, 5–6 chunk 2's: coverage matches the pipeline's stats
    assert out.read_mask[1:5].float().mean().item() == pytest.approx(out.memory_stats[0]["read_coverage"])
    assert out.read_mask[5:].float().mean().item() == pytest.approx(out.memory_stats[1]["read_coverage"])
    assert out.read_mask[5:].any() and (out.read_latents[:, 5:].abs().sum(0) > 0)[out.read_mask[5:]].all()
