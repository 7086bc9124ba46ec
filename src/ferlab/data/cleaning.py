"""Find near-blank images and exact duplicates (within and across splits) and clean the training split."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch

from ferlab.data.dataset import FaceDataset

# FER2013's blank images are a flat grey or black; real faces have a pixel std of 20-80
BLANK_STD = 3.0


def near_blank(images: torch.Tensor, std_threshold: float = BLANK_STD) -> np.ndarray:
    """Mask of images whose pixel standard deviation is below ``std_threshold`` (flat images)."""
    std = images.flatten(1).float().std(dim=1)
    return (std < std_threshold).numpy()


def image_hashes(images: torch.Tensor) -> np.ndarray:
    """A content hash per image (identical pixels, identical hash)."""
    flat = images.flatten(1).contiguous().numpy()
    return np.array([hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest() for row in flat], dtype=object)


@dataclass
class DuplicateGroup:
    """Rows holding the same pixels."""

    indices: list[int]
    splits: list[str]
    labels: list[int]

    @property
    def conflicting(self) -> bool:
        return len(set(self.labels)) > 1

    @property
    def cross_split(self) -> bool:
        return len(set(self.splits)) > 1


@dataclass
class DuplicateReport:
    groups: list[DuplicateGroup] = field(default_factory=list)

    @property
    def n_conflicting(self) -> int:
        return sum(g.conflicting for g in self.groups)

    @property
    def n_cross_split(self) -> int:
        return sum(g.cross_split for g in self.groups)

    def leaks(self, into: str = "train") -> dict[str, int]:
        """Per other split, how many of its images also occur in ``into``."""
        out: dict[str, int] = {}
        for g in self.groups:
            if into in g.splits:
                for s in set(g.splits) - {into}:
                    out[s] = out.get(s, 0) + sum(1 for x in g.splits if x == s)
        return out

    def to_dict(self) -> dict:
        return {"groups": len(self.groups), "duplicate_images": sum(len(g.indices) - 1 for g in self.groups),
                "conflicting_label_groups": self.n_conflicting, "cross_split_groups": self.n_cross_split,
                "images_also_in_train": self.leaks("train")}


def find_duplicates(ds: FaceDataset) -> DuplicateReport:
    """Group the rows of ``ds`` that hold exactly the same pixels."""
    hashes = image_hashes(ds.images)
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(counts)[:-1]
    labels = ds.labels.numpy()
    groups = [
        DuplicateGroup(idx.tolist(), ds.splits[idx].tolist(), labels[idx].tolist())
        for idx in np.split(order, bounds) if len(idx) > 1
    ]
    return DuplicateReport(groups)


def clean_training_split(ds: FaceDataset, drop_blank: bool = False, dedup: bool = False,
                         drop_leaks: bool = False) -> tuple[FaceDataset, dict[str, int]]:
    """Remove near-blank images, duplicates and images also in val/test from the train split only.

    Validation and test rows are never touched, so evaluation stays comparable with published numbers.

    Returns:
        The cleaned dataset and how many training rows each rule removed.
    """
    train = ds.splits == "train"
    drop = np.zeros(len(ds), dtype=bool)
    removed = {"near_blank": 0, "duplicates": 0, "leaks": 0}
    if drop_blank:
        blank = near_blank(ds.images) & train
        removed["near_blank"] = int(blank.sum())
        drop |= blank
    if dedup or drop_leaks:
        for g in find_duplicates(ds).groups:
            idx = np.asarray(g.indices)
            in_train = idx[train[idx] & ~drop[idx]]
            if drop_leaks and g.cross_split and len(in_train):
                removed["leaks"] += len(in_train)
                drop[in_train] = True
            elif dedup and len(in_train) > 1:
                removed["duplicates"] += len(in_train) - 1
                drop[in_train[1:]] = True
    return ds.select(~drop), removed
