"""``train()``: config -> run folder with checkpoints, logs, a self-describing model and its evaluation."""

from __future__ import annotations

import datetime as dt
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ferlab import __version__
from ferlab.data import FaceDataset, Preprocessing, class_weights
from ferlab.errors import ConfigError
from ferlab.io import atomic_write_json, atomic_write_text
from ferlab.system import hardware_summary
from ferlab.training.config import ExperimentConfig, load_config


@dataclass
class TrainResult:
    """What a training run produced."""

    run_dir: Path
    model_path: Path
    best_checkpoint: Path
    metrics: dict[str, Any]  # evaluation of the best model on the validation split
    logged: dict[str, float]  # the monitored metric as logged during training, at the best epoch
    seconds: float

    def __str__(self) -> str:
        acc = self.metrics.get("accuracy", float("nan"))
        return (f"run {self.run_dir}\n  model {self.model_path}\n  val accuracy {acc:.4f} "
                f"(logged {self.logged})\n  training time {self.seconds / 60:.1f} min")


def _new_run_dir(cfg: ExperimentConfig) -> Path:
    base = Path(cfg.out_dir) / cfg.name
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run = base / stamp
    n = 1
    while run.exists():
        run = base / f"{stamp}-{n}"
        n += 1
    run.mkdir(parents=True)
    return run


def _progress_callbacks(mode: str) -> list:
    from lightning.pytorch.callbacks import RichProgressBar

    from ferlab.training.callbacks import EpochLog

    if mode == "auto":
        mode = "rich" if sys.stdout.isatty() else "text"
    return {"rich": [RichProgressBar()], "text": [EpochLog()], "none": []}[mode]


