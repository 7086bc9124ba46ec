"""Saliency over a dataset split: the average map per class, and the most confident mistakes."""

from __future__ import annotations

import numpy as np

from ferlab.data import FaceDataset
from ferlab.explain.saliency import Explanation, explain


def class_average_saliency(classifier, dataset: FaceDataset, method: str = "gradcam", per_class: int = 64,
                           seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean saliency map (for the true class) of up to ``per_class`` faces of each class.

    Returns:
        maps (C, H, W) and the mean face of the same images (C, H, W), for reading the maps against.
    """
    rng = np.random.default_rng(seed)
    labels = dataset.labels.numpy()
    maps, means = [], []
    for c in range(len(classifier.class_names)):
        idx = np.flatnonzero(labels == c)
        idx = rng.choice(idx, size=min(per_class, len(idx)), replace=False) if len(idx) else idx
        if len(idx) == 0:
            size = classifier.preprocessing.input_size
            maps.append(np.zeros((size, size)))
            means.append(np.zeros((size, size)))
            continue
        e = explain(classifier, dataset.images[idx], method, target=c)
        maps.append(e.maps.mean(0))
        means.append(e.faces.mean(0))
    return np.stack(maps), np.stack(means)


def confident_mistakes(classifier, dataset: FaceDataset, method: str = "gradcam", k: int = 12
                       ) -> tuple[Explanation, list[str]]:
    """Saliency (for the wrongly predicted class) of the ``k`` most confident mistakes, with captions."""
    probs = classifier.predict_proba(dataset.images).numpy()
    pred = probs.argmax(1)
    labels = dataset.labels.numpy()
    wrong = np.flatnonzero(pred != labels)
    worst = wrong[np.argsort(-probs[wrong].max(1))][:k]
    e = explain(classifier, dataset.images[worst], method)
    names = classifier.class_names
    captions = [f"true {names[labels[i]]}" for i in worst]
    return e, captions
