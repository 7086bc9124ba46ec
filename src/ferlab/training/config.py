"""Experiment configuration: dataclasses with defaults < YAML file < CLI overrides < keyword arguments.

Unknown keys are rejected with the nearest valid key; values are checked for type and range.

Example:
    >>> cfg = load_config("configs/mini_xception.yaml", ["optim.lr=0.01", "trainer.epochs=5"])  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ferlab.errors import ConfigError, suggest


@dataclass
class DataConfig:
    """Where the data comes from and how the training split is cleaned."""

    path: str = "${FERLAB_DATA:-../shared/data}/fer2013/fer2013.csv.gz"
    format: Literal["csv", "folder", "utkface"] | None = None
    label_set: str = "fer7"
    ferplus: str | None = None  # FER+ vote file: labels become the majority vote
    soft_labels: bool = False  # with ferplus: train on the vote distribution instead of the majority
    # with ferplus: keep the FER2013 labels (to select and evaluate on) and train towards
    # (1 - ferplus_blend) x the one-hot FER2013 label + ferplus_blend x the FER+ vote distribution
    ferplus_blend: float | None = None
    usages: list[str] | None = None
    val_fraction: float = 0.1  # held out (stratified, seeded) only when the data has no validation split
    split_seed: int = 0
    drop_blank: bool = True
    dedup_train: bool = False
    drop_leaks: bool = False  # drop training images that also occur in val / test
    limit: int | None = None  # keep at most this many images per split (smoke tests, quick profiles)
    image_size: int = 48
    grayscale: bool = True  # folder / UTKFace images as grey (False: RGB, a 3-channel network input)
    region: Literal["face", "mouth"] | None = None  # replace faces by landmark crops (ferlab.data.regions)


@dataclass
class PreprocessConfig:
    """Recorded with the model; see :class:`ferlab.data.Preprocessing`."""

    input_size: int = 48
    equalize: bool = False
    normalize: Literal["none", "per_image", "dataset", "symmetric"] = "per_image"


@dataclass
class AugmentConfig:
    """Batched augmentation on the training device; see :class:`ferlab.data.BatchAugment`."""

    rotate: float = 10.0
    shift: float = 0.1
    shear: float = 0.0
    zoom: float = 0.1
    hflip: bool = True
    # with hflip: mirror a fixed half of the faces in even epochs and the other half in odd ones, instead of a
    # random half in each (see ferlab.data.alternating_flips)
    alternate_flips: bool = False
    erasing: float = 0.0
    mixup: float = 0.0  # Beta(alpha, alpha) parameter; 0 = off
    cutmix: float = 0.0
    mix_prob: float = 0.5  # share of batches that get mixup / cutmix
    # progressive resizing (fast.ai / FFCV): train at this side first, growing linearly (in steps of 4 px) to
    # preprocess.input_size by epoch resize_until; smaller early epochs cost less. Validation is always full size.
    resize_from: int | None = None
    resize_until: int = 0


@dataclass
class ModelConfig:
    name: str = "mini_xception"
    kwargs: dict[str, Any] = field(default_factory=dict)
    # start from the weights of an earlier run (model file, run folder or .ckpt): layers whose names and shapes
    # match are copied, e.g. to unfreeze a backbone in stages (frozen -> last blocks -> all) with smaller LRs
    init_from: str | None = None


@dataclass
class LossConfig:
    label_smoothing: float = 0.0
    class_weights: Literal["none", "inverse", "balanced", "effective"] = "none"
    focal_gamma: float = 0.0
    sampler: Literal["none", "weighted", "oversample"] = "none"
    oversample: dict[str, float] = field(default_factory=dict)  # class name -> repeat factor
    # knowledge distillation (Hinton et al. 2015): a trained model (bundled name, file or run folder), or a list
    # of them (an ensemble: their log-probabilities are averaged; an ensemble file adds its members), whose
    # softened outputs the student also matches
    distill_from: str | list[str] | None = None
    distill_weight: float = 0.5  # share of the distillation term; the label loss gets the rest
    distill_temperature: float = 2.0
    distill_tta: Literal["none", "flip", "flip-crops", "ten-crop"] = "flip"  # teacher averaged over these views
    # online, on CPU: the teachers run with their BatchNorms folded into the convs, as ferlab.Classifier runs them
    # (the same function, faster); off by default, since the rounding differs a little from the unfolded
    # teachers that taught the bundled models
    distill_folded: bool = False
    # false: the teachers score every augmented batch (they must take the student's input); true: they score
    # the unaugmented training images once, at the start of the run, as ferlab.load gives them (any input size
    # or preprocessing), and every augmented view of an image learns from that. Far cheaper for big ensembles
    # and many-view TTA; the targets no longer follow the augmentation, which costs accuracy (README, Bundled model)
    # unless distill_views is set
    distill_offline: bool = False
    # offline only: N > 0 draws N augmented views of every training image once (augment.*, from the run's seed),
    # the teachers score those, and epoch e trains on view e mod N, so the student sees exactly the image its
    # targets were scored on (the consistent teacher of Beyer et al. 2022, stored as in Shen & Xing's FKD, 2022).
    # Costs N times the scoring, and N times the training images' memory (uint8)
    distill_views: int = 0
    # the file of those views' scores: read when it holds the same teachers, views and faces, written otherwise
    # (so several students share one scoring); null: distill_views.pt in the run folder
    distill_cache: str | None = None


@dataclass
class OptimConfig:
    name: Literal["sgd", "adam", "adamw", "nadam"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    # one fused kernel for the whole update (sgd, adam, adamw) instead of a loop over the tensors; off by
    # default, since its rounding differs a little from the loop that trained the bundled models
    fused: bool = False


@dataclass
class SchedulerConfig:
    name: Literal["none", "plateau", "cosine", "onecycle"] = "plateau"
    patience: int = 5  # plateau: epochs without improvement before the LR drops
    factor: float = 0.1  # plateau: LR multiplier
    min_lr: float = 1e-6
    warmup_epochs: int = 0  # cosine: linear warm-up
    pct_start: float = 0.25  # onecycle: share of steps spent rising


@dataclass
class TrainerConfig:
    epochs: int = 50
    batch_size: int = 64
    eval_batch_size: int = 512
    early_stopping: int | None = 15  # patience in epochs; null = off
    monitor: Literal["val_acc", "val_loss", "val_f1"] = "val_acc"
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int | str = "auto"
    precision: Literal["auto", "32-true", "16-mixed", "bf16-mixed"] = "auto"
    channels_last: bool = True
    num_threads: int | None = None  # CPU threads for torch; null = all cores
    progress: Literal["auto", "rich", "text", "none"] = "auto"
    val_tta: Literal["none", "flip", "flip-crops", "ten-crop"] = "none"  # validation (and so selection) on TTA views too
    stop_at: float | None = None  # stop as soon as the monitored metric reaches this (time-to-accuracy runs)
    max_minutes: float | None = None  # wall-clock budget of the fit; the best checkpoint so far is kept
    # first epoch (1-based) to validate: speed runs skip the evaluations (and so the checkpoints) of early
    # epochs that cannot reach the target anyway
    validate_from: int = 1
    # validate and save an exponential moving average of the weights (e.g. 0.999), its decay warmed up as (1+n)/(10+n)
    ema_decay: float | None = None


@dataclass
class ExperimentConfig:
    """One training run. ``name`` names the run folder under ``out_dir``."""

    name: str = "experiment"
    seed: int = 0
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# (section.key) -> (low, high) inclusive bounds checked after parsing
RANGES: dict[str, tuple[float, float]] = {
    "data.val_fraction": (0.0, 0.9), "data.limit": (1, float("inf")), "data.image_size": (8, 1024),
    "data.ferplus_blend": (0, 1),
    "preprocess.input_size": (8, 1024),
    "augment.rotate": (0, 180), "augment.shift": (0, 0.5), "augment.shear": (0, 60), "augment.zoom": (0, 0.9),
    "augment.erasing": (0, 1), "augment.mixup": (0, 10), "augment.cutmix": (0, 10), "augment.mix_prob": (0, 1),
    "augment.resize_from": (8, 1024), "augment.resize_until": (0, 100000),
    "loss.label_smoothing": (0, 0.5), "loss.focal_gamma": (0, 10), "loss.distill_weight": (0, 1),
    "loss.distill_temperature": (0.1, 100), "loss.distill_views": (0, 1000),
    "optim.lr": (1e-8, 10), "optim.weight_decay": (0, 1), "optim.momentum": (0, 1),
    "scheduler.patience": (0, 1000), "scheduler.factor": (1e-4, 1), "scheduler.min_lr": (0, 1),
    "scheduler.warmup_epochs": (0, 1000), "scheduler.pct_start": (0.01, 0.99),
    "trainer.epochs": (1, 100000), "trainer.batch_size": (1, 65536), "trainer.eval_batch_size": (1, 65536),
    "trainer.early_stopping": (1, 100000), "trainer.num_threads": (1, 1024), "trainer.max_minutes": (0.01, 1e6),
    "trainer.validate_from": (1, 100000),
    "trainer.ema_decay": (0, 0.999999),
}


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "null")


def _check_value(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` converted to ``tp`` or raise a ConfigError naming the key and the expected type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            try:
                return _check_value(value, arg, key)
            except ConfigError as exc:
                errors.append(exc)
        expected = " or ".join(_type_name(a) for a in typing.get_args(tp))
        raise ConfigError(f"config key '{key}' must be {expected}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
    elif origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"config key '{key}': {value!r} is not valid.{suggest(str(value), map(str, typing.get_args(tp)))}"
                          f" Choose one of: {', '.join(map(str, typing.get_args(tp)))}.")
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Any:
        return value
    elif origin is list:
        if isinstance(value, list | tuple):
            (item,) = typing.get_args(tp)
            return [_check_value(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict):
            _, item = typing.get_args(tp)
            return {str(k): _check_value(v, item, f"{key}.{k}") for k, v in value.items()}
    raise ConfigError(f"config key '{key}' must be {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or 'root'}' must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key '{full}'.{suggest(key, names)} Valid keys"
                              f"{' in ' + prefix.rstrip('.') if prefix else ''}: {', '.join(names)}.")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value or {}, f"{full}.")
        else:
            kwargs[key] = _check_value(value, tp, full)
            bounds = RANGES.get(full)
            if bounds and kwargs[key] is not None and not bounds[0] <= kwargs[key] <= bounds[1]:
                raise ConfigError(f"config key '{full}' = {kwargs[key]} is out of range [{bounds[0]}, {bounds[1]}]")
    return cls(**kwargs)


def _merge(base: dict, update: dict) -> dict:
    """Config values ``update`` over ``base``, section by section and key by key, ``model.kwargs`` included (so
    ``model.kwargs.stem=8`` changes one argument of the network). When ``update`` names another network, the
    base's ``model.kwargs`` are dropped first: they are arguments of the network it no longer trains."""
    model, new_model = base.get("model"), update.get("model")
    if isinstance(model, dict) and isinstance(new_model, dict) and "name" in new_model \
            and new_model["name"] != model.get("name", ModelConfig.name):
        base = {**base, "model": {k: v for k, v in model.items() if k != "kwargs"}}
    return _merge_sections(base, update)


