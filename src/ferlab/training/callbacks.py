"""Callbacks and plugins: atomic checkpoint files and a plain-text progress log for non-terminals."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ferlab.io import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file and renames it, so an interrupted save never leaves a
    truncated ``last.ckpt``: the previous one stays valid."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


class EpochLog(L.Callback):
    """One line per epoch on stdout: for logs of background runs and CI, where a live bar is noise."""

    def __init__(self) -> None:
        self.start = 0.0
        self.validated = False

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()
        self.validated = False

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.validated = self.validated or not trainer.sanity_checking

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # here, after the epoch's validation, the epoch's mean train_loss exists (at validation end the
        # metrics still hold the previous epoch's); epochs before trainer.validate_from get a line too
        self._print(trainer)

    def _print(self, trainer: L.Trainer) -> None:
        m = {k: float(v) for k, v in trainer.callback_metrics.items()}
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        keys = ("train_loss", "val_loss", "val_acc", "val_f1") if self.validated else ("train_loss",)
        parts += [f"{k} {m[k]:.4f}" for k in keys if k in m]
        parts.append(f"lr {lr:.2e}")
        parts.append(f"{time.perf_counter() - self.start:.0f}s")
        print("  ".join(parts), file=sys.stdout, flush=True)


class TrainingClock(L.Callback):
    """Wall time of a run summed over its segments: each checkpoint stores the seconds trained up to it, and
    ``--resume`` starts counting from there, so a paused run reports its whole training time, not the last leg.

    Time between the last checkpoint and an interruption is not counted: the resumed run redoes that work.
    Lightning's ``Timer`` persists its time too, but only from ``on_train_start``: it would leave out the setup
    inside ``Trainer.fit`` (offline teachers scoring the training set), which ``train_seconds`` has always held.
    """

    def __init__(self) -> None:
        self.before = 0.0  # seconds of earlier segments, restored from the checkpoint resumed from
        self._start: float | None = None

    def start(self) -> None:
        """Starts this segment's clock (called just before ``Trainer.fit``, so setup work counts too)."""
        self._start = time.perf_counter()

    @property
    def seconds(self) -> float:
        """Seconds trained so far, earlier segments included."""
        return self.before + (time.perf_counter() - self._start if self._start is not None else 0.0)

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # checkpoints written before this callback existed carry no state: Lightning skips the call for them
        self.before = float(state_dict.get("seconds", 0.0))


class ValidateFrom(L.Callback):
    """No validation before epoch ``first`` (1-based), every epoch from then on.

    Lightning validates when ``(epoch + 1) % check_val_every_n_epoch == 0``; a period past the last epoch
    skips the early ones. When the time budget (``max_time``) stops a run early, the epoch it stops in is
    validated anyway, so a run always ends with a best checkpoint.
    """

    def __init__(self, first: int) -> None:
        self.first = first

    def _set(self, trainer: L.Trainer) -> None:
        skip = trainer.current_epoch + 1 < self.first and not trainer.should_stop
        trainer.check_val_every_n_epoch = trainer.max_epochs + 1 if skip else 1

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._set(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.should_stop:
            self._set(trainer)
