"""The machine a number was measured on, for model cards and benchmark results."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one, else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def int8_dot_product() -> str:
    """The CPU's 8-bit dot-product instructions (``avx512_vnni``, ``avx_vnni``), or ``none``: without them
    int8 graphs run slower and their uint8 x int8 sums can saturate, so int8 numbers hold for one kind of CPU."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        return "unknown"
    return next((f for f in ("avx512_vnni", "avx_vnni") if f in flags), "none")


def hardware_summary() -> str:
    """``'NVIDIA H100 ...'`` when training on a GPU, else ``'<cpu>, N cores, torch X (CPU)'``."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} (CPU)"
