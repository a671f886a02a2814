"""The A/B evaluation suite (docs/design.md §7): latent vs rgb vs none against the world's ground truth.

Main API::

    from mirage.evaluation import SUITES, suite_cases
    from mirage.evaluation.runs import prepare_ground_truth, evaluate_run, save_run, load_runs
    from mirage.evaluation.report import aggregate, save_report
    from mirage.evaluation.plots import save_plots

Modules, one concept each: ``metrics`` (PSNR, SSIM, revisits, closed loops, exact returns, read error),
``warp`` (geometric consistency), ``proxies`` (OpenCV flow and SIFT camera PROXIES), ``suite``
(what runs), ``runs`` (running and storing one run), ``report`` (metrics.json, report.md) and
``plots`` (PNGs). ``mirage eval`` (:mod:`mirage.cli.eval`) drives them. matplotlib and OpenCV
(the ``[eval]`` extra) are imported only inside the functions that need them.
"""

from mirage.evaluation.metrics import (closed_loop, exact_return, frame_psnr, frame_segments, frame_ssim,
                                       gap_closed, psnr, read_latent_error, revisit_frames, ssim)
from mirage.evaluation.suite import MODES, SUITES, Case, SuiteConfig, suite_cases, suite_modes
from mirage.evaluation.warp import video_warp_error, warp_error

__all__ = [
    "psnr", "frame_psnr", "ssim", "frame_ssim", "revisit_frames", "frame_segments", "closed_loop",
    "exact_return", "gap_closed", "read_latent_error", "warp_error", "video_warp_error",
    "SuiteConfig", "SUITES", "Case", "MODES", "suite_cases", "suite_modes",
]
