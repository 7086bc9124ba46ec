"""Figures for explanations: panels of faces and heat maps, class grids, kernels, activations."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ferlab.evaluation.plots import _pyplot, _save
from ferlab.explain.saliency import Explanation


def plot_explanation(e: Explanation, path: str | os.PathLike, titles: list[str] | None = None) -> Path:
    """One row per face: the face, then its heat map over it, titled with the explained class."""
    plt = _pyplot()
    n = len(e.maps)
    fig, axes = plt.subplots(n, 2, figsize=(3.2, 1.7 * n), squeeze=False)
    overlays = e.overlays()
    for i in range(n):
        t = e.targets[i]
        axes[i, 0].imshow(e.faces[i], cmap="gray", vmin=0, vmax=255)
        axes[i, 0].set_title((titles[i] if titles else f"face {i}"), fontsize=7)
        axes[i, 1].imshow(overlays[i])
        axes[i, 1].set_title(f"{e.method}: {e.class_names[t]} {e.probs[i, t]:.2f}", fontsize=7)
        for ax in axes[i]:
            ax.axis("off")
    return _save(fig, path)


def plot_class_grid(explanations: list[Explanation], path: str | os.PathLike) -> Path:
    """One face (row per method) against every class (columns): what drives each class's score."""
    plt = _pyplot()
    e0 = explanations[0]
    cols = len(e0.maps) + 1
    fig, axes = plt.subplots(len(explanations), cols, figsize=(1.5 * cols, 1.7 * len(explanations)), squeeze=False)
    for r, e in enumerate(explanations):
        axes[r, 0].imshow(e.faces[0], cmap="gray", vmin=0, vmax=255)
        axes[r, 0].set_title(e.method, fontsize=7)
        for c, overlay in enumerate(e.overlays(), start=1):
            axes[r, c].imshow(overlay)
            t = e.targets[c - 1]
            axes[r, c].set_title(f"{e.class_names[t]} {e.probs[0, t]:.2f}", fontsize=7)
        for ax in axes[r]:
            ax.axis("off")
    return _save(fig, path)


def plot_maps(maps: np.ndarray, path: str | os.PathLike, titles: list[str] | None = None, cols: int = 8,
              cmap: str | list[str] = "gray", title: str = "") -> Path:
    """A grid of 2-D arrays (kernels, activation maps, maximising images), each scaled on its own; ``cmap``
    is one colour map or one per array."""
    plt = _pyplot()
    n = max(len(maps), 1)
    cols = min(cols, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, m) in enumerate(zip(axes.flat, maps, strict=False)):
        ax.imshow(m, cmap=cmap if isinstance(cmap, str) else cmap[i], interpolation="nearest")
        if titles:
            ax.set_title(titles[i], fontsize=6)
    if title:
        fig.suptitle(title, fontsize=8)
    return _save(fig, path)


def plot_methods_grid(explanations: list[Explanation], path: str | os.PathLike, titles: list[str] | None = None
                      ) -> Path:
    """Faces (rows) against methods (columns): the same faces explained by each method."""
    plt = _pyplot()
    n, cols = len(explanations[0].maps), len(explanations) + 1
    fig, axes = plt.subplots(n, cols, figsize=(1.45 * cols, 1.6 * n), squeeze=False)
    overlays = [e.overlays() for e in explanations]
    e0 = explanations[0]
    for i in range(n):
        t = e0.targets[i]
        axes[i, 0].imshow(e0.faces[i], cmap="gray", vmin=0, vmax=255)
        caption = f"{titles[i]}\n" if titles else ""
        axes[i, 0].set_title(f"{caption}pred {e0.class_names[t]} {e0.probs[i, t]:.2f}", fontsize=6)
        for j, e in enumerate(explanations, start=1):
            axes[i, j].imshow(overlays[j - 1][i])
            if i == 0:
                axes[i, j].set_title(e.method, fontsize=7)
        for ax in axes[i]:
            ax.axis("off")
    return _save(fig, path)
