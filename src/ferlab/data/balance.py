"""Class imbalance: loss weights and samplers."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

from ferlab.errors import ConfigError

ClassWeighting = Literal["none", "inverse", "balanced", "effective"]


def class_weights(labels: np.ndarray, num_classes: int, method: ClassWeighting = "inverse",
                  beta: float = 0.999) -> torch.Tensor:
    """Per-class loss weights.

    Args:
        method: ``inverse`` = N / N_i (as in the reference reports), ``balanced`` = N / (C * N_i)
            (scikit-learn's), ``effective`` = (1 - beta) / (1 - beta**N_i) (Cui et al. 2019) rescaled to
            mean 1, ``none`` = all ones.
    """
    counts = np.bincount(np.asarray(labels), minlength=num_classes).astype(np.float64)
    safe = np.maximum(counts, 1)
    if method == "none":
        w = np.ones(num_classes)
    elif method == "inverse":
        w = counts.sum() / safe
    elif method == "balanced":
        w = counts.sum() / (num_classes * safe)
    elif method == "effective":
        w = (1 - beta) / (1 - np.power(beta, safe))
        w = w / w.mean()
    else:
        raise ConfigError(f"unknown class weighting '{method}'; choose none, inverse, balanced or effective")
    w[counts == 0] = 0.0
    return torch.tensor(w, dtype=torch.float32)


def sample_weights(labels: np.ndarray, num_classes: int, mode: str,
                   oversample: dict[int, float] | None = None) -> np.ndarray:
    """Per-image sampling weights.

    ``weighted`` draws every class equally often; ``oversample`` repeats the given classes
    ``factor`` times (e.g. {disgust: 5}), leaving the others as they are.
    """
    labels = np.asarray(labels)
    if mode == "weighted":
        counts = np.maximum(np.bincount(labels, minlength=num_classes), 1)
        return 1.0 / counts[labels]
    if mode == "oversample":
        factors = np.ones(num_classes)
        for cls, factor in (oversample or {}).items():
            factors[cls] = factor
        return factors[labels]
    raise ConfigError(f"unknown sampler '{mode}'; choose none, weighted or oversample")


def make_sampler(labels: np.ndarray, num_classes: int, mode: str, oversample: dict[int, float] | None = None,
                 generator: torch.Generator | None = None) -> WeightedRandomSampler:
    """A sampler drawing one epoch's worth of images with replacement by :func:`sample_weights`.

    With ``oversample`` an epoch grows by the repeated images, as physical oversampling would.
    """
    weights = sample_weights(labels, num_classes, mode, oversample)
    num_samples = len(labels) if mode == "weighted" else int(round(weights.sum()))
    return WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), num_samples=num_samples,
                                 replacement=True, generator=generator)
