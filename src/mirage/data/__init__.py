"""Training data for the memory branch: clips with geometry → sharded, inference-faithful samples.

- ``clips``: find, read and validate clips (``geometry.npz`` layout); :class:`ClipError` reasons.
- ``samples``: one sample per chunk start, built as the pipeline conditions a chunk.
- ``shards``: tar shards (webdataset layout, stdlib ``tarfile``) and the sample index.
- ``build``: ``mirage data build``, resumable, with skipped clips logged, split over the
  processes of ``torchrun`` / ``accelerate launch``.
- ``importers`` (with ``import_sources`` and ``depth_align``; the depth model is :mod:`mirage.depth_model`): ``mirage data
  import``, real camera datasets (RealEstate10K, ``transforms.json``, COLMAP) → clips.
"""

from mirage.data.build import BuildConfig, build_dataset
from mirage.data.clips import Clip, ClipError, find_clips, read_clip
from mirage.data.samples import clip_samples, to_conditioning
from mirage.data.shards import SampleIndex, ShardReader, ShardWriter

__all__ = ["BuildConfig", "build_dataset", "Clip", "ClipError", "find_clips", "read_clip",
           "clip_samples", "to_conditioning", "SampleIndex", "ShardReader", "ShardWriter"]
