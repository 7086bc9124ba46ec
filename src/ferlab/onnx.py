"""ONNX export and an ONNX Runtime backend: uint8 faces in, class probabilities out.

The exported graph holds the preprocessing and the softmax, so any ONNX runtime can use it without
ferlab; the model card travels in the file's metadata. On a 2-core CPU ONNX Runtime runs the small
emotion networks several times faster than eager PyTorch, most of all for one face at a time
(``benchmarks/inference_speed.py --backend onnx``).

:func:`quantize_onnx` turns that graph into an int8 one (static quantization: int8 weights per output
channel, uint8 activations whose ranges are measured on calibration faces); on CPUs with VNNI instructions
it runs the VGG networks about 3.5 times and ``emotion`` about twice as fast, for a few tenths of a point of
accuracy (``ferlab export --int8``; ``backend="onnx-int8"`` loads the int8 files bundled beside the weights).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
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
from ferlab.system import cpu_name, int8_dot_product
from ferlab.tta import resolve_tta

CARD_KEY = "ferlab_card"
INSTALL_HINT = "the ONNX backend needs onnx and onnxruntime: pip install 'ferlab[onnx]'"

ONNX_TTA_MODES = ("none", "flip")  # the views OnnxClassifier runs (one graph, mirrored in numpy)
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


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
    return _card_bytes(onnx.load_from_string(buf.getvalue()), _export_card(clf))


def _export_card(clf: Classifier) -> dict[str, Any]:
    """The card an exported file carries: the model's, with what reading faces needs spelled out."""
    return {**clf.card, "labels": clf.label_set.to_dict(), "preprocessing": clf.preprocessing.to_dict(),
            "in_chans": clf.card.get("in_chans", 1)}


def export_onnx(clf: Classifier, path: str | os.PathLike, opset: int = 17,
                calibration: torch.Tensor | np.ndarray | None = None, **quantization: Any) -> Path:
    """Write ``clf`` as an ONNX file (input ``faces``: uint8 (N, C, H, W); output ``probs``: (N, classes));
    given ``calibration`` faces, the int8 graph of :func:`quantize_onnx` (``quantization``: its options)."""
    data = _onnx_bytes(clf, opset) if calibration is None else quantize_onnx(clf, calibration, **quantization)
    return write_onnx(data, path)


def write_onnx(model: bytes, path: str | os.PathLike, card: dict[str, Any] | None = None) -> Path:
    """Write an exported model's bytes to ``path`` (atomically), with ``card`` as its card if given."""
    if card is not None:
        import onnx

        model = _card_bytes(onnx.load_from_string(model), card)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(model)
    return path


def _card_bytes(model: Any, card: dict[str, Any]) -> bytes:
    """``model`` (an onnx ModelProto) serialised with ``card`` as its only ferlab card."""
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != CARD_KEY]
    del model.metadata_props[:]
    for key, value in [*kept, (CARD_KEY, json.dumps(card))]:
        model.metadata_props.add(key=key, value=value)
    return model.SerializeToString()


def quantize_onnx(clf: Classifier, calibration: torch.Tensor | np.ndarray, method: str = "minmax",
                  reduce_range: bool = True, batch_size: int = 128) -> bytes:
    """``clf``'s ONNX graph with int8 weights (one scale per output channel) and uint8 activations, whose
    ranges come from running the float graph on ``calibration`` (uint8 faces, a few thousand training faces
    are plenty). Returns the bytes of an ONNX file that :class:`OnnxClassifier` runs, its card saying how it
    was quantized.

    Args:
        method: how activation ranges are set from the calibration outputs: ``minmax`` (the observed range),
            ``entropy`` or ``percentile`` (clipped ranges; slower to calibrate).
        reduce_range: 7-bit weights (the default). CPUs without VNNI instructions (AVX2, pre-2019 AVX-512)
            add pairs of uint8 x int8 products in 16 bits that saturate with 8-bit weights (the bundled
            ``emotion`` lost 4 points that way); 7 bits cannot, so the graph scores the same on every CPU.
            ``False`` gains 0.1-0.4 points, but only on CPUs with VNNI.
    """
    require_network(clf, "int8 quantization")
    if method not in CALIBRATION_METHODS:
        raise ModelError(f"unknown calibration method '{method}'; choose one of {', '.join(CALIBRATION_METHODS)}")
    try:
        import onnx
        import onnxruntime as ort
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise ModelError(INSTALL_HINT) from exc
    faces = as_face_batch(calibration, clf.card.get("in_chans", 1)).numpy()
    size = clf.preprocessing.input_size
    if len(faces) == 0:
        raise ModelError("int8 quantization needs calibration faces (a few thousand training faces); got none")
    if faces.shape[-2:] != (size, size):
        raise ModelError(f"calibration faces are {faces.shape[-2]}x{faces.shape[-1]}; this model takes "
                         f"{size}x{size} faces (read them as the model was trained)")

    class _Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"faces": faces[i:i + batch_size]} for i in range(0, len(faces), batch_size)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[method]
    with tempfile.TemporaryDirectory(prefix="ferlab-int8-") as tmp:
        float_path, pre_path, int8_path = (Path(tmp) / f"{n}.onnx" for n in ("float", "pre", "int8"))
        float_path.write_bytes(_onnx_bytes(clf))
        quant_pre_process(str(float_path), str(pre_path))  # shape inference and graph folding the quantizer needs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its advice to run quant_pre_process, done just above
            # QOperator (QLinearConv...) and QDQ graphs ran alike on the 2-core EPYC; QOperator is the plainer file
            quantize_static(str(pre_path), str(int8_path), _Batches(), quant_format=QuantFormat.QOperator,
                            per_channel=True, reduce_range=reduce_range, calibrate_method=calibrate,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        model = onnx.load(str(int8_path))
    card = {**_export_card(clf),
            "quantization": {"weights": f"int{7 if reduce_range else 8}, per output channel",
                             "activations": "uint8", "calibration_method": method,
                             "calibration_faces": len(faces), "onnxruntime": ort.__version__,
                             "measured_on": f"{cpu_name()} (8-bit dot products: {int8_dot_product()})"}}
    return _card_bytes(model, card)


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
        self.backend = "onnx-int8" if "quantization" in self.card else "onnx"

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
