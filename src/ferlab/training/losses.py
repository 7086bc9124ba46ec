"""One loss for hard labels, soft labels, label smoothing, class weights and focal weighting."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class SoftTargetLoss(nn.Module):
    """Cross-entropy against target distributions (N, C).

    Args:
        class_weights: per-class weights; a sample's weight is its target-weighted class weight, and the
            loss is the weighted mean (as ``F.cross_entropy(weight=...)`` for hard labels).
        label_smoothing: mix targets with the uniform distribution.
        focal_gamma: down-weight easy samples by (1 - p_target) ** gamma (Lin et al. 2017); 0 = off.
    """

    def __init__(self, class_weights: Tensor | None = None, label_smoothing: float = 0.0,
                 focal_gamma: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("class_weights", class_weights if class_weights is not None else None)
        self.label_smoothing = label_smoothing
        self.focal_gamma = focal_gamma

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        if targets.ndim == 1:
            targets = F.one_hot(targets, logits.shape[1]).to(logits.dtype)
        logp = F.log_softmax(logits.float(), dim=1)
        weight_targets = targets
        if self.label_smoothing:
            targets = targets * (1 - self.label_smoothing) + self.label_smoothing / logits.shape[1]
        loss = -(targets * logp).sum(1)
        if self.focal_gamma:
            p_target = (weight_targets * logp.exp()).sum(1)
            loss = loss * (1 - p_target).clamp(min=0).pow(self.focal_gamma)
        if self.class_weights is None:
            return loss.mean()
        w = weight_targets @ self.class_weights.to(logits.dtype)
        return (loss * w).sum() / w.sum().clamp(min=1e-8)