def _merge_sections(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _merge_sections(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["optim.lr=0.01", "augment.hflip=false"]`` -> nested dict (values parsed as YAML)."""
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override '{item}' is not key=value; write e.g. optim.lr=0.01 or trainer.epochs=5")
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return nested


def config_from_dict(values: dict[str, Any]) -> ExperimentConfig:
    """Validate a (possibly partial) nested dict into an ExperimentConfig."""
    return _build(ExperimentConfig, values)


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file's values, on top of the file its ``base:`` key names (relative to it), recursively."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}. The shipped configs are in configs/.")
    if path.resolve() in seen:
        raise ConfigError(f"config 'base:' files form a cycle: {' -> '.join(str(p) for p in (*seen, path))}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of config sections (data:, model:, ...), not "
                          f"{type(values).__name__}")
    base = values.pop("base", None)
    if base is None:
        return values
    parent = _read_yaml((path.parent / str(base)), (*seen, path.resolve()))
    parent.pop("name", None)  # a run is named after the file that was asked for
    return _merge(parent, values)


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None,
                **kwargs: Any) -> ExperimentConfig:
    """Defaults, then the YAML file, then ``key=value`` overrides, then keyword arguments (nested dicts).

    A YAML file may start from another with ``base: other.yaml`` (a path relative to it): its values are merged
    over the base's, section by section.

    Raises:
        ConfigError: missing file, bad YAML, unknown key (with a suggestion), wrong type or range.
    """
    values: dict[str, Any] = {}
    if path is not None:
        values = _read_yaml(Path(path))
        values.setdefault("name", Path(path).stem)
    values = _merge(values, parse_overrides(overrides or []))
    values = _merge(values, kwargs)
    return config_from_dict(values)


_ENV = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def expand_path(value: str) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in a path (the data paths of shipped configs use it)."""
    return _ENV.sub(lambda m: os.environ.get(m[1], m[2] if m[2] is not None else ""), value)
