import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import ferlab
from ferlab.classifier import Classifier
from ferlab.data import Preprocessing
from ferlab.errors import ModelError
from ferlab.io import atomic_path
from ferlab.labels import get_label_set


def _classifier(arch="maastricht_cnn4", **card):
    torch.manual_seed(0)
    model = ferlab.create_model(arch).eval()
    return Classifier(model, get_label_set("fer7"), Preprocessing(),
                      {"architecture": arch, "in_chans": 1, "model_kwargs": {}, **card})


def test_save_load_roundtrip(tmp_path):
    clf = _classifier(metrics={"accuracy": 0.5})
    path = clf.save(tmp_path / "m.safetensors")
    assert (tmp_path / "m.json").is_file()
    loaded = ferlab.load(path)
    x = torch.randint(0, 256, (5, 1, 48, 48), dtype=torch.uint8)
    torch.testing.assert_close(loaded.predict_proba(x), clf.predict_proba(x))
    assert loaded.card["metrics"]["accuracy"] == 0.5 and loaded.class_names[0] == "angry"
    assert ferlab.load(tmp_path / "m.safetensors", architecture="maastricht_cnn4") is not None



def test_save_half_stores_float16_and_loads_as_float32(tmp_path):
    clf = _classifier("resnet18_fer", metrics={"accuracy": 0.5})
    full, half = clf.save(tmp_path / "full.safetensors"), clf.save(tmp_path / "half.safetensors", half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = ferlab.load(half)
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}
    assert loaded.card["metrics"]["accuracy"] == 0.5
    x = torch.randint(0, 256, (4, 1, 48, 48), dtype=torch.uint8)
    torch.testing.assert_close(loaded.predict_proba(x), clf.predict_proba(x), atol=2e-3, rtol=0)

def test_predict_accepts_grey_and_colour(tmp_path):
    clf = _classifier()
    grey = np.random.default_rng(0).integers(0, 255, (3, 48, 48), dtype=np.uint8)
    rgb = np.repeat(grey[:, None], 3, axis=1)
    torch.testing.assert_close(clf.predict_proba(grey), clf.predict_proba(rgb), atol=1e-2, rtol=0)
    assert len(clf.predict(grey)) == 3
    for tta in ("flip", "flip-crops", "ten-crop"):
        p = clf.predict_proba(grey, tta=tta)
        torch.testing.assert_close(p.sum(1), torch.ones(3))
    with pytest.raises(ModelError, match="uint8"):
        clf.predict_proba(grey.astype(np.float32))


def test_wrong_architecture_and_foreign_files(tmp_path):
    path = _classifier().save(tmp_path / "m.safetensors")
    with pytest.raises(ModelError, match="holds a 'maastricht_cnn4' network, not 'vgg2017'"):
        ferlab.load(path, architecture="vgg2017")
    # weights of one network under another's card
    other = _classifier("vgg2017")
    other.card["architecture"] = "maastricht_cnn4"
    with pytest.raises(ModelError, match="do not fit the 'maastricht_cnn4' architecture"):
        ferlab.load(other.save(tmp_path / "swapped.safetensors"))
    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ModelError, match="no ferlab model card"):
        ferlab.load(tmp_path / "foreign.safetensors")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a readable checkpoint"):
        ferlab.load(tmp_path / "junk.ckpt")
    with pytest.raises(ModelError, match="no model at"):
        ferlab.load(tmp_path / "missing.safetensors")


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "last.ckpt"
    target.write_bytes(b"previous good checkpoint")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed while writing")
    assert target.read_bytes() == b"previous good checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


@pytest.mark.parametrize("arch", ["mini_xception", "maastricht_cnn4", "copenhagen_edge", "realtime_cnn", "111123"])
def test_optimized_cpu_path_matches_the_model(arch):
    clf = _classifier(arch)
    x = torch.randint(0, 256, (70, 1, 48, 48), dtype=torch.uint8)
    fast = clf.logits(x)
    assert clf._fused is not None  # the BatchNorm-folded copy was built and used
    with torch.no_grad():
        eager = clf.model(clf.preprocessing(x))
    torch.testing.assert_close(fast, eager, atol=1e-4, rtol=1e-4)
    assert not any("_fused" in k for k in clf.state_dict())
    slow = Classifier(clf.model, clf.label_set, clf.preprocessing, clf.card, optimize=False)
    torch.testing.assert_close(slow.logits(x), eager, atol=1e-5, rtol=1e-5)


def test_evaluate_reads_a_path_as_the_model_was_trained(utkface_dir):
    from ferlab.evaluation import evaluate

    torch.manual_seed(0)
    model = ferlab.create_model("maastricht_cnn4", num_classes=2, in_chans=3).eval()
    clf = Classifier(model, get_label_set("gender2"), Preprocessing(input_size=48),
                     {"architecture": "maastricht_cnn4", "in_chans": 3, "config": {"data": {"image_size": 40}}})
    # an RGB model on a UTKFace folder: images are read in colour at the training size, not as 48x48 grey
    result = evaluate(clf, utkface_dir, split="train")
    expected = ferlab.load_dataset(utkface_dir, "gender2", size=40, grayscale=False).split("train")
    assert result.metrics["n"] == len(expected) > 0 and result.images.shape[1:] == (40, 40)


