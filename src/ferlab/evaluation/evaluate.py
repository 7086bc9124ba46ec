"""``evaluate()``: a model on a dataset split -> an EvaluationResult that prints, plots and saves itself."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferlab.data import FaceDataset, load_dataset
from ferlab.data.splits import canonical_split
from ferlab.errors import DataError
from ferlab.evaluation.metrics import classification_metrics
from ferlab.evaluation.plots import plot_confusion, plot_image_grid
from ferlab.io import atomic_write_json, atomic_write_text
from ferlab.tta import resolve_tta

SUMMARY_KEYS = ("n", "accuracy", "top2_accuracy", "macro_f1", "weighted_f1", "balanced_accuracy", "nll", "ece")


@dataclass
class EvaluationResult:
    """Metrics of one model on one split, with the predictions behind them."""

    metrics: dict[str, Any]
    class_names: tuple[str, ...]
    probs: np.ndarray
    labels: np.ndarray
    images: np.ndarray  # (N, H, W) uint8, for the mistakes gallery
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.metrics["accuracy"]

    def summary_metrics(self) -> dict[str, float]:
        return {k: self.metrics[k] for k in SUMMARY_KEYS}

    def per_class_table(self) -> pd.DataFrame:
        return pd.DataFrame(self.metrics["per_class"]).T[["precision", "recall", "f1", "support"]]

    def summary(self) -> str:
        """A plain-text table: headline metrics then per-class precision / recall / F1."""
        head = "  ".join(f"{k} {self.metrics[k]:.4f}" if k != "n" else f"n {self.metrics[k]}" for k in SUMMARY_KEYS)
        table = self.per_class_table()
        table["support"] = table["support"].astype(int)
        return f"{head}\n{table.to_string(float_format=lambda v: f'{v:.3f}')}"

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        return {**self.info, "class_names": list(self.class_names), **self.metrics}

    def to_markdown(self, title: str = "Evaluation") -> str:
        lines = [f"# {title}", ""]
        lines += [f"- {k}: {v}" for k, v in self.info.items()]
        lines += ["", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {self.metrics[k]:.4f} |" if k != "n" else f"| n | {self.metrics[k]} |" for k in SUMMARY_KEYS]
        lines += ["", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        for name, row in self.metrics["per_class"].items():
            lines.append(f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {row['support']} |")
        lines += ["", "![confusion](confusion_normalized.png)", "", "![mistakes](mistakes.png)", ""]
        return "\n".join(lines)

    def most_confident_mistakes(self, k: int = 32) -> np.ndarray:
        """Indices of the wrong predictions with the highest confidence."""
        pred = self.probs.argmax(1)
        wrong = np.flatnonzero(pred != self.labels)
        return wrong[np.argsort(-self.probs[wrong].max(1))][:k]

    def save(self, out_dir: str | os.PathLike, title: str = "Evaluation") -> Path:
        """Write metrics.json, report.md, confusion PNGs (counts, row-normalised) and mistakes.png."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "metrics.json", self.to_dict())
        cm = np.asarray(self.metrics["confusion_matrix"])
        plot_confusion(cm, self.class_names, out / "confusion.png")
        plot_confusion(cm, self.class_names, out / "confusion_normalized.png", normalize=True)
        idx = self.most_confident_mistakes()
        titles = [f"{self.class_names[self.labels[i]]}->{self.class_names[self.probs[i].argmax()]} "
                  f"{self.probs[i].max():.2f}" for i in idx]
        plot_image_grid(self.images[idx], titles, out / "mistakes.png", title="most confident mistakes (true->predicted)")
        atomic_write_text(out / "report.md", self.to_markdown(title))
        return out


def load_model_data(clf: Any, path: str | os.PathLike) -> FaceDataset:
    """The dataset at ``path`` read as ``clf`` was trained: its label set, and folder / UTKFace images at its
    training image size and channels (CSV faces are always 48x48 grey)."""
    trained = clf.card.get("config", {}).get("data", {})
    return load_dataset(path, clf.label_set, val_fraction=0.0,
                        size=trained.get("image_size", clf.preprocessing.input_size),
                        grayscale=clf.card.get("in_chans", 1) == 1)


def split_of(clf: Any, data: FaceDataset | str | os.PathLike, split: str) -> tuple[FaceDataset, str]:
    """The faces of ``split`` in ``data`` (a FaceDataset or a path read with the model's label set)."""
    name = canonical_split(split)
    if name is None:
        raise DataError(f"unknown split '{split}'; choose train, val, test, or a FER2013 usage (Training, "
                        f"PublicTest, PrivateTest)")
    if not isinstance(data, FaceDataset):
        data = load_model_data(clf, data)
    elif data.label_set.names != clf.label_set.names:
        raise DataError(f"the data's classes {list(data.class_names)} differ from the model's "
                        f"{list(clf.class_names)}; load the data with the model's label set")
    return (data if (data.splits == name).all() else data.split(name)), name


def evaluate(model: Any, data: FaceDataset | str | os.PathLike, split: str = "val", tta: str | None = None,
             batch_size: int = 64) -> EvaluationResult:
    """Evaluate a classifier on one split.

    Args:
        model: a :class:`ferlab.Classifier`, a path / name that :func:`ferlab.load` accepts, or a list of
            them (evaluated as their :class:`ferlab.Ensemble`).
        data: a FaceDataset (the split is taken from it) or a data path (read with the model's label set).
        split: ``train``, ``val``, ``test`` or a FER2013 usage (``PublicTest`` = val, ``PrivateTest`` = test).
        tta: test-time augmentation: ``none``, ``flip``, ``flip-crops`` or ``ten-crop`` (see :mod:`ferlab.tta`);
            None: the one the model's card names (a bundled ensemble's), else none.

    Example:
        >>> r = evaluate("runs/mini_xception/x/model.safetensors", "fer2013.csv", split="PublicTest")  # doctest: +SKIP
        >>> print(r.summary())  # doctest: +SKIP
    """
    from ferlab.classifier import as_classifier

    clf = as_classifier(model)
    tta = resolve_tta(tta, clf.card)
    ds, name = split_of(clf, data, split)
    probs = clf.predict_proba(ds.images, batch_size=batch_size, tta=tta).numpy()
    labels = ds.labels.numpy()
    metrics = classification_metrics(probs, labels, clf.class_names)
    info = {"data": ds.source, "split": name, "tta": tta,
            "model": clf.card.get("architecture", type(clf).__name__), "backend": getattr(clf, "backend", "torch")}
    return EvaluationResult(metrics, clf.class_names, probs, labels, ds.images[:, 0].numpy(), info)
