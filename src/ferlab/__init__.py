"""ferlab: facial expression recognition with convolutional networks.

The public API is small and imported lazily, so ``import ferlab`` does no work:

    >>> import ferlab
    >>> ferlab.list_models()[:3]  # doctest: +SKIP
    >>> clf = ferlab.load("runs/mini_xception/<run>/model.safetensors")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "load": "ferlab.classifier",
    "Classifier": "ferlab.classifier",
    "Ensemble": "ferlab.classifier",
    "create_model": "ferlab.models",
    "list_models": "ferlab.models",
    "load_dataset": "ferlab.data",
    "train": "ferlab.training",
    "load_config": "ferlab.training",
    "evaluate": "ferlab.evaluation",
    "get_label_set": "ferlab.labels",
    "bundled_models": "ferlab.classifier",
    "Recognizer": "ferlab.pipeline",
    "Results": "ferlab.results",
    "create_detector": "ferlab.faces",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'ferlab' has no attribute '{name}'")