def test_ensemble_averages_log_probabilities(tmp_path, fer_csv, capsys):
    from ferlab.cli import main
    from ferlab.evaluation import evaluate

    a, b = _classifier(), _classifier("vgg2017")
    ens = ferlab.Ensemble([a, b])
    x = torch.randint(0, 256, (6, 1, 48, 48), dtype=torch.uint8)
    for tta in ("none", "flip"):
        mean = (torch.log_softmax(a.logits(x, tta=tta), 1) + torch.log_softmax(b.logits(x, tta=tta), 1)) / 2
        expected = torch.softmax(mean, 1)
        torch.testing.assert_close(ens.predict_proba(x, tta=tta), expected)
        assert ens.predict(x, tta=tta) == [ens.class_names[i] for i in expected.argmax(1).tolist()]
    assert "maastricht_cnn4" in ens.card["architecture"] and "vgg2017" in ens.card["architecture"]
    # a temperature in the ensemble's card divides the mean, not the members
    cooled = ferlab.Ensemble([a, b], card={"temperature": 2.0})
    torch.testing.assert_close(cooled.logits(x), ens.logits(x) / 2)
    assert cooled.predict(x) == ens.predict(x)

    # paths work as members, and `ferlab evaluate` with several models scores their ensemble
    paths = [str(a.save(tmp_path / "a.safetensors")), str(b.save(tmp_path / "b.safetensors"))]
    result = evaluate(paths, fer_csv, split="PublicTest")
    torch.testing.assert_close(torch.from_numpy(result.probs), ens.predict_proba(result.images))
    out = tmp_path / "r"
    assert main(["evaluate", *paths, "--data", str(fer_csv), "--split", "PublicTest", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"accuracy {result.accuracy:.4f}" in printed and "model card" not in printed
    assert "# a.safetensors + b.safetensors on val" in (out / "report.md").read_text()


def test_card_tta_is_the_default_and_an_explicit_tta_wins():
    plain, flipped = _classifier(), _classifier(tta="flip")
    x = torch.randint(0, 256, (4, 1, 48, 48), dtype=torch.uint8)
    torch.testing.assert_close(flipped.predict_proba(x), plain.predict_proba(x, tta="flip"))
    torch.testing.assert_close(flipped.predict_proba(x, tta="none"), plain.predict_proba(x))
    assert not torch.allclose(plain.predict_proba(x), plain.predict_proba(x, tta="flip"))
    with pytest.raises(ModelError, match="unknown test-time augmentation 'mirror'"):
        _classifier(tta="mirror").predict(x)


def test_ensemble_file_roundtrip(tmp_path, fer_csv, capsys):
    """`ferlab ensemble` measures members on a split and writes a file that loads as the same ensemble,
    running with the views its card names unless told otherwise."""
    from ferlab.cli import main
    from ferlab.evaluation import evaluate

    models = tmp_path / "models"
    models.mkdir()
    paths = [str(_classifier(train_seconds=10.0, parameters=5).save(models / "a.safetensors")),
             str(_classifier("vgg2017", train_seconds=20.0, parameters=7).save(models / "b.safetensors"))]
    out, report = tmp_path / "specs" / "ab.ensemble.json", tmp_path / "report"
    out.parent.mkdir()
    assert main(["ensemble", *paths, "--tta", "flip", "--data", str(fer_csv), "--split", "PublicTest",
                 "--out", str(out), "--report", str(report), "--description", "two toy networks"]) == 0
    printed = capsys.readouterr().out
    spec = json.loads(out.read_text())
    assert spec["members"] == ["../models/a.safetensors", "../models/b.safetensors"]  # relative: the folder moves
    assert spec["tta"] == "flip" and spec["train_seconds"] == 30.0 and spec["parameters"] == 12
    assert spec["description"] == "two toy networks" and spec["command"] is None  # not run as `ferlab`
    expected = evaluate(paths, fer_csv, split="PublicTest", tta="flip")
    single = evaluate(paths, fer_csv, split="PublicTest", tta="none")
    assert spec["metrics"]["accuracy"] == pytest.approx(expected.accuracy)
    assert spec["metrics_single_crop"]["accuracy"] == pytest.approx(single.accuracy)
    assert spec["metrics"]["split"] == "val" and f"accuracy {expected.accuracy:.4f}" in printed
    assert (report / "confusion_normalized.png").is_file()

    loaded = ferlab.load(out)
    assert isinstance(loaded, ferlab.Ensemble) and loaded.card["description"] == "two toy networks"
    again = evaluate(out, fer_csv, split="PublicTest")  # the card's flip TTA by default
    assert again.info["tta"] == "flip" and again.accuracy == pytest.approx(spec["metrics"]["accuracy"])
    torch.testing.assert_close(loaded.predict_proba(again.images, tta="none"), torch.from_numpy(single.probs))
    # saved again where it is, it writes the same members
    assert json.loads(loaded.save(tmp_path / "specs" / "again.ensemble.json").read_text())["members"] == \
        spec["members"]

    # `ferlab calibrate --write` fits the ensemble's temperature with the views it runs with, in its file;
    # single-crop numbers from before (here made stale on purpose) are measured again under the new temperature
    out.write_text(json.dumps({**spec, "metrics_single_crop": {**spec["metrics_single_crop"], "nll": 99.0}}))
    assert main(["calibrate", str(out), "--data", str(fer_csv), "--split", "PublicTest", "--write"]) == 0
    calibrated = json.loads(out.read_text())
    assert calibrated["members"] == spec["members"] and "wrote" in capsys.readouterr().out
    fit = calibrated["calibration"]
    assert fit["ece_before"] == pytest.approx(expected.metrics["ece"], abs=1e-4)  # flip views, as its card says
    assert ferlab.load(out).temperature == (pytest.approx(fit["temperature"], abs=1e-6) if fit["helps"] else 1.0)
    # and the card's single-crop numbers are those of the calibrated ensemble, not of the old temperature
    single_now = evaluate(out, fer_csv, split="PublicTest", tta="none")
    assert calibrated["metrics_single_crop"]["nll"] == pytest.approx(single_now.metrics["nll"], abs=1e-6)


def test_ensemble_file_errors(tmp_path):
    with pytest.raises(ModelError, match=r"\*\.ensemble\.json"):
        ferlab.Ensemble([_classifier(), _classifier()]).save(tmp_path / "x.json")
    with pytest.raises(ModelError, match="built from loaded classifiers"):
        ferlab.Ensemble([_classifier(), _classifier()]).save(tmp_path / "x.ensemble.json")
    broken = tmp_path / "broken.ensemble.json"
    broken.write_text("{not json")
    with pytest.raises(ModelError, match="not a readable ensemble file"):
        ferlab.load(broken)
    broken.write_text(json.dumps({"tta": "flip"}))
    with pytest.raises(ModelError, match="no 'members' list"):
        ferlab.load(broken)
    broken.write_text(json.dumps({"members": ["missing.safetensors", "emotion"]}))
    with pytest.raises(ModelError, match="no model at"):
        ferlab.load(broken)
    # one network's tools say so for an ensemble, before they do any work
    from ferlab.explain import explain
    from ferlab.onnx import export_onnx

    ens = ferlab.Ensemble([_classifier(), _classifier("vgg2017")])
    x = torch.zeros(1, 1, 48, 48, dtype=torch.uint8)
    with pytest.raises(ModelError, match="a saliency map needs one PyTorch network, not Ensemble"):
        explain(ens, x)
    with pytest.raises(ModelError, match="ONNX export needs one PyTorch network"):
        export_onnx(ens, tmp_path / "e.onnx")
    assert not (tmp_path / "e.onnx").exists()


def test_ensemble_rejects_a_lone_model_and_mixed_classes():
    with pytest.raises(ModelError, match="at least two models"):
        ferlab.Ensemble([_classifier()])
    torch.manual_seed(0)
    gender = Classifier(ferlab.create_model("maastricht_cnn4", num_classes=2).eval(), get_label_set("gender2"),
                        Preprocessing(), {"architecture": "maastricht_cnn4", "in_chans": 1})
    with pytest.raises(ModelError, match="share their classes"):
        ferlab.Ensemble([_classifier(), gender])


def test_cli_save_half_measures_the_card_on_the_stored_weights(tmp_path, fer_csv, capsys):
    from ferlab.cli import main
    from ferlab.evaluation import evaluate

    src = _classifier("resnet18_fer", metrics={"split": "val", "accuracy": 0.99, "logged": {"val_acc": 0.99}},
                      data={"path": str(fer_csv)}).save(tmp_path / "run.safetensors")
    out = tmp_path / "bundled.safetensors"
    main(["save", str(src), "--half", "--out", str(out)])
    assert "val accuracy" in capsys.readouterr().out
    saved = ferlab.load(out)
    assert out.stat().st_size < 0.6 * src.stat().st_size
    metrics = saved.card["metrics"]
    assert metrics["logged"] == {"val_acc": 0.99} and metrics["split"] == "val"
    assert metrics["accuracy"] == pytest.approx(evaluate(saved, fer_csv, split="val").accuracy, abs=1e-9)
    main(["save", str(src), "--keep-metrics", "--out", str(tmp_path / "kept.safetensors")])
    assert ferlab.load(tmp_path / "kept.safetensors").card["metrics"]["accuracy"] == 0.99
    ferlab.Ensemble([str(out), str(src)]).save(tmp_path / "two.ensemble.json")
    assert main(["save", str(tmp_path / "two.ensemble.json"), "--out", str(tmp_path / "x.safetensors")]) != 0
    assert "needs one PyTorch network" in capsys.readouterr().err and not (tmp_path / "x.safetensors").exists()
