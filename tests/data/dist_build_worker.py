"""Run by ``torchrun`` from tests/data/test_distributed_build.py: this rank's share of a data build
on the stand-in backbone, through the same process-group helper as ``mirage data build``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.*

from mirage.data.build import BuildConfig, build_dataset, process_group  # noqa: E402
from tests.train.wan_standin import StandInWan  # noqa: E402

with process_group() as (rank, world, barrier, _):
    index = build_dataset(sys.argv[1], StandInWan(), sys.argv[2], BuildConfig(clips_per_shard=1),
                          progress=False, rank=rank, world_size=world, barrier=barrier)
    assert index["complete"], index
