"""The in-memory dataset every reader ends in: uint8 image tensors, labels and split names."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch

from ferlab.errors import DataError
from ferlab.labels import LabelSet

SPLITS = ("train", "val", "test")


@dataclass
class FaceDataset:
    """Face crops held in memory.

    Attributes:
        images: (N, C, H, W) uint8 tensor (C = 1 for grey).
        labels: (N,) int64 class indices in ``label_set``.
        splits: (N,) array of split names: ``train``, ``val`` or ``test``.
        label_set: the classes the labels index.
        soft_labels: optional (N, num_classes) float32 label distributions (e.g. FER+ votes).
        meta: optional per-row table (source file, row number, age, ...), same order as images.
        source: where the data came from.
        skipped: (item, reason) for every input that was skipped while reading (corrupt files, ...).
    """

    images: torch.Tensor
    labels: torch.Tensor
    splits: np.ndarray
    label_set: LabelSet
    soft_labels: torch.Tensor | None = None
    meta: pd.DataFrame | None = None
    source: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DataError(f"images must be an (N, C, H, W) uint8 tensor, got {tuple(self.images.shape)} "
                            f"{self.images.dtype}")
        for name, arr in (("labels", self.labels), ("splits", self.splits), ("soft_labels", self.soft_labels),
                          ("meta", self.meta)):
            if arr is not None and len(arr) != n:
                raise DataError(f"{name} has {len(arr)} rows but there are {n} images")

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        counts = {s: int((self.splits == s).sum()) for s in SPLITS if (self.splits == s).any()}
        return (f"FaceDataset({len(self)} images {tuple(self.images.shape[1:])}, "
                f"label_set={self.label_set.name}, splits={counts}, source={self.source!r})")

    @property
    def num_classes(self) -> int:
        return self.label_set.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.label_set.names

    def select(self, index: np.ndarray | torch.Tensor) -> FaceDataset:
        """A new dataset with the rows given by a boolean mask or an index array."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        t_index = torch.from_numpy(index.astype(np.int64))
        return replace(
            self,
            images=self.images[t_index],
            labels=self.labels[t_index],
            splits=self.splits[index],
            soft_labels=None if self.soft_labels is None else self.soft_labels[t_index],
            meta=None if self.meta is None else self.meta.iloc[index].reset_index(drop=True),
        )

    def split(self, name: str) -> FaceDataset:
        """The rows of one split (``train``, ``val`` or ``test``)."""
        if name not in SPLITS:
            raise DataError(f"unknown split '{name}'; choose one of {', '.join(SPLITS)} "
                            f"(FER2013 usages: Training=train, PublicTest=val, PrivateTest=test)")
        mask = self.splits == name
        if not mask.any():
            present = sorted(set(self.splits.tolist()))
            raise DataError(f"split '{name}' is empty in {self.source or 'this dataset'}; it has: "
                            f"{', '.join(present) or 'no rows'}")
        return self.select(mask)

    def has_split(self, name: str) -> bool:
        return bool((self.splits == name).any())

    def class_counts(self) -> np.ndarray:
        """Images per class, shape (num_classes,)."""
        return np.bincount(self.labels.numpy(), minlength=self.num_classes)

    def counts_table(self) -> pd.DataFrame:
        """Images per split (rows) and class (columns), with totals."""
        table = pd.DataFrame(0, index=[s for s in SPLITS if self.has_split(s)], columns=list(self.class_names))
        for s in table.index:
            table.loc[s] = np.bincount(self.labels[torch.from_numpy(self.splits == s)].numpy(),
                                       minlength=self.num_classes)
        table["total"] = table.sum(axis=1)
        table.loc["total"] = table.sum(axis=0)
        return table
