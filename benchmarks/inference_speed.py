"""Inference speed on this machine: classifier faces/s, single-face latency, photo and video pipeline.

    python benchmarks/inference_speed.py [--model emotion] [--backend torch|onnx|onnx-int8] [--photo PATH] [--repeats 5]

- classifier: batches of 256 face crops (faces/s) and one face at a time (ms), median of ``--repeats``,
  without and with flip test-time augmentation;
- photo: ms per 1024x768 group photo (detection + crops + classification), per detector;
- video: frames/s over a generated 640x480 clip with 3 faces, full detection every frame (mtcnn) and the
  fast path (haar, detect every 5th frame, tracked in between).

Prints a markdown table and writes benchmarks/results/inference_speed.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from ferlab.backends import BACKENDS
from ferlab.classifier import load
from ferlab.data.readers import default_data_root
from ferlab.pipeline import Recognizer

from common import RESULTS, report


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="emotion")
    parser.add_argument("--photo", default=str(default_data_root() / "photos" / "six_people.jpg"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backend", default="torch", choices=list(BACKENDS),
                        help="classifier backend: PyTorch (BN-folded, channels-last), ONNX Runtime, or ONNX "
                        "Runtime on the model's bundled int8 graph")
    parser.add_argument("--out", help="JSON results (default: benchmarks/results/inference_speed[_onnx].json)")
    args = parser.parse_args()
    args.out = args.out or str(RESULTS / f"inference_speed{'' if args.backend == 'torch' else '_' + args.backend}.json")

    clf = load(args.model, backend=args.backend)
    batch = torch.randint(0, 256, (256, 1, 48, 48), dtype=torch.uint8)
    one = batch[:1]
    rows = []
    for tta in ("none", "flip"):
        batch_s = _median_time(lambda tta=tta: clf.predict_proba(batch, tta=tta), args.repeats)
        one_s = _median_time(lambda tta=tta: clf.predict_proba(one, tta=tta), args.repeats * 10)
        what = f"classifier ({clf.card.get('architecture')}, {args.backend}, tta {tta})"
        rows += [{"what": f"{what}, 256 faces per call", "value": 256 / batch_s, "unit": "faces/s"},
                 {"what": f"{what}, one face", "value": one_s * 1000, "unit": "ms"}]

    photo = np.asarray(Image.open(args.photo).convert("RGB"))
    photo = cv2.resize(photo, (1024, 768), interpolation=cv2.INTER_AREA)
    for det in ("mtcnn", "haar"):
        rec = Recognizer(clf, det)
        faces = len(rec.predict_image(photo))
        s = _median_time(lambda rec=rec: rec.predict_image(photo), args.repeats)
        rows.append({"what": f"1024x768 photo, {det} ({faces} faces)", "value": s * 1000, "unit": "ms"})

    clip = cv2.resize(np.asarray(Image.open(args.photo).convert("RGB"))[250:1150, 250:1150], (480, 480))
    frames = [np.pad(np.roll(clip, i, axis=1), ((0, 0), (80, 80), (0, 0)), mode="edge") for i in range(60)]
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "clip.mp4"
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25, (640, 480))
        for f in frames:
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        writer.release()
        for det, every in (("mtcnn", 1), ("haar", 5), ("mtcnn", 5)):
            rec = Recognizer(clf, det, detect_every=every)
            start = time.perf_counter()
            n = sum(1 for _ in rec.predict(video))
            fps = n / (time.perf_counter() - start)
            rows.append({"what": f"640x480 video, {det}, detect every {every}", "value": fps, "unit": "frames/s"})

    report(args.out, f"inference speed, model {args.model}, {args.backend} backend", ["measurement", "value"],
           [[r["what"], f"{r['value']:.1f} {r['unit']}"] for r in rows], {"model": args.model, "results": rows})


if __name__ == "__main__":
    main()
