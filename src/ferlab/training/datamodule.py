"""The whole dataset in memory as uint8; batches are sliced by index, never assembled image by image."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from ferlab.data import FaceDataset, clean_training_split, load_dataset, make_sampler
from ferlab.errors import ConfigError, DataError
from ferlab.training.config import ExperimentConfig, expand_path

log = logging.getLogger(__name__)


class IndexedTensors(Dataset):
    """``dataset[list_of_indices]`` returns a whole batch: (images uint8, targets), and with ``with_index`` the
    indices too (offline distillation looks its teacher targets up by them)."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, with_index: bool = False) -> None:
        self.images, self.targets, self.with_index = images, targets, with_index

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: list[int]) -> tuple[torch.Tensor, ...]:
        idx = torch.as_tensor(index)
        return (self.images[idx], self.targets[idx], idx) if self.with_index else (self.images[idx], self.targets[idx])


class EpochSeededSampler(Sampler[int]):
    """Wraps a sampler whose generator is reseeded with ``seed + epoch``, so a resumed run draws the same
    batches as an uninterrupted one."""

    def __init__(self, make: callable, seed: int) -> None:
        self.generator = torch.Generator()
        self.sampler = make(self.generator)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        self.generator.manual_seed(self.seed + self.epoch)
        return iter(self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class FERDataModule(L.LightningDataModule):
    """Loads and cleans the configured dataset once; serves train / val / test batches from memory."""

    def __init__(self, cfg: ExperimentConfig, dataset: FaceDataset | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.dataset = dataset
        self.cleaning: dict[str, int] = {}
        self.region_stats: dict[str, Any] = {}
        self._train_sampler: EpochSeededSampler | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None and getattr(self, "_ready", False):
            return
        d = self.cfg.data
        if self.dataset is None:
            ferplus = expand_path(d.ferplus) if d.ferplus else None
            self.dataset = load_dataset(expand_path(d.path), d.label_set, format=d.format, usages=d.usages,
                                        ferplus=ferplus, ferplus_labels=d.ferplus_blend is None,
                                        val_fraction=d.val_fraction, seed=d.split_seed, size=d.image_size,
                                        grayscale=d.grayscale)
        if d.region:
            from ferlab.data.regions import region_dataset

            self.dataset, self.region_stats = region_dataset(self.dataset, d.region)
        if d.soft_labels and self.dataset.soft_labels is None:
            raise ConfigError("data.soft_labels needs label distributions: set data.ferplus to the FER+ vote file")
        if d.ferplus_blend is not None and (self.dataset.soft_labels is None or d.soft_labels):
            raise ConfigError("data.ferplus_blend mixes FER+ votes into the FER2013 labels: it needs data.ferplus "
                              "(the vote file) and replaces data.soft_labels (set that to false)")
        self.dataset, self.cleaning = clean_training_split(self.dataset, d.drop_blank, d.dedup_train, d.drop_leaks)
        if d.limit:
            keep = np.zeros(len(self.dataset), dtype=bool)
            for split in ("train", "val", "test"):
                keep[np.flatnonzero(self.dataset.splits == split)[: d.limit]] = True
            self.dataset = self.dataset.select(keep)
        for split in ("train", "val"):
            if not self.dataset.has_split(split):
                raise DataError(f"{self.dataset.source} has no '{split}' images after loading and cleaning; "
                                f"check data.path, data.usages and data.limit.")
        self._ready = True

    def split(self, name: str) -> FaceDataset:
        return self.dataset.split(name)

    def _targets(self, ds: FaceDataset) -> torch.Tensor:
        blend = self.cfg.data.ferplus_blend
        if blend is not None:
            one_hot = torch.nn.functional.one_hot(ds.labels, ds.num_classes).float()
            return (1 - blend) * one_hot + blend * ds.soft_labels
        if self.cfg.data.soft_labels:
            return ds.soft_labels
        return ds.labels

    def class_index(self, name: str) -> int:
        names = self.dataset.class_names
        if name not in names:
            raise ConfigError(f"loss.oversample names class '{name}', which is not in {', '.join(names)}")
        return names.index(name)

    def train_dataloader(self) -> DataLoader:
        train = self.split("train")
        loss = self.cfg.loss
        labels = train.labels.numpy()
        if loss.sampler == "none":
            def make(g: torch.Generator) -> Sampler:
                return RandomSampler(range(len(train)), generator=g)
        else:
            oversample = {self.class_index(k): v for k, v in loss.oversample.items()}

            def make(g: torch.Generator) -> Sampler:
                return make_sampler(labels, train.num_classes, loss.sampler, oversample, generator=g)
        self._train_sampler = EpochSeededSampler(make, self.cfg.seed)
        if self.trainer is not None:
            self._train_sampler.set_epoch(self.trainer.current_epoch)
        batches = BatchSampler(self._train_sampler, self.cfg.trainer.batch_size, drop_last=len(train) > self.cfg.trainer.batch_size)
        return DataLoader(IndexedTensors(train.images, self._targets(train), with_index=True), sampler=batches,
                          batch_size=None)

    def _eval_loader(self, split: str) -> DataLoader:
        ds = self.split(split)
        batches = BatchSampler(SequentialSampler(range(len(ds))), self.cfg.trainer.eval_batch_size, drop_last=False)
        return DataLoader(IndexedTensors(ds.images, ds.labels), sampler=batches, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def describe(self) -> dict:
        """What the model was trained on, for the model card."""
        ds = self.dataset
        return {
            "path": self.cfg.data.path, "source": ds.source, "label_set": ds.label_set.name,
            "ferplus": self.cfg.data.ferplus, "soft_labels": self.cfg.data.soft_labels,
            "ferplus_blend": self.cfg.data.ferplus_blend,
            "images": {s: int((ds.splits == s).sum()) for s in ("train", "val", "test") if ds.has_split(s)},
            "removed_from_train": self.cleaning, "skipped_files": len(ds.skipped),
            "file": Path(ds.source).name,
            **({"region_crops": self.region_stats} if self.region_stats else {}),
        }
