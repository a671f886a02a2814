"""The chunked world-model pipeline with the memory lifecycle (DESIGN §3).

Main API::

    out = generate(backbone, first_frame, cameras, PipelineConfig(memory_mode="latent"),
                   depth_estimator=TinyDepthEstimator(backbone), masker=LatentDisagreementMasker())
    out.video, out.latents, out.timings, out.memory_stats, out.references
"""

from mirage.pipeline.depth import DEPTH_ESTIMATORS, OracleDepthEstimator, TinyDepthEstimator
from mirage.pipeline.generator import ChunkTiming, PipelineConfig, PipelineOutput, generate
from mirage.pipeline.masks import MASKERS, LatentDisagreementMasker, OracleMasker
from mirage.pipeline.memory_modes import MEMORY_MODES
from mirage.pipeline.metrics import frame_psnr, psnr, revisit_frames
from mirage.pipeline.plan import Chunk, check_frame_count, chunk_plan, valid_frame_counts

__all__ = [
    "generate", "PipelineConfig", "PipelineOutput", "ChunkTiming",
    "Chunk", "chunk_plan", "check_frame_count", "valid_frame_counts",
    "MEMORY_MODES", "DEPTH_ESTIMATORS", "MASKERS",
    "TinyDepthEstimator", "OracleDepthEstimator", "LatentDisagreementMasker", "OracleMasker",
    "psnr", "frame_psnr", "revisit_frames",
]
