"""Test-time augmentation: the views of a face batch and the mean of their log-probabilities.

One implementation for inference (``Classifier.logits``) and for validation during training
(``trainer.val_tta``), so a run is selected on exactly the scores its model gives later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: the CLI reads TTA_MODES before it needs torch
    import torch

TTA_MODES = ("none", "flip", "flip-crops", "ten-crop")


def resolve_tta(tta: str | None, card: dict) -> str:
    """``tta``, or when it is None the mode the model card names (``tta``: the views a model was measured
    with, as a bundled ensemble's card says), else ``none``."""
    mode = card.get("tta", "none") if tta is None else tta
    if mode not in TTA_MODES:
        from ferlab.errors import ModelError

        raise ModelError(f"unknown test-time augmentation '{mode}'; choose one of {', '.join(TTA_MODES)}")
    return mode


def tta_views(batch: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """The batch as ``mode`` sees it: itself; with its mirror image ('flip'); with four crops shifted by 1/24
    of the side towards each corner (edges replicated: 2 px at 48 px, 'flip-crops'); and with the mirror
    images of those crops as well ('ten-crop': the centre and four corners, each also flipped, as
    Krizhevsky et al.'s ten-crop, but full-size crops of the padded face)."""
    import torch.nn.functional as F

    views = [batch]
    if mode != "none":
        views.append(batch.flip(-1))
    if mode in ("flip-crops", "ten-crop"):
        pad = max(1, batch.shape[-1] // 24)
        padded = F.pad(batch, (pad, pad, pad, pad), mode="replicate")
        size = batch.shape[-1]
        for dy, dx in ((0, 0), (0, 2 * pad), (2 * pad, 0), (2 * pad, 2 * pad)):
            crop = padded[..., dy:dy + size, dx:dx + size]
            views += [crop, crop.flip(-1)] if mode == "ten-crop" else [crop]
    return views


def mean_log_probs(net: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, mode: str,
                   temperature: float = 1.0) -> torch.Tensor:
    """Log-probabilities averaged over the views of ``mode`` (a mean in log space: no longer normalised)."""
    import torch
    import torch.nn.functional as F

    views = tta_views(batch, mode)
    return torch.stack([F.log_softmax(net(v).float() / temperature, 1) for v in views]).mean(0)
