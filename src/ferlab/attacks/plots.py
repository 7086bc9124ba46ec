"""Figures of the scaling-attack report, written atomically as PNG."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ferlab.attacks.defend import DEFENCES
from ferlab.evaluation.plots import _pyplot, _save


def plot_attack_grid(examples: list[dict[str, Any]], path: str | os.PathLike, method: str) -> Path:
    """One row per pair: source | attack image | the method's downscale of it | target."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(examples), 4, figsize=(8, 2.2 * len(examples)), squeeze=False)
    for row, ex in zip(axes, examples, strict=True):
        panels = [(ex["source"], f"source ({ex['source_label']})"), (ex["image"], "attack image"),
                  (ex["downscaled"], f"{method} -> model: {ex['predicted']}"), (ex["target"], f"target ({ex['target_label']})")]
        for ax, (img, title) in zip(row, panels, strict=True):
            ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.suptitle(f"scaling attack on {method}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_success(rows: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Fooled / camouflaged / success rate per resize method."""
    plt = _pyplot()
    names = [r["method"] for r in rows]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(names)), 3.8))
    for k, (key, colour) in enumerate((("fooled", "#d95f02"), ("camouflaged", "#7570b3"), ("success", "#1b9e77"))):
        ax.bar(x + (k - 1) * 0.27, [r[key] for r in rows], 0.27, label=key, color=colour)
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of pairs")
    ax.legend(fontsize=8)
    ax.set_title("scaling attack per resize method")
    return _save(fig, path)


def plot_defences(defences: dict[str, dict[str, float]], path: str | os.PathLike) -> Path:
    """Heat map: attack success, method crafted for (rows) x defence (columns)."""
    plt = _pyplot()
    methods = list(defences)
    grid = np.array([[defences[m][d] for d in DEFENCES] for m in methods])
    fig, ax = plt.subplots(figsize=(5.5, 0.35 * len(methods) + 1.5))
    im = ax.imshow(grid, cmap="Reds", vmin=0, vmax=1, aspect="auto")
    fig.colorbar(im, ax=ax, fraction=0.05, label="attack success")
    ax.set_xticks(range(len(DEFENCES)), DEFENCES)
    ax.set_yticks(range(len(methods)), methods, fontsize=8)
    for i in range(len(methods)):
        for j in range(len(DEFENCES)):
            ax.text(j, i, f"{grid[i, j]:.0%}", ha="center", va="center", fontsize=7,
                    color="white" if grid[i, j] > 0.5 else "black")
    ax.set_title("attack success under each defence")
    return _save(fig, path)


def plot_roc(clean: dict[str, list[float]], attacks: dict[str, dict[str, list[float]]], path: str | os.PathLike
             ) -> Path:
    """ROC curve per detector, all reached attacks pooled against the clean sources."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    for det, neg in clean.items():
        pos = [s for scores in attacks[det].values() for s in scores]
        if not pos or not neg:
            continue
        thresholds = np.unique(np.concatenate([neg, pos]))[::-1]
        tpr = [0.0] + [float(np.mean(np.asarray(pos) >= t)) for t in thresholds]
        fpr = [0.0] + [float(np.mean(np.asarray(neg) >= t)) for t in thresholds]
        ax.plot(fpr, tpr, label=det)
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false-positive rate (clean)")
    ax.set_ylabel("true-positive rate (attacks)")
    ax.legend(fontsize=8)
    ax.set_title("scaling-attack detectors")
    return _save(fig, path)