def ema_with_warmup(decay: float):
    """Averaging function for ``torch.optim.swa_utils.AveragedModel``: an exponential moving average whose decay
    grows as (1 + n) / (10 + n) after n updates up to ``decay`` (as timm's ModelEma and TensorFlow's
    ExponentialMovingAverage with num_updates). A fixed 0.999 would still hold 27% of the random initial weights
    after 1,300 steps, and batch-norm statistics of the current weights do not fit such a mixture: validation
    of the average sat at chance for the first epochs of a FER2013 run."""

    def average(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        d = torch.clamp((1 + num_averaged) / (10 + num_averaged), max=decay).to(averaged.dtype)
        return averaged + (current - averaged) * (1 - d)

    return average


def _run_as_ferlab() -> bool:
    """Whether this process is the ``ferlab`` CLI (its script or ``python -m ferlab``), whose arguments are
    the command that reproduces the run."""
    argv0 = Path(sys.argv[0])
    return argv0.name == "ferlab" or (argv0.name == "__main__.py" and argv0.parent.name == "ferlab")


def _check_combinations(cfg: ExperimentConfig) -> None:
    """Refuse settings that are valid one by one but not together, before the run folder is made."""
    if cfg.optim.fused and cfg.optim.name == "nadam":
        raise ConfigError("optim.fused: torch has no fused NAdam; use optim.name=adamw (or adam, sgd) with it, "
                          "or optim.fused=false")
    if cfg.loss.distill_folded and (cfg.loss.distill_from is None or cfg.loss.distill_offline):
        raise ConfigError("loss.distill_folded folds the BatchNorms of teachers that score online; offline teachers "
                          "already score through ferlab.Classifier, which folds them: set loss.distill_folded=false")
    if cfg.augment.alternate_flips and not cfg.augment.hflip:
        raise ConfigError("augment.alternate_flips says which faces augment.hflip mirrors in each epoch: set "
                          "augment.hflip=true, or augment.alternate_flips=false")
    if cfg.augment.alternate_flips and cfg.loss.distill_views:
        raise ConfigError(f"augment.alternate_flips: the loss.distill_views={cfg.loss.distill_views} stored views "
                          f"are augmented once, with random flips; drop one of the two")
    if cfg.trainer.validate_from > 1 and cfg.scheduler.name == "plateau":
        raise ConfigError(f"trainer.validate_from={cfg.trainer.validate_from} leaves the plateau scheduler "
                          f"without a validation loss in early epochs: use scheduler.name=cosine or onecycle, "
                          f"or trainer.validate_from=1")


def train(config: ExperimentConfig | str | os.PathLike | None = None, overrides: list[str] | None = None, *,
          resume: str | os.PathLike | None = None, dataset: FaceDataset | None = None,
          callbacks: list | None = None, **kwargs: Any) -> TrainResult:
    """Train a classifier as configured and save everything in a run folder.

    Args:
        config: an ExperimentConfig, or a YAML path (with ``overrides`` such as ``["optim.lr=0.01"]``).
        resume: a run folder to continue from its ``checkpoints/last.ckpt`` (same config, exact state).
        dataset: use this in-memory dataset instead of ``config.data.path``.
        callbacks: extra Lightning callbacks.
        **kwargs: nested config values that override everything else (e.g. ``trainer={"epochs": 2}``).

    Returns:
        TrainResult with the run folder, ``model.safetensors`` (best epoch) and its validation metrics.

    Raises:
        KeyboardInterrupt: the run was interrupted; ``checkpoints/last.ckpt`` holds the last finished epoch
            and ``train(resume=run_dir)`` continues from it.
    """
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from ferlab.classifier import Classifier, load
    from ferlab.evaluation import evaluate, plot_training_curves
    from ferlab.evaluation.calibration import apply_calibration, calibrate, save_calibration
    from ferlab.models import count_macs, count_parameters
    from ferlab.training.callbacks import AtomicCheckpointIO, TrainingClock, ValidateFrom
    from ferlab.training.datamodule import FERDataModule
    from ferlab.training.module import ClassifierModule

    ckpt_path = None
    if resume is not None:
        run_dir = Path(resume)
        ckpt_path = run_dir / "checkpoints" / "last.ckpt"
        if not ckpt_path.is_file() or not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"cannot resume {run_dir}: it needs config.yaml and checkpoints/last.ckpt, written by "
                              f"an earlier 'ferlab train' run.")
        cfg = load_config(run_dir / "config.yaml")
    else:
        cfg = config if isinstance(config, ExperimentConfig) else load_config(config, overrides, **kwargs)
        _check_combinations(cfg)
        run_dir = _new_run_dir(cfg)
        atomic_write_text(run_dir / "config.yaml", cfg.to_yaml())

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)

    data = FERDataModule(cfg, dataset)
    data.setup()
    train_split = data.split("train")
    pp = Preprocessing(cfg.preprocess.input_size, cfg.preprocess.equalize, cfg.preprocess.normalize)
    if pp.normalize == "dataset":
        pp.fit(train_split.images)
    card = {
        "architecture": cfg.model.name, "model_kwargs": cfg.model.kwargs,
        "in_chans": int(train_split.images.shape[1]), "labels": train_split.label_set.to_dict(),
        "preprocessing": pp.to_dict(), "data": data.describe(), "seed": cfg.seed, "ferlab_version": __version__,
    }
    weights = None
    if cfg.loss.class_weights != "none":
        weights = class_weights(train_split.labels.numpy(), train_split.num_classes, cfg.loss.class_weights).tolist()
        card["class_weights"] = weights
    module = ClassifierModule(cfg.to_dict(), card, weights)

    monitor = cfg.trainer.monitor
    mode = "min" if monitor == "val_loss" else "max"
    best_ckpt = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode=mode,
                                save_top_k=1, auto_insert_metric_name=False)
    # last.ckpt after every epoch, validated or not: Lightning's save_last writes it only when best.ckpt is
    # written (the monitored metric improved), and --resume must continue from the last finished epoch
    last_ckpt = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", save_top_k=1,
                                save_on_train_epoch_end=True, enable_version_counter=False)
    clock = TrainingClock()
    callbacks = [best_ckpt, last_ckpt, clock, LearningRateMonitor("epoch"),
                 *_progress_callbacks(cfg.trainer.progress), *(callbacks or [])]
    if cfg.trainer.early_stopping or cfg.trainer.stop_at is not None:
        # without early stopping the patience never runs out, and only the threshold stops the run
        callbacks.append(EarlyStopping(monitor, patience=cfg.trainer.early_stopping or cfg.trainer.epochs + 1,
                                       mode=mode, stopping_threshold=cfg.trainer.stop_at,
                                       check_on_train_epoch_end=False))  # after each validation (validate_from)
    if cfg.trainer.validate_from > 1:
        callbacks.append(ValidateFrom(cfg.trainer.validate_from))
    if cfg.trainer.ema_decay:
        from lightning.pytorch.callbacks import WeightAveraging

        # validation, the best checkpoint and so the saved model all use the averaged weights
        callbacks.append(WeightAveraging(avg_fn=ema_with_warmup(cfg.trainer.ema_decay)))
    cuda = torch.cuda.is_available() and cfg.trainer.accelerator in ("auto", "gpu", "cuda")
    precision = cfg.trainer.precision if cfg.trainer.precision != "auto" else ("16-mixed" if cuda else "32-true")
    trainer = L.Trainer(
        max_epochs=cfg.trainer.epochs, max_time=dt.timedelta(minutes=cfg.trainer.max_minutes) if cfg.trainer.max_minutes
        else None, accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices,
        precision=precision, callbacks=callbacks, plugins=[AtomicCheckpointIO()],
        logger=[CSVLogger(run_dir, name="logs", version=_free_log_version(run_dir / "logs", "csv")),
                TensorBoardLogger(run_dir, name="logs", version="tb")],
        default_root_dir=run_dir, enable_progress_bar=cfg.trainer.progress in ("auto", "rich")
        and sys.stdout.isatty(), enable_model_summary=False, num_sanity_val_steps=1,
        log_every_n_steps=max(1, min(20, len(train_split) // cfg.trainer.batch_size)),
        benchmark=cuda,
    )
    clock.start()
    try:
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    except SystemExit as exc:
        # Lightning answers Ctrl+C with exit(1) and leaves SIGINT ignored: give callers an ordinary
        # KeyboardInterrupt back, and Ctrl+C its usual meaning
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if trainer.interrupted:
            raise KeyboardInterrupt(f"training interrupted; the last finished epoch is in {run_dir}/checkpoints/"
                                    f"last.ckpt: continue with 'ferlab train --resume {run_dir}'") from exc
        raise
    seconds = clock.seconds  # all segments of a resumed run, not only this one

    # without a validated epoch (the time budget ran out before trainer.validate_from) the final weights are the model
    best_path = Path(best_ckpt.best_model_path or run_dir / "checkpoints" / "last.ckpt")
    best = load(best_path)
    logged = {monitor: float(best_ckpt.best_model_score)} if best_ckpt.best_model_score is not None else {}
    in_chans, size = best.card.get("in_chans", 1), best.preprocessing.input_size
    card = {**best.card, "parameters": count_parameters(best.model),
            "trainable_parameters": count_parameters(best.model, trainable_only=True),
            "macs_per_face": count_macs(best.model, in_chans, size),
            "date": dt.date.today().isoformat(), "train_seconds": round(seconds, 1),
            "epochs_run": trainer.current_epoch, "hardware": hardware_summary(), "config": cfg.to_dict(),
            "command": " ".join(["ferlab", *sys.argv[1:]]) if _run_as_ferlab() else None}
    clf = Classifier(best.model, best.label_set, best.preprocessing, card)
    # temperature scaling on the validation split: same predictions, honest confidences (kept only if it helps)
    calibration, calibration_probs = calibrate(clf, data.split("val"), batch_size=cfg.trainer.eval_batch_size)
    apply_calibration(clf, calibration)
    result = evaluate(clf, data.split("val"), batch_size=cfg.trainer.eval_batch_size)
    clf.card["metrics"] = {"split": "val", **result.summary_metrics(), "logged": logged}
    model_path = clf.save(run_dir / "model.safetensors")
    result.save(run_dir / "eval_val", title=f"{cfg.name}: validation split")
    save_calibration(calibration, calibration_probs, run_dir / "eval_val")
    summary = {"model": str(model_path), "best_checkpoint": str(best_path), "metrics": clf.card["metrics"],
               "train_seconds": seconds}
    if data.dataset.has_split("test"):  # e.g. PrivateTest rows in the user's CSV: measured once, never used to select
        test = evaluate(clf, data.split("test"), split="test", batch_size=cfg.trainer.eval_batch_size)
        test.save(run_dir / "eval_test", title=f"{cfg.name}: test split")
        summary["test_metrics"] = {"split": "test", **test.summary_metrics()}
    plot_training_curves(sorted((run_dir / "logs").glob("csv*/metrics.csv")), run_dir / "curves.png")
    atomic_write_json(run_dir / "summary.json", summary)
    return TrainResult(run_dir, model_path, best_path, result.summary_metrics(), logged, seconds)


def _free_log_version(logs: Path, prefix: str) -> str:
    """``csv`` for a new run, ``csv-1``, ``csv-2``... after resumes: Lightning's CSV logger would overwrite
    the metrics of the epochs before the interruption."""
    version, n = prefix, 0
    while (logs / version / "metrics.csv").exists():
        n += 1
        version = f"{prefix}-{n}"
    return version
