"""Model registry: ``@register_model`` functions, plus name patterns (the block-coded family)."""

from __future__ import annotations

import re
from collections.abc import Callable

from torch import nn

from ferlab.errors import ModelError, unknown_choice

_MODELS: dict[str, Callable[..., nn.Module]] = {}
# (regex, factory(name, **kwargs), example names listed by list_models)
_PATTERNS: list[tuple[re.Pattern, Callable[..., nn.Module], tuple[str, ...]]] = []


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model factory under its function name (``def mini_xception(...)`` -> 'mini_xception')."""
    if fn.__name__ in _MODELS:
        raise ModelError(f"model '{fn.__name__}' is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def register_model_pattern(pattern: str, examples: tuple[str, ...]) -> Callable:
    """Register a factory for every name matching ``pattern``; ``examples`` appear in :func:`list_models`."""

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _PATTERNS.append((re.compile(pattern), fn, examples))
        return fn

    return decorator


def list_models(filter: str = "") -> list[str]:
    """Registered model names (pattern families by their example names), optionally containing ``filter``."""
    names = set(_MODELS) | {e for _, _, examples in _PATTERNS for e in examples}
    return sorted(n for n in names if filter in n)


def is_model(name: str) -> bool:
    return name in _MODELS or any(p.fullmatch(name) for p, _, _ in _PATTERNS)


def create_model(name: str, num_classes: int = 7, in_chans: int = 1, **kwargs) -> nn.Module:
    """Build a registered model.

    Args:
        name: a registered name (see :func:`list_models`) or a block code such as ``111123``.
        num_classes: size of the output layer.
        in_chans: input channels (1 for grey faces).
        **kwargs: architecture arguments of that model.

    Raises:
        ModelError: unknown name (with the closest names), or arguments the model does not take.
    """
    if name in _MODELS:
        factory, args = _MODELS[name], (num_classes, in_chans)
    else:
        matching = [fn for pattern, fn, _ in _PATTERNS if pattern.fullmatch(name)]
        if not matching:
            raise ModelError(unknown_choice("model", name, list_models()))
        # pattern families take their name as the first argument (the block code)
        factory, args = matching[0], (name, num_classes, in_chans)
    try:
        model = factory(*args, **kwargs)
    except TypeError as exc:
        raise ModelError(f"model '{name}' does not accept {sorted(kwargs)}: {exc}") from exc
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    return model
