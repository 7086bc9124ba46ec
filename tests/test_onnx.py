"""ONNX export and the ONNX Runtime backend agree with PyTorch, in the API, the pipeline and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="the ONNX backend needs the 'onnx' extra: pip install 'ferlab[onnx]'")

import ferlab  # noqa: E402
from ferlab.cli import main  # noqa: E402
from ferlab.errors import ModelError  # noqa: E402
from ferlab.onnx import OnnxClassifier, export_onnx, load_onnx  # noqa: E402


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    return torch.randint(0, 256, (70, 1, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_export_load_and_agree(tmp_path, faces):
    clf = ferlab.load("emotion")
    path = export_onnx(clf, tmp_path / "emotion.onnx")
    onnx_clf = ferlab.load(path)
    assert isinstance(onnx_clf, OnnxClassifier) and onnx_clf.class_names == clf.class_names
    assert onnx_clf.card["architecture"] == clf.card["architecture"]
    for tta in ("none", "flip"):
        np.testing.assert_allclose(onnx_clf.predict_proba(faces, tta=tta), clf.predict_proba(faces, tta=tta), atol=1e-5)
    assert onnx_clf.predict(faces) == clf.predict(faces)
    # one face, (H, W) and colour input go through the same checks as the PyTorch classifier
    assert onnx_clf.predict_proba(faces[0, 0]).shape == (1, 7)
    assert onnx_clf.predict_proba(torch.zeros(2, 48, 48, 3, dtype=torch.uint8).permute(0, 3, 1, 2)).shape == (2, 7)
    with pytest.raises(ModelError, match="uint8"):
        onnx_clf.predict_proba(faces.float())
    with pytest.raises(ModelError, match="flip-crops"):
        onnx_clf.predict_proba(faces, tta="flip-crops")


def test_in_memory_backend_pipeline_and_evaluate(fer_csv, faces):
    from ferlab.evaluation import evaluate
    from ferlab.pipeline import Recognizer

    clf = ferlab.load("emotion", backend="onnx")
    assert isinstance(clf, OnnxClassifier)
    torch_eval = evaluate(ferlab.load("emotion"), fer_csv, split="PublicTest")
    onnx_eval = evaluate(clf, fer_csv, split="PublicTest")
    assert onnx_eval.accuracy == pytest.approx(torch_eval.accuracy)
    image = np.full((200, 200, 3), 128, np.uint8)
    image[50:146, 50:146] = np.repeat(faces[0, 0].numpy()[..., None], 3, 2).repeat(2, 0).repeat(2, 1)
    box = [[50, 50, 146, 146]]
    a = Recognizer("emotion", "haar", backend="onnx").predict(image, boxes=box)[0].faces[0]
    b = Recognizer("emotion", "haar").predict(image, boxes=box)[0].faces[0]
    assert a.emotion == b.emotion and a.emotion_prob == pytest.approx(b.emotion_prob, abs=1e-5)
    flip = Recognizer("emotion", "haar", backend="onnx", tta="flip").predict(image, boxes=box)[0].faces[0]
    flip_torch = Recognizer("emotion", "haar", tta="flip").predict(image, boxes=box)[0].faces[0]
    assert flip.probs == pytest.approx(flip_torch.probs, abs=1e-5) and flip.probs != pytest.approx(a.probs, abs=1e-4)
    with pytest.raises(ModelError, match="backend"):
        ferlab.load("emotion", backend="tensorrt")


def test_bad_onnx_files(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(ModelError, match="not a readable ONNX"):
        load_onnx(bad)
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(torch.nn.Linear(3, 2), (torch.zeros(1, 3),), plain, dynamo=False)
    with pytest.raises(ModelError, match="ferlab export"):
        load_onnx(plain)


def test_cli(tmp_path, fer_csv, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", "emotion", "--out", str(out)]) == 0
    assert "max difference from PyTorch" in capsys.readouterr().out and out.stat().st_size > 10_000
    assert main(["evaluate", str(out), "--data", str(fer_csv), "--split", "PublicTest"]) == 0
    assert main(["evaluate", "emotion", "--data", str(fer_csv), "--split", "PublicTest", "--backend", "onnx"]) == 0
    assert main(["predict", str(tmp_path), "--backend", "onnx", "--explain", "gradcam"]) == 2
    assert "--backend torch" in capsys.readouterr().err
