"""``inspect_dataset``: counts, near-blank images, duplicates and leaks, with a sample grid and histogram."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ferlab.data.cleaning import BLANK_STD, DuplicateReport, find_duplicates, near_blank
from ferlab.data.dataset import FaceDataset
from ferlab.io import atomic_write_json


@dataclass
class DatasetInspection:
    """What :func:`inspect_dataset` found."""

    dataset: FaceDataset
    counts: pd.DataFrame
    blank_indices: np.ndarray
    duplicates: DuplicateReport

    def to_dict(self) -> dict:
        return {
            "source": self.dataset.source,
            "images": len(self.dataset),
            "image_shape": list(self.dataset.images.shape[1:]),
            "label_set": self.dataset.label_set.name,
            "counts": self.counts.to_dict(orient="index"),
            "near_blank": {"threshold_std": BLANK_STD, "count": int(len(self.blank_indices)),
                           "rows": self.blank_indices.tolist()},
            "duplicates": self.duplicates.to_dict(),
            "skipped_files": [{"file": f, "reason": r} for f, r in self.dataset.skipped],
            **({"soft_label_agreement": self.soft_label_agreement()} if self.dataset.soft_labels is not None else {}),
        }

    def soft_label_agreement(self) -> dict[str, float]:
        """Per split, the share of images whose soft labels' top class is their label (e.g. FER+ votes vs FER2013)."""
        ds = self.dataset
        same = (ds.soft_labels.argmax(1) == ds.labels).numpy()
        return {s: round(float(same[ds.splits == s].mean()), 4) for s in ("train", "val", "test") if ds.has_split(s)}

    def summary(self) -> str:
        d = self.duplicates.to_dict()
        agreement = []
        if self.dataset.soft_labels is not None:
            shares = ", ".join(f"{s} {v:.1%}" for s, v in self.soft_label_agreement().items())
            agreement = [f"soft labels' top class = label: {shares}"]
        leaks = ", ".join(f"{n} {s} images also in train" for s, n in d["images_also_in_train"].items()) or "none"
        return "\n".join([
            f"{self.dataset.source}: {len(self.dataset)} images {tuple(self.dataset.images.shape[1:])}, "
            f"label set {self.dataset.label_set.name}",
            self.counts.to_string(),
            f"near-blank images (pixel std < {BLANK_STD}): {len(self.blank_indices)}",
            f"exact duplicates: {d['groups']} groups ({d['duplicate_images']} extra copies), "
            f"{d['conflicting_label_groups']} groups with conflicting labels, {d['cross_split_groups']} across splits",
            f"cross-split leaks: {leaks}",
            f"skipped files: {len(self.dataset.skipped)}",
            *agreement,
        ])

    def __str__(self) -> str:
        return self.summary()

    def save(self, out_dir: str | os.PathLike, samples_per_class: int = 8, seed: int = 0) -> Path:
        """Write summary.json, class_histogram.png and sample_grid.png (``samples_per_class`` per class)."""
        from ferlab.evaluation.plots import plot_class_histogram, plot_image_grid

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "summary.json", self.to_dict())
        plot_class_histogram(self.counts, out / "class_histogram.png", title=f"images per class: {Path(self.dataset.source).name}")
        rng = np.random.default_rng(seed)
        labels = self.dataset.labels.numpy()
        picks, titles = [], []
        for c, name in enumerate(self.dataset.class_names):
            idx = np.flatnonzero(labels == c)
            chosen = rng.choice(idx, size=min(samples_per_class, len(idx)), replace=False) if len(idx) else []
            picks += list(chosen)
            titles += [name] * len(chosen)
        images = self.dataset.images[np.asarray(picks, dtype=np.int64)]
        grid = images[:, 0].numpy() if images.shape[1] == 1 else images.float().mean(1).byte().numpy()
        plot_image_grid(grid, titles, out / "sample_grid.png", cols=samples_per_class,
                        title="random samples per class")
        return out


def inspect_dataset(ds: FaceDataset) -> DatasetInspection:
    """Count images per split and class, and find near-blank images and exact duplicates."""
    return DatasetInspection(ds, ds.counts_table(), np.flatnonzero(near_blank(ds.images)), find_duplicates(ds))
