"""The interface every ferlab network has: features, head, classifier reset."""

from __future__ import annotations

from torch import Tensor, nn


class FERNet(nn.Module):
    """A network split into ``features`` (image -> feature map or vector) and ``head`` (-> logits).

    ``forward_features`` / ``forward_head`` let saliency, fine-tuning and feature extraction work the
    same way on every model. Subclasses set ``features``, ``head`` and ``reference``.
    """

    features: nn.Module
    head: nn.Module
    reference: str = ""  # where the architecture comes from, and its reported parameter count
    input_size: int = 48

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Logits from features; with ``pre_logits`` the input of the last layer instead."""
        if pre_logits:
            return self.head[:-1](x) if isinstance(self.head, nn.Sequential) else x
        return self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head[-1] if isinstance(self.head, nn.Sequential) else self.head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last layer with a fresh one of ``num_classes`` outputs (fine-tuning)."""
        last = self.get_classifier()
        if isinstance(last, nn.Linear):
            new = nn.Linear(last.in_features, num_classes)
        elif isinstance(last, nn.Conv2d):
            new = nn.Conv2d(last.in_channels, num_classes, last.kernel_size, padding=last.padding)
        else:
            raise TypeError(f"cannot reset a classifier of type {type(last).__name__}")
        if isinstance(self.head, nn.Sequential):
            self.head[-1] = new
        else:
            self.head = new


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with requires_grad), as Keras / torchinfo count them.

    BatchNorm running statistics count (Keras lists them as non-trainable parameters) unless
    ``trainable_only``.
    """
    params = sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
    if not trainable_only:
        params += sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
        params += sum(b.numel() for name, b in model.named_buffers() if name.endswith("fixed_weight"))
    return params


def count_macs(model: nn.Module, in_chans: int = 1, size: int = 48) -> int:
    """Multiply-accumulates for one ``in_chans`` x ``size`` x ``size`` face (convolutions and matmuls, as
    torch's FLOP counter sees them; FLOPs are about twice this)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, in_chans, size, size, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops() // 2)
