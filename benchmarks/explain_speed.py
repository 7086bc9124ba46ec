"""Milliseconds per face of each saliency method on this machine's CPU.

    python benchmarks/explain_speed.py [--model emotion] [--faces 16] [--repeats 3]

Faces are real FER2013 PublicTest crops when the shared data is there, else random pixels (the
cost does not depend on the content). Median of ``--repeats`` runs over a batch of ``--faces``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ferlab.classifier import load
from ferlab.data import load_dataset
from ferlab.data.readers import default_data_root
from ferlab.explain import METHODS, explain

from common import RESULTS, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="emotion")
    parser.add_argument("--faces", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS / "explain_speed.json"))
    args = parser.parse_args()
    clf = load(args.model)
    csv = default_data_root() / "fer2013" / "fer2013.csv.gz"
    if csv.is_file():
        faces = load_dataset(csv, usages=["PublicTest"], val_fraction=0.0).images[: args.faces]
    else:
        faces = torch.randint(0, 256, (args.faces, 1, 48, 48), dtype=torch.uint8)
    rows, results = [], []
    for method in METHODS:
        explain(clf, faces[:2], method)  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            explain(clf, faces, method)
            times.append(time.perf_counter() - start)
        ms = statistics.median(times) / len(faces) * 1000
        results.append({"method": method, "ms_per_face": ms})
        rows.append([method, f"{ms:.1f}"])
    report(args.out, f"saliency cost per face ({args.faces} faces per call, model {args.model})",
           ["method", "ms per face"], rows, {"model": args.model, "faces": args.faces, "results": results})


if __name__ == "__main__":
    main()
