"""Plots of evaluation results and training curves, written atomically as PNG."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ferlab.io import atomic_save


def _pyplot():
    # Agg: plots are files, and importing pyplot must not need a display
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    plt = _pyplot()
    atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png"))
    plt.close(fig)
    return Path(path)


def plot_confusion(cm: np.ndarray, class_names: list[str] | tuple[str, ...], path: str | os.PathLike,
                   normalize: bool = False, title: str = "") -> Path:
    """Confusion matrix heat map (counts, or rows normalised to recall)."""
    plt = _pyplot()
    cm = np.asarray(cm, dtype=np.float64)
    shown = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or ("confusion matrix (row-normalised)" if normalize else "confusion matrix (counts)"))
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            text = f"{shown[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if shown[i, j] > shown.max() / 2 else "black")
    return _save(fig, path)


def plot_image_grid(images: np.ndarray, titles: list[str], path: str | os.PathLike, cols: int = 8,
                    title: str = "") -> Path:
    """Grey faces (N, H, W) uint8 in a grid with a caption each."""
    plt = _pyplot()
    n = max(len(images), 1)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, caption in zip(axes.flat, images, titles, strict=False):
        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
        ax.set_title(caption, fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_class_histogram(table: pd.DataFrame, path: str | os.PathLike, title: str = "images per class") -> Path:
    """Bar chart of a split x class counts table (as :meth:`FaceDataset.counts_table` returns)."""
    plt = _pyplot()
    table = table.drop(index="total", errors="ignore").drop(columns="total", errors="ignore")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = np.arange(len(table.columns))
    width = 0.8 / max(len(table.index), 1)
    for k, split in enumerate(table.index):
        ax.bar(x + k * width, table.loc[split].to_numpy(), width, label=split)
    ax.set_xticks(x + width * (len(table.index) - 1) / 2, table.columns, rotation=30, ha="right")
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def plot_training_curves(metrics_csv: str | os.PathLike | list, path: str | os.PathLike) -> Path | None:
    """Loss and accuracy per epoch from Lightning CSV logs (several after resumes, later ones win).

    Returns None when no log has any epoch.
    """
    files = [Path(f) for f in (metrics_csv if isinstance(metrics_csv, list) else [metrics_csv])]
    logs = [pd.read_csv(f) for f in files if f.is_file()]
    log = pd.concat(logs, ignore_index=True) if logs else pd.DataFrame()
    if "epoch" not in log or log.empty:
        return None
    per_epoch = log.groupby("epoch").last()
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    for col, label in (("train_loss", "train"), ("val_loss", "val")):
        if col in per_epoch:
            ax1.plot(per_epoch.index + 1, per_epoch[col], marker=".", label=label)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    for col in ("val_acc", "val_f1"):
        if col in per_epoch:
            ax2.plot(per_epoch.index + 1, per_epoch[col], marker=".", label=col)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("score")
    if ax2.lines:  # a run stopped before trainer.validate_from has no validation scores
        ax2.legend()
    return _save(fig, path)


def plot_emotion_timeline(timeline: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Mean probability of each emotion over the faces of each frame, against time."""
    plt = _pyplot()
    from ferlab.results import CLASS_COLOURS

    classes = [c for c in CLASS_COLOURS if c in timeline.columns]
    per_frame = timeline.groupby("time_s")[classes].mean()
    fig, ax = plt.subplots(figsize=(9, 3.5))
    for c in classes:
        ax.plot(per_frame.index, per_frame[c], label=c, color=np.array(CLASS_COLOURS[c]) / 255)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mean probability")
    ax.set_ylim(0, 1)
    ax.legend(ncol=len(classes), fontsize=7, loc="upper center")
    return _save(fig, path)
