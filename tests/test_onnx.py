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


def test_int8_export_calibrates_measures_and_runs_everywhere(tmp_path, fer_csv, faces, capsys, monkeypatch):
    """`ferlab export --int8` writes a graph calibrated on training faces whose card holds its own metrics
    (the float ones beside them); it loads as a file and through the pipeline, and agrees with the float
    model on most faces (int8 rounding moves a few near ties, not the model)."""
    from ferlab.evaluation import evaluate
    from ferlab.pipeline import Recognizer

    out = tmp_path / "emotion.int8.onnx"
    argv = ["export", "emotion", "--int8", "--data", str(fer_csv), "--calibration-faces", "100", "--out", str(out)]
    monkeypatch.setattr("sys.argv", ["ferlab", *argv])  # as the console script sees it: the card keeps the command
    assert main(argv) == 0
    assert "int8 graph calibrated on 100 training faces; val accuracy" in capsys.readouterr().out
    int8 = ferlab.load(out)
    assert isinstance(int8, OnnxClassifier) and int8.backend == "onnx-int8"
    q = int8.card["quantization"]
    assert q["calibration_faces"] == 100 and q["calibration_data"]["split"] == "train"
    assert q["command"].startswith("ferlab export emotion --int8") and "8-bit dot products" in q["measured_on"]
    assert int8.card["metrics"]["accuracy"] == pytest.approx(evaluate(int8, fer_csv, split="val").accuracy)
    assert int8.card["float_metrics"]["accuracy"] == ferlab.load("emotion").card["metrics"]["accuracy"]
    # 4x smaller than the float graph, and close to it
    float_path = export_onnx(ferlab.load("emotion"), tmp_path / "float.onnx")
    assert out.stat().st_size < float_path.stat().st_size / 3
    agree = np.mean(np.array(int8.predict(faces)) == np.array(ferlab.load("emotion").predict(faces)))
    assert agree >= 0.8, agree
    image = np.full((200, 200, 3), 128, np.uint8)
    image[50:146, 50:146] = np.repeat(faces[0, 0].numpy()[..., None], 3, 2).repeat(2, 0).repeat(2, 1)
    face = Recognizer(out, "haar", tta="flip").predict(image, boxes=[[50, 50, 146, 146]])[0].faces[0]
    assert sum(face.probs.values()) == pytest.approx(1, abs=1e-4)


def test_int8_backend_loads_bundled_graphs_and_says_how_to_make_others(tmp_path):
    from ferlab.classifier import bundled_int8_models

    assert {"emotion", "emotion-vgg", "emotion-vgg-seed1", "emotion-efficientnet-ferplus"} <= set(bundled_int8_models())
    assert ferlab.load("emotion", backend="onnx-int8").backend == "onnx-int8"
    # emotion-accurate's members all ship int8 graphs, so the ensemble runs int8 as a whole
    ens = ferlab.load("emotion-accurate", backend="onnx-int8")
    assert ens.backend == "onnx-int8" and all(m.backend == "onnx-int8" for m in ens.members)
    with pytest.raises(ModelError, match="ships no int8 graph.*ferlab export gender --int8"):
        ferlab.load("gender", backend="onnx-int8")
    run = tmp_path / "model.safetensors"
    ferlab.load("emotion").save(run)
    with pytest.raises(ModelError, match="no bundled model with an int8 graph.*--int8 --data"):
        ferlab.load(run, backend="onnx-int8")


def test_int8_quantization_rejects_bad_calibration():
    from ferlab.onnx import quantize_onnx

    clf = ferlab.load("emotion")
    with pytest.raises(ModelError, match="needs calibration faces"):
        quantize_onnx(clf, torch.zeros(0, 1, 48, 48, dtype=torch.uint8))
    with pytest.raises(ModelError, match="64x64.*takes 48x48"):
        quantize_onnx(clf, torch.zeros(4, 1, 64, 64, dtype=torch.uint8))
    with pytest.raises(ModelError, match="unknown calibration method"):
        quantize_onnx(clf, torch.zeros(4, 1, 48, 48, dtype=torch.uint8), method="kl")
    with pytest.raises(ModelError, match="one PyTorch network"):
        quantize_onnx(ferlab.load("emotion", backend="onnx"), torch.zeros(4, 1, 48, 48, dtype=torch.uint8))
