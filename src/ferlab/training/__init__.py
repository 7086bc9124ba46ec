"""Training: configs, the Lightning module and data module, and the ``train()`` runner."""

from ferlab.training.config import ExperimentConfig, load_config
from ferlab.training.train import TrainResult, train

__all__ = ["ExperimentConfig", "TrainResult", "load_config", "train"]
