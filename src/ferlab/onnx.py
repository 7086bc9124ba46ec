"""ONNX export and an ONNX Runtime backend: uint8 faces in, class probabilities out.

The exported graph holds the preprocessing and the softmax, so any ONNX runtime can use it without
ferlab; the model card travels in the file's metadata. On a 2-core CPU ONNX Runtime runs the small
emotion networks several times faster than eager PyTorch, most of all for one face at a time
(``benchmarks/inference_speed.py --backend onnx``).
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ferlab.classifier import Classifier, as_face_batch, require_network
from ferlab.data.preprocess import Preprocessing
from ferlab.errors import ModelError
from ferlab.io import atomic_path
from ferlab.labels import LabelSet
from ferlab.tta import resolve_tta

CARD_KEY = "ferlab_card"
INSTALL_HINT = "the ONNX backend needs onnx and onnxruntime: pip install 'ferlab[onnx]'"

ONNX_TTA_MODES = ("none", "flip")  # the views OnnxClassifier runs (one graph, mirrored in numpy)


class _Exported(nn.Module):
    """What the ONNX graph computes: preprocessing, the network, temperature, softmax."""

    def __init__(self, clf: Classifier) -> None:
        super().__init__()
        self.model, self.preprocessing, self.temperature = clf.model, clf.preprocessing, clf.temperature

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(self.preprocessing(faces)) / self.temperature, dim=1)


def _onnx_bytes(clf: Classifier, opset: int = 17) -> bytes:
    require_network(clf, "ONNX export")
    try:
        import onnx
    except ImportError as exc:
        raise ModelError(INSTALL_HINT) from exc
    net = _Exported(clf).eval().cpu()
    size, chans = clf.preprocessing.input_size, clf.card.get("in_chans", 1)
    example = torch.zeros(2, chans, size, size, dtype=torch.uint8)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks, which are constant here
        torch.onnx.export(net, (example,), buf, input_names=["faces"], output_names=["probs"], opset_version=opset,
                          dynamic_axes={"faces": {0: "n"}, "probs": {0: "n"}}, dynamo=False)
    model = onnx.load_from_string(buf.getvalue())
    card = {**clf.card, "labels": clf.label_set.to_dict(), "preprocessing": clf.preprocessing.to_dict(),
            "in_chans": chans}
    model.metadata_props.add(key=CARD_KEY, value=json.dumps(card))
    return model.SerializeToString()


def export_onnx(clf: Classifier, path: str | os.PathLike, opset: int = 17) -> Path:
    """Write ``clf`` as an ONNX file (input ``faces``: uint8 (N, C, H, W); output ``probs``: (N, classes))."""
    data = _onnx_bytes(clf, opset)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


class OnnxClassifier:
    """A classifier running in ONNX Runtime, with :class:`ferlab.Classifier`'s predict API and model card."""

    def __init__(self, model: bytes | str | os.PathLike, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError(INSTALL_HINT) from exc
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf types
            raise ModelError(f"{'the ONNX model' if isinstance(model, bytes) else model} is not a readable ONNX "
                             f"model ({exc})") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        if CARD_KEY not in meta:
            raise ModelError(f"{model if not isinstance(model, bytes) else 'the model'} was not exported by ferlab "
                             f"(no model card in its metadata); use 'ferlab export'")
        self.card: dict[str, Any] = json.loads(meta[CARD_KEY])
        self.label_set = LabelSet.from_dict(self.card["labels"])
        self.preprocessing = Preprocessing.from_dict(self.card["preprocessing"])
        self.backend = "onnx"

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.label_set.names

    def __repr__(self) -> str:
        return f"OnnxClassifier({self.card.get('architecture')}, classes={list(self.class_names)})"

    def predict_proba(self, images: torch.Tensor | np.ndarray, batch_size: int = 256, tta: str | None = None
                      ) -> torch.Tensor:
        """Class probabilities (N, num_classes); ``tta='flip'`` averages with mirrored faces (in log space);
        None: the card's ``tta``, else none."""
        tta = resolve_tta(tta, self.card)
        if tta not in ONNX_TTA_MODES:
            raise ModelError(f"the ONNX backend supports test-time augmentation {' or '.join(ONNX_TTA_MODES)}, not '{tta}'")
        x = as_face_batch(images, self.card.get("in_chans", 1)).numpy()
        out = []
        step = max(1, batch_size // 2) if tta == "flip" else batch_size  # a flipped chunk runs as twice its size
        for start in range(0, len(x), step):
            batch = x[start:start + step]
            if tta == "flip":  # both views in one call: one pass of the runtime's thread pool, not two
                both = self.session.run(None, {"faces": np.concatenate([batch, batch[..., ::-1]])})[0]
                mean = np.exp(np.log(np.clip(both, 1e-12, 1)).reshape(2, len(batch), -1).mean(0))
                probs = mean / mean.sum(1, keepdims=True)
            else:
                probs = self.session.run(None, {"faces": np.ascontiguousarray(batch)})[0]
            out.append(probs)
        return torch.from_numpy(np.concatenate(out)) if out else torch.empty(0, self.label_set.num_classes)

    def logits(self, images: torch.Tensor | np.ndarray, batch_size: int = 256, tta: str | None = None
               ) -> torch.Tensor:
        """Log-probabilities (the exported graph ends in softmax): argmax and differences as with logits."""
        return torch.log(self.predict_proba(images, batch_size, tta).clamp_min(1e-12))

    def predict(self, images: torch.Tensor | np.ndarray, batch_size: int = 256, tta: str | None = None
                ) -> list[str]:
        idx = self.predict_proba(images, batch_size, tta).argmax(1)
        return [self.class_names[i] for i in idx.tolist()]


def to_onnx(clf: Classifier, threads: int | None = None) -> OnnxClassifier:
    """``clf`` exported in memory and run in ONNX Runtime."""
    return OnnxClassifier(_onnx_bytes(clf), threads)


def load_onnx(path: str | os.PathLike, threads: int | None = None) -> OnnxClassifier:
    """An ONNX file written by :func:`export_onnx` (or ``ferlab export``)."""
    return OnnxClassifier(Path(path), threads)
