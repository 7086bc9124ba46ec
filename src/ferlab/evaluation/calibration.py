"""Calibration: how far a model's confidence is from its accuracy, and temperature scaling to close the gap.

Temperature scaling (Guo et al., 2017) divides the network's logits by one scalar T fitted to minimise the
negative log-likelihood on held-out data. Accuracy does not change (the argmax is the same); only the
confidence does. The card records the ECE / NLL before and after, and, because fitting and measuring on
the same split flatters the result, also a two-fold cross-fitted figure (T fitted on one half of the
split, measured on the other, and the other way round).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ferlab.errors import DataError
from ferlab.evaluation.metrics import expected_calibration_error
from ferlab.io import atomic_write_json

# T outside this range means the logits are degenerate (all equal, or a wrongly labelled split)
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under softmax(logits / temperature)."""
    logp = _log_softmax(np.asarray(logits, dtype=np.float64) / temperature)
    return float(-logp[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, steps: int = 50) -> float:
    """The temperature T that minimises the NLL of softmax(logits / T).

    The NLL is convex in beta = 1 / T (a log-sum-exp minus a linear term), so Newton's method on beta
    converges in a few steps; its gradient is E_p[z] - z_y and its curvature Var_p[z].
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if z.ndim != 2 or len(z) != len(y) or len(y) == 0:
        raise DataError(f"need logits (N, classes) and N labels to fit a temperature; got {z.shape} and {y.shape}")
    zy = z[np.arange(len(y)), y]
    beta = 1.0
    for _ in range(steps):
        p = np.exp(_log_softmax(beta * z))
        mean = (p * z).sum(1)
        grad = float((mean - zy).mean())
        curv = float(((p * z * z).sum(1) - mean**2).mean())
        if curv <= 1e-12:
            break
        new = float(np.clip(beta - grad / curv, 1 / MAX_TEMPERATURE, 1 / MIN_TEMPERATURE))
        if abs(new - beta) < 1e-7:
            beta = new
            break
        beta = new
    return 1.0 / beta


@dataclass
class CalibrationResult:
    """ECE and NLL of a model before and after temperature scaling on one split."""

    temperature: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    crossfit_ece_after: float  # each half scaled by the T fitted on the other half, measured together
    crossfit_nll_after: float
    n: int
    split: str
    helps: bool  # whether cross-fitted NLL and ECE are both lower than without scaling

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def __str__(self) -> str:
        return (f"temperature {self.temperature:.3f} on {self.split} (n {self.n}): ECE {self.ece_before:.4f} -> "
                f"{self.ece_after:.4f} (cross-fitted {self.crossfit_ece_after:.4f}), NLL {self.nll_before:.4f} -> "
                f"{self.nll_after:.4f} (cross-fitted {self.crossfit_nll_after:.4f})"
                f"{'' if self.helps else '; scaling does not help on held-out halves'}")


def calibration_of(logits: np.ndarray, labels: np.ndarray, split: str = "val", seed: int = 0
                   ) -> tuple[CalibrationResult, dict[str, np.ndarray]]:
    """Fit a temperature to ``logits`` and measure it; also returns the probabilities before and after."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if len(y) < 4:
        raise DataError(f"calibration needs at least 4 labelled faces (two halves to cross-fit); got {len(y)}")
    t = fit_temperature(z, y)
    before, after = np.exp(_log_softmax(z)), np.exp(_log_softmax(z / t))
    # two-fold cross-fitting: an honest estimate of what the fitted T does on faces it was not fitted to
    half = np.random.default_rng(seed).permutation(len(y)) < len(y) // 2
    cross = np.empty_like(z)
    for fit, apply in ((half, ~half), (~half, half)):
        cross[apply] = z[apply] / fit_temperature(z[fit], y[fit])
    cross_probs = np.exp(_log_softmax(cross))
    crossfit_nll = nll(cross, y)
    crossfit_ece, ece_before = expected_calibration_error(cross_probs, y), expected_calibration_error(before, y)
    nll_before = nll(z, y)
    result = CalibrationResult(
        temperature=t, ece_before=ece_before, ece_after=expected_calibration_error(after, y), nll_before=nll_before,
        nll_after=nll(z, y, t), crossfit_ece_after=crossfit_ece, crossfit_nll_after=crossfit_nll, n=len(y),
        split=split, helps=bool(crossfit_nll < nll_before and crossfit_ece < ece_before))
    return result, {"before": before, "after": after, "labels": y}


def calibrate(model: Any, data: Any, split: str = "val", batch_size: int = 64) -> tuple[CalibrationResult, dict]:
    """Fit and measure temperature scaling for a classifier on one split of ``data``.

    The fit uses the raw network outputs (any temperature already in the card is undone), so the result's
    ``temperature`` is the one to store. Returns the result and the probabilities before / after (for
    :func:`plot_reliability`).
    """
    from ferlab.classifier import Classifier, Ensemble, as_classifier
    from ferlab.evaluation.evaluate import split_of

    clf = as_classifier(model)
    if not isinstance(clf, Classifier | Ensemble):
        raise DataError("temperature scaling needs the PyTorch model (it changes the logits); load it with "
                        "backend='torch' and export again afterwards")
    ds, name = split_of(clf, data, split)
    # raw outputs, with the views the model runs with by default (an ensemble card's tta), as it is used
    logits = clf.logits(ds.images, batch_size=batch_size).numpy() * clf.temperature
    result, probs = calibration_of(logits, ds.labels.numpy(), split=name)
    return result, probs


def plot_reliability(probs: dict[str, np.ndarray], path: str | os.PathLike, bins: int = 15, title: str = "") -> Path:
    """Reliability diagram: accuracy per confidence bin before and after scaling, against the diagonal."""
    from ferlab.evaluation.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    edges = np.linspace(0, 1, bins + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    y = probs["labels"]
    for key, style in (("before", "o-"), ("after", "s-")):
        p = probs[key]
        conf, correct = p.max(1), p.argmax(1) == y
        which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
        acc = np.array([correct[which == b].mean() if (which == b).any() else np.nan for b in range(bins)])
        ax.plot(centers, acc, style, label=f"{key} (ECE {expected_calibration_error(p, y):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    ax.set_title(title or "reliability before and after temperature scaling")
    return _save(fig, path)


def save_calibration(result: CalibrationResult, probs: dict[str, np.ndarray], out_dir: str | os.PathLike) -> Path:
    """Write calibration.json and reliability.png into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "calibration.json", result.to_dict())
    plot_reliability(probs, out / "reliability.png")
    return out


def apply_calibration(clf: Any, result: CalibrationResult, data: Any = None, batch_size: int = 64) -> bool:
    """Record ``result`` in ``clf``'s card; set its temperature when scaling helps on held-out halves, else
    remove any earlier one (``result`` was measured against the raw network outputs).

    The card's headline ECE / NLL follow when they were measured on the same split. An ensemble's card also
    holds single-crop numbers, measured under the old temperature: with ``data`` (what :func:`calibrate` was
    given) they are measured again; without it their ECE and NLL, now stale, are removed. Returns whether the
    temperature was set.
    """
    clf.card["calibration"] = result.to_dict()
    if result.helps:
        clf.card["temperature"] = round(result.temperature, 6)
    else:
        clf.card.pop("temperature", None)
    metrics = clf.card.get("metrics")
    if isinstance(metrics, dict) and metrics.get("split") == result.split:
        metrics.update(ece=result.ece_after if result.helps else result.ece_before,
                       nll=result.nll_after if result.helps else result.nll_before)
    single = clf.card.get("metrics_single_crop")
    if isinstance(single, dict) and single.get("split") == result.split:
        if data is None:
            single.pop("ece", None)
            single.pop("nll", None)
        else:
            from ferlab.evaluation.evaluate import evaluate

            single.update(evaluate(clf, data, split=result.split, tta="none", batch_size=batch_size)
                          .summary_metrics())
    return result.helps
