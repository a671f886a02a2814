"""The chunked world-model pipeline with the memory lifecycle (docs/design.md §3).

Main API::

    out = generate(backbone, first_frame, cameras, PipelineConfig(memory_mode="latent"),
                   depth_estimator=TinyDepthEstimator(backbone), masker=LatentDisagreementMasker())
    out.video, out.latents, out.timings, out.memory_stats, out.references

The ``oracle`` depth estimator and masker render the procedural world, so they live there
(:mod:`mirage.world.oracle`); metrics live in :mod:`mirage.evaluation`. This package imports
neither (``tests/test_imports.py``).

or one chunk at a time (an interactive walk; undo, save and load)::

    session = Session(backbone, first_frame, cameras[0], config, depth_estimator=..., masker=...)
    result = session.step(cameras[1:17])            # 16 new frames
    session.undo(); session.step(cameras[1:17], seed=7)   # re-roll
"""

from mirage.pipeline.depth import DEPTH_ESTIMATORS, HFDepthEstimator, TinyDepthEstimator
from mirage.pipeline.config import PipelineConfig
from mirage.pipeline.generator import generate
from mirage.pipeline.inputs import MAX_IMAGE_PIXELS, open_image
from mirage.pipeline.output import ChunkTiming, PipelineOutput
from mirage.pipeline.masks import MASKERS, LatentDisagreementMasker
from mirage.pipeline.memory_modes import MEMORY_MODES, PARTIAL_CELL_FRACTION
from mirage.pipeline.plan import Chunk, check_frame_count, chunk_plan, valid_frame_counts
from mirage.pipeline.session import Session, StepResult
from mirage.pipeline.training import build_memory_samples

__all__ = [
    "generate", "Session", "StepResult", "PipelineConfig", "PipelineOutput", "ChunkTiming",
    "Chunk", "chunk_plan", "check_frame_count", "valid_frame_counts",
    "MEMORY_MODES", "DEPTH_ESTIMATORS", "MASKERS",
    "TinyDepthEstimator", "HFDepthEstimator", "LatentDisagreementMasker", "PARTIAL_CELL_FRACTION",
    "build_memory_samples", "open_image", "MAX_IMAGE_PIXELS",
]
