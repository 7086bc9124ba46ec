"""Model zoo: ``create_model(name, num_classes, in_chans, **kwargs)`` over a registry."""

from ferlab.models import backbones, deep, reference  # noqa: F401  (register the networks)
from ferlab.models.base import FERNet, count_macs, count_parameters
from ferlab.models.registry import create_model, is_model, list_models, register_model

__all__ = ["FERNet", "count_macs", "count_parameters", "create_model", "is_model", "list_models", "register_model"]
