"""What the benchmarks share: a description of the machine, and writing / printing their results."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ferlab.io import atomic_write_json
from ferlab.system import cpu_name, int8_dot_product

RESULTS = Path(__file__).parent / "results"


def machine_info() -> dict:
    # Two CPUs with the same model name ("AMD EPYC") can differ threefold in speed; the 8-bit dot-product
    # instructions tell this project's machines apart, and they decide how fast int8 graphs run.
    return {"cpu": cpu_name(), "int8_dot_product": int8_dot_product(), "cores": os.cpu_count(),
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def report(path: str | os.PathLike, title: str, header: list[str], rows: list[list[str]], payload: dict) -> None:
    """Write ``payload`` plus the machine to ``path`` as JSON and print a markdown table."""
    machine = machine_info()
    atomic_write_json(path, {"machine": machine, **payload})
    print(f"{title}\n{machine['cpu']} (8-bit dot products: {machine['int8_dot_product']}), {machine['cores']} cores, "
          f"torch {machine['torch']}\n")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
