"""Training throughput (images/s) of every registered model on this machine's CPU.

Measures forward + backward + AdamW step on 48x48 grey batches, channels-last, after warm-up steps,
exactly as ``ferlab train`` runs them (augmentation and preprocessing included).

    python benchmarks/train_speed.py [--batch-size 64] [--steps 10] [--models mini_xception vgg2017]

Prints a markdown table and writes benchmarks/results/train_speed.json.
"""

from __future__ import annotations

import argparse
import time

import torch

from ferlab.data import BatchAugment, Preprocessing
from ferlab.models import count_parameters, create_model, list_models

from common import RESULTS, report


def images_per_second(name: str, batch_size: int, steps: int, warmup: int = 2) -> float:
    torch.manual_seed(0)
    model = create_model(name).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    pp = Preprocessing(normalize="per_image")
    aug = BatchAugment(rotate=10, shift=0.1, zoom=0.1, hflip=True)
    images = torch.randint(0, 256, (batch_size, 1, 48, 48), dtype=torch.uint8)
    labels = torch.randint(0, 7, (batch_size,))

    def step() -> None:
        x = pp.normalize_(aug(pp.to_float(images))).contiguous(memory_format=torch.channels_last)
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch_size * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--out", default=str(RESULTS / "train_speed.json"))
    args = parser.parse_args()
    rows = []
    for name in args.models or list_models():
        ips = images_per_second(name, args.batch_size, args.steps)
        params = count_parameters(create_model(name), trainable_only=True)
        rows.append({"model": name, "trainable_params": params, "train_images_per_s": round(ips, 1),
                     "fer2013_epoch_min": round(28_513 / ips / 60, 2)})
    report(args.out, f"training throughput, batch {args.batch_size}",
           ["model", "trainable params", "train images/s", "min per FER2013 epoch"],
           [[r["model"], f"{r['trainable_params']:,}", f"{r['train_images_per_s']:.0f}", f"{r['fer2013_epoch_min']:.2f}"]
            for r in rows], {"batch_size": args.batch_size, "results": rows})


if __name__ == "__main__":
    main()
