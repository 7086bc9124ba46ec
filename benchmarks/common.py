"""What the benchmarks share: a description of the machine, and writing / printing their results."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ferlab.io import atomic_write_json
from ferlab.system import cpu_name

RESULTS = Path(__file__).parent / "results"


def machine_info() -> dict:
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads()}


def report(path: str | os.PathLike, title: str, header: list[str], rows: list[list[str]], payload: dict) -> None:
    """Write ``payload`` plus the machine to ``path`` as JSON and print a markdown table."""
    machine = machine_info()
    atomic_write_json(path, {"machine": machine, **payload})
    print(f"{title}\n{machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}\n")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
