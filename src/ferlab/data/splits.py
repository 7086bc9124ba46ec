"""Split names and seeded stratified splits."""

from __future__ import annotations

import hashlib

import numpy as np

# how split folders and FER2013 usages map onto ferlab's three split names
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "publictest": "val", "dev": "val",
    "test": "test", "testing": "test", "privatetest": "test",
}


def canonical_split(name: str) -> str | None:
    """``'PublicTest'`` -> ``'val'``; None for a name that is no split."""
    return SPLIT_ALIASES.get(name.strip().lower().replace("_", "").replace("-", ""))


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask choosing ``fraction`` of each class (at least one image of a class that has two).

    The choice depends only on ``labels``, ``fraction`` and ``seed``, so it is reproducible.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        n = int(round(len(idx) * fraction))
        n = max(n, 1) if len(idx) > 1 else 0
        mask[rng.choice(idx, size=n, replace=False)] = True
    return mask


def assign_validation(splits: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Move a stratified ``fraction`` of the train rows to ``val`` when there is no ``val`` split yet."""
    splits = splits.copy()
    if (splits == "val").any():
        return splits
    train = np.flatnonzero(splits == "train")
    if len(train) < 2:
        return splits
    chosen = stratified_holdout(labels[train], fraction, seed)
    splits[train[chosen]] = "val"
    return splits


def hash_split(names: list[str], val_percent: int = 10) -> np.ndarray:
    """``'val'`` for the names whose MD5 hash falls in the first ``val_percent`` of 100 buckets, else ``'train'``.

    The split depends on nothing but the file name: adding, removing or reordering files never moves an
    image between train and val, and anyone can recompute it (``int(md5(name)[:8], 16) % 100 < val_percent``).
    """
    if not 0 <= val_percent < 100:
        raise ValueError(f"val_percent must be in [0, 100), got {val_percent}")
    buckets = np.array([int(hashlib.md5(n.encode()).hexdigest()[:8], 16) % 100 for n in names], dtype=np.int64)
    return np.where(buckets < val_percent, "val", "train").astype(object)
