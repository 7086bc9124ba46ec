"""Temperature scaling: the fit recovers a known temperature, the classifier, its file and its ONNX export
apply it, and the calibration report is honest about when scaling does not help."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ferlab
from ferlab.classifier import Classifier
from ferlab.data import Preprocessing
from ferlab.errors import DataError
from ferlab.evaluation.calibration import (
    apply_calibration,
    calibration_of,
    fit_temperature,
    nll,
    save_calibration,
)
from ferlab.evaluation.metrics import expected_calibration_error
from ferlab.labels import get_label_set


def _sampled(true_temperature: float, n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits / true_temperature): that T is the calibrated one."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (n, 7))
    p = np.exp(z / true_temperature)
    p /= p.sum(1, keepdims=True)
    labels = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    return z, labels


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_fit_recovers_the_temperature_that_generated_the_labels(true_temperature):
    z, y = _sampled(true_temperature)
    t = fit_temperature(z, y)
    assert t == pytest.approx(true_temperature, rel=0.05)
    # it is the minimum of the NLL: both neighbours are worse
    assert nll(z, y, t) < min(nll(z, y, t * 0.9), nll(z, y, t * 1.1))


def test_overconfident_logits_are_fixed_and_marked_as_helped():
    z, y = _sampled(3.0)  # raw logits three times too sharp
    result, probs = calibration_of(z, y)
    assert result.helps and result.temperature == pytest.approx(3.0, rel=0.05)
    assert result.ece_after < result.ece_before / 3 and result.crossfit_ece_after < result.ece_before / 3
    assert result.nll_after < result.nll_before
    assert expected_calibration_error(probs["after"], y) == pytest.approx(result.ece_after)
    # accuracy never changes
    np.testing.assert_array_equal(probs["before"].argmax(1), probs["after"].argmax(1))


def test_bad_inputs_are_named():
    with pytest.raises(DataError, match="logits"):
        fit_temperature(np.zeros((0, 7)), np.zeros(0, dtype=int))
    with pytest.raises(DataError, match="logits"):
        fit_temperature(np.zeros((5, 7)), np.zeros(4, dtype=int))
    with pytest.raises(DataError, match="at least 4"):
        calibration_of(np.zeros((3, 7)), np.zeros(3, dtype=int))


def _classifier(**card) -> Classifier:
    torch.manual_seed(0)
    model = ferlab.create_model("maastricht_cnn4").eval()
    return Classifier(model, get_label_set("fer7"), Preprocessing(),
                      {"architecture": "maastricht_cnn4", "in_chans": 1, "model_kwargs": {},
                       "metrics": {"split": "val", "ece": 0.3, "nll": 2.0}, **card})


def test_classifier_divides_by_the_card_temperature_and_keeps_it_on_save(tmp_path):
    faces = torch.randint(0, 256, (6, 1, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    plain = _classifier()
    z, y = _sampled(2.0, n=4000)
    result, _ = calibration_of(z, y)
    assert apply_calibration(plain, result)  # sets the temperature and the card's headline ECE / NLL
    assert plain.temperature == pytest.approx(result.temperature, abs=1e-6)
    assert plain.card["metrics"]["ece"] == result.ece_after and plain.card["calibration"]["helps"] is True
    raw = _classifier()
    torch.testing.assert_close(plain.logits(faces), raw.logits(faces) / plain.temperature)
    assert plain.predict(faces) == raw.predict(faces)
    for tta in ("flip", "flip-crops"):
        torch.testing.assert_close(plain.predict_proba(faces, tta=tta).sum(1), torch.ones(6))
    loaded = ferlab.load(plain.save(tmp_path / "m.safetensors"))
    assert loaded.temperature == plain.temperature
    torch.testing.assert_close(loaded.predict_proba(faces), plain.predict_proba(faces))
    # a result where scaling does not help removes an earlier temperature
    z, y = _sampled(1.0, n=4000, seed=3)
    unhelpful, _ = calibration_of(z, y)
    unhelpful.helps = False
    assert not apply_calibration(loaded, unhelpful) and loaded.temperature == 1.0
    assert loaded.card["metrics"]["ece"] == unhelpful.ece_before


def test_onnx_export_applies_the_temperature():
    pytest.importorskip("onnxruntime", reason="the ONNX backend needs the 'onnx' extra: pip install 'ferlab[onnx]'")
    from ferlab.onnx import to_onnx

    clf = _classifier(temperature=0.4)
    faces = torch.randint(0, 256, (5, 1, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    np.testing.assert_allclose(to_onnx(clf).predict_proba(faces), clf.predict_proba(faces), atol=1e-5)


def test_save_writes_json_and_reliability_png(tmp_path):
    z, y = _sampled(2.0, n=3000)
    result, probs = calibration_of(z, y, split="val")
    out = save_calibration(result, probs, tmp_path / "cal")
    import json

    saved = json.loads((out / "calibration.json").read_text())
    assert saved["split"] == "val" and saved["n"] == 3000 and saved["temperature"] == pytest.approx(result.temperature)
    assert (out / "reliability.png").stat().st_size > 5000
    assert "temperature" in str(result) and "cross-fitted" in str(result)


def test_calibration_without_data_drops_stale_single_crop_confidence():
    """An ensemble card's single-crop ECE / NLL were measured under the old temperature: without the data to
    measure them again, apply_calibration removes them rather than leave them wrong (accuracy stays: the
    temperature does not move the argmax). With data, ``ferlab calibrate --write`` measures them again
    (tests/test_classifier.py)."""
    single = {"split": "val", "accuracy": 0.6, "ece": 0.05, "nll": 1.1}
    clf = _classifier(metrics_single_crop=dict(single))
    result, _ = calibration_of(*_sampled(2.0, n=4000))
    assert apply_calibration(clf, result)
    assert clf.card["metrics_single_crop"] == {"split": "val", "accuracy": 0.6}
    other_split = _classifier(metrics_single_crop={**single, "split": "test"})
    apply_calibration(other_split, result)  # measured elsewhere: not this calibration's business
    assert other_split.card["metrics_single_crop"]["ece"] == 0.05
