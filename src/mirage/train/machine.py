"""What a training run records of the machine it ran on: the CPU, its cores, the torch threads,
and a measured matmul rate, so that stage times from different machines can be compared."""

from __future__ import annotations

import time
from pathlib import Path

import torch

__all__ = ["machine_info"]


def machine_info(threads: int) -> dict:
    """The CPU, its core count, the torch threads and a measured fp32 matmul rate (GFLOP/s at
    those threads), so stage times from different machines can be compared."""
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    n = 512
    g = torch.Generator().manual_seed(0)  # not the global generator: the run's seeds stay as they are
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    a @ b  # warm-up
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 0.3:
        a @ b
        reps += 1
    gflops = 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9
    return {"cpu": cpu, "cpus": os.cpu_count(), "threads": threads,
            "matmul_gflops": round(gflops, 1), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


