"""LightningModule: preprocessing and augmentation on the device, one loss, torchmetrics validation."""

from __future__ import annotations

import hashlib
import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from ferlab.classifier import CPU_CHUNK, inference_copy
from ferlab.data import BatchAugment, Preprocessing, alternating_flips, cutmix, mixup
from ferlab.errors import ConfigError
from ferlab.io import atomic_save
from ferlab.models import create_model
from ferlab.training.config import ExperimentConfig, config_from_dict, expand_path
from ferlab.training.losses import SoftTargetLoss
from ferlab.tta import mean_log_probs


def init_weights(model: torch.nn.Module, source: str) -> list[str]:
    """Copy into ``model`` every tensor of the model at ``source`` whose name and shape match; return the names
    left as initialised (a new head, say). Fails when nothing matches: the wrong file was given."""
    from ferlab.classifier import load

    state = load(source).model.state_dict()
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise ConfigError(f"model.init_from={source}: none of its weights fit the '{type(model).__name__}' network; "
                          f"give a run of the same architecture")
    model.load_state_dict(matched, strict=False)
    return sorted(set(own) - set(matched))


class ClassifierModule(L.LightningModule):
    """Trains one registered network on uint8 face batches.

    Args:
        config: the resolved experiment config (as a dict, so it is saved in every checkpoint).
        card: the model card: architecture, labels, preprocessing (with fitted statistics), data.
        class_weights: loss weights per class, or None.
    """

    def __init__(self, config: dict[str, Any], card: dict[str, Any], class_weights: list[float] | None = None
                 ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg: ExperimentConfig = config_from_dict(config)
        num_classes = len(card["labels"]["names"])
        self.model = create_model(card["architecture"], num_classes=num_classes, in_chans=card["in_chans"],
                                  **card.get("model_kwargs", {}))
        if self.cfg.model.init_from:
            init_weights(self.model, expand_path(self.cfg.model.init_from))
        self.preprocessing = Preprocessing.from_dict(card["preprocessing"])
        a = self.cfg.augment
        self.augment = BatchAugment(a.rotate, a.shift, a.shear, a.zoom, a.hflip, a.erasing)
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.criterion = SoftTargetLoss(weights, self.cfg.loss.label_smoothing, self.cfg.loss.focal_gamma)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_f1 = MulticlassF1Score(num_classes, average="macro")
        self.num_classes = num_classes
        if self.cfg.augment.resize_from:
            self._check_any_size(card)
        if self.cfg.trainer.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # set through __dict__: the teachers are no submodules, so they stay out of checkpoints and the EMA copy
        self.__dict__["teachers"] = self._load_teachers(card) if self.cfg.loss.distill_from is not None else []
        # offline distillation: the teachers' log-probabilities for every training image (row = train split index),
        # with loss.distill_views one such table per view, and the views themselves (uint8, on the CPU)
        self.__dict__["teacher_table"] = None
        self.__dict__["view_bank"] = None
        self.__dict__["validation_net"] = None
        self.__dict__["folded_teachers"] = None  # loss.distill_folded: one folded copy per teacher, made once
        self._check_distill_views()

    def _check_distill_views(self) -> None:
        loss, views = self.cfg.loss, self.cfg.loss.distill_views
        if not views:
            if loss.distill_cache:
                raise ConfigError("loss.distill_cache holds the scores of stored views: set loss.distill_views to "
                                  "their number, or drop loss.distill_cache")
            return
        if loss.distill_from is None:
            raise ConfigError(f"loss.distill_views={views} without loss.distill_from: name the teachers, or set "
                              f"loss.distill_views: 0")
        if not loss.distill_offline:
            raise ConfigError(f"loss.distill_views={views} stores teacher targets, which is offline distillation: set "
                              f"loss.distill_offline: true, or loss.distill_views: 0 to distil online")
        if self.cfg.augment.resize_from:
            raise ConfigError(f"loss.distill_views={views}: the stored views are drawn at one size, so they cannot "
                              f"follow augment.resize_from; drop one of the two")

    def _load_teachers(self, card: dict[str, Any]) -> list:
        from ferlab.classifier import Ensemble, load
        from ferlab.onnx import ONNX_TTA_MODES

        sources = self.cfg.loss.distill_from
        named = []  # (what names it, teacher network)
        for source in [sources] if isinstance(sources, str) else sources:
            loaded = load(expand_path(source))
            # an ensemble teaches as its members: its log-probabilities are their mean, as the teachers' are
            # (its calibration temperature is left out: distillation softens by loss.distill_temperature)
            members = loaded.members if isinstance(loaded, Ensemble) else [loaded]
            named += [(source if len(members) == 1 else f"{source} (member {i + 1})", m) for i, m in enumerate(members)]
        for source, teacher in named:
            if isinstance(teacher, torch.nn.Module):
                teacher.eval()
                for param in teacher.parameters():
                    param.requires_grad_(False)
            elif not self.cfg.loss.distill_offline:  # online, the teacher runs inside the training step
                raise ConfigError(f"loss.distill_from: {source} is an exported ONNX model, which can teach offline "
                                  f"only; name its .safetensors file, or set loss.distill_offline: true")
            elif self.cfg.loss.distill_tta not in ONNX_TTA_MODES:
                raise ConfigError(f"loss.distill_tta={self.cfg.loss.distill_tta}: {source} is an exported ONNX "
                                  f"model, which runs {' or '.join(ONNX_TTA_MODES)}; choose one of them or name its "
                                  f".safetensors file")
            if list(teacher.class_names) != list(card["labels"]["names"]):
                raise ConfigError(f"loss.distill_from: {source} predicts {list(teacher.class_names)}, but this run "
                                  f"trains {card['labels']['names']}; distil from models with the same classes")
            mine, theirs = self.preprocessing.to_dict(), teacher.preprocessing.to_dict()
            same_input = mine == theirs and teacher.card.get("in_chans", 1) == card["in_chans"]
            if not same_input and not self.cfg.loss.distill_offline:
                raise ConfigError(f"loss.distill_from: {source} takes other input (preprocessing {theirs}, "
                                  f"{teacher.card.get('in_chans', 1)} channels) than this run ({mine}, "
                                  f"{card['in_chans']} channels); set preprocess.* and the data's channels to match "
                                  f"the teacher, or set loss.distill_offline: true")
        if not named:
            raise ConfigError("loss.distill_from is an empty list; name at least one teacher model, or set it to null")
        if self.cfg.loss.distill_offline and (self.cfg.augment.mixup or self.cfg.augment.cutmix):
            raise ConfigError("loss.distill_offline: the teachers score unmixed images, so their targets cannot "
                              "follow augment.mixup / augment.cutmix; set those to 0 or distil online")
        return [teacher for _, teacher in named]

    @torch.no_grad()
    def score_training_images(self, images: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
        """Offline distillation targets: the teachers' mean log-probabilities (T = 1, over ``loss.distill_tta``
        views and the ensemble) for uint8 training faces, as each teacher's Classifier scores them."""
        tta, out = self.cfg.loss.distill_tta, []
        for start in range(0, len(images), chunk):
            faces = images[start:start + chunk]
            out.append(torch.stack([F.log_softmax(t.logits(faces, tta=tta).float(), 1) for t in self.teachers]).mean(0))
        return torch.cat(out)

    @torch.no_grad()
    def make_view_bank(self, images: torch.Tensor) -> torch.Tensor:
        """``loss.distill_views`` augmented views of uint8 faces (N, C, H, W) -> uint8 (views, N, C, H, W), drawn
        from a generator seeded by the run's seed (a resumed run draws the same). The faces are augmented as
        stored, before any preprocessing, so teachers and student each preprocess a view as they would a face."""
        generator = torch.Generator().manual_seed(self.cfg.seed)
        bank = torch.empty((self.cfg.loss.distill_views, *images.shape), dtype=torch.uint8)
        chunk = 2048  # fixed: the random draws follow the chunks, so another size would give other views
        for view in bank:
            for start in range(0, len(images), chunk):
                x = images[start:start + chunk].cpu().float().div_(255.0)
                view[start:start + chunk] = self.augment(x, generator).mul_(255.0).round_().clamp_(0, 255)
        return bank

    def view_scores_about(self, images: torch.Tensor) -> dict[str, Any]:
        """What the stored views' scores depend on: teachers, their TTA, the views (count, seed, augmentation)
        and the training faces (count and SHA-1); a cache is reused only when all of it matches."""
        a = self.cfg.augment
        return {"teachers": self.cfg.loss.distill_from, "tta": self.cfg.loss.distill_tta,
                "views": self.cfg.loss.distill_views, "seed": self.cfg.seed,
                "augment": [a.rotate, a.shift, a.shear, a.zoom, a.hflip, a.erasing], "faces": len(images),
                "faces_sha1": hashlib.sha1(images.cpu().numpy().tobytes()).hexdigest()}

    def _teacher_targets(self, images: torch.Tensor) -> torch.Tensor:
        """The offline table: the teachers' scores of the training faces, or of each stored view of them. The
        views' scores are cached (loss.distill_cache, or the run folder), so a resumed run, or another student
        of the same teachers on the same views, does not score them again."""
        if not self.cfg.loss.distill_views:
            return self.score_training_images(images)
        self.__dict__["view_bank"] = self.make_view_bank(images)
        cache = Path(expand_path(self.cfg.loss.distill_cache) if self.cfg.loss.distill_cache
                     else Path(self.trainer.default_root_dir) / "distill_views.pt")
        about = self.view_scores_about(images)
        if cache.is_file():
            stored = torch.load(cache, weights_only=True)
            if stored.get("about") == about:
                return stored["table"]
            if self.cfg.loss.distill_cache:  # named on purpose: scoring anew would overwrite someone's file
                differ = sorted(k for k in about if stored.get("about", {}).get(k) != about[k])
                raise ConfigError(f"loss.distill_cache={cache} holds scores of other views or teachers (they differ "
                                  f"in {', '.join(differ)}); name a new file, or delete that one")
        table = torch.stack([self.score_training_images(view) for view in self.view_bank])
        atomic_save(cache, lambda tmp: torch.save({"about": about, "table": table}, tmp))
        return table

    def on_fit_start(self) -> None:
        if self.teachers and self.cfg.loss.distill_offline and self.teacher_table is None:
            train = self.trainer.datamodule.split("train")
            for teacher in self.teachers:
                if isinstance(teacher, torch.nn.Module):  # an ONNX teacher runs on the CPU
                    teacher.to(self.device)
            start = time.perf_counter()
            self.__dict__["teacher_table"] = self._teacher_targets(train.images).to(self.device)
            if self.cfg.trainer.progress != "none":  # minutes of silence otherwise, before the first epoch
                views = self.cfg.loss.distill_views
                what = f"{views} augmented views of {len(train)}" if views else f"{len(train)}"
                print(f"offline distillation: {len(self.teachers)} teacher(s) scored {what} training images "
                      f"({self.cfg.loss.distill_tta} TTA) in {time.perf_counter() - start:.0f} s", flush=True)

    @torch.no_grad()
    def teacher_log_probs(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """The teachers' log-probabilities at the distillation temperature: for the batch ``x`` (online), or
        looked up by training-split ``index`` (offline). Ensembles and TTA views average in log space."""
        t = self.cfg.loss.distill_temperature
        if self.cfg.loss.distill_offline:
            # log_softmax(mean log p / T) is the softmax of the mean logits / T: the same softening as online
            table = self.teacher_table
            if self.cfg.loss.distill_views:  # one table per stored view
                table = table[self.current_epoch % self.cfg.loss.distill_views]
            scores = table[index.to(table.device)] / t
        else:
            scores = torch.stack([mean_log_probs(net, x, self.cfg.loss.distill_tta, t)
                                  for net in self._teacher_nets(x.device)]).mean(0)
        # the mean of log-probabilities over views is no distribution: renormalise
        return F.log_softmax(scores, 1)

    def _teacher_nets(self, device: torch.device) -> list[torch.nn.Module]:
        """The networks that score each batch online: the teachers' own, or on CPU with loss.distill_folded
        copies with their BatchNorms folded into the convs (they are frozen, so one copy serves the run)."""
        if not (self.cfg.loss.distill_folded and device.type == "cpu"):
            return [teacher.model.to(device) for teacher in self.teachers]
        if self.folded_teachers is None:
            self.__dict__["folded_teachers"] = [inference_copy(teacher.model.cpu()) for teacher in self.teachers]
        return self.folded_teachers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @torch.no_grad()
    def _check_any_size(self, card: dict[str, Any]) -> None:
        """Progressive resizing needs a network that takes smaller inputs (global pooling, no fixed dense head)."""
        side = self.train_size(0)
        was_training = self.model.training
        try:
            self.model.eval()(torch.zeros(1, card["in_chans"], side, side))
        except RuntimeError as exc:
            raise ConfigError(f"augment.resize_from={side}: '{card['architecture']}' does not take {side}x{side} "
                              f"inputs ({exc}); use a network with global pooling (mini_xception, the backbones) or "
                              f"drop augment.resize_from") from exc
        finally:
            self.model.train(was_training)

    def train_size(self, epoch: int) -> int:
        """Training input side at ``epoch`` (0-based): augment.resize_from growing linearly, in steps of 4 px, to
        the full input size at epoch augment.resize_until."""
        full, a = self.preprocessing.input_size, self.cfg.augment
        if a.resize_from is None or epoch >= a.resize_until:
            return full
        side = a.resize_from + (full - a.resize_from) * epoch / a.resize_until
        return min(full, int(side) // 4 * 4)

    def _inputs(self, images: torch.Tensor, train: bool, index: torch.Tensor | None = None) -> torch.Tensor:
        x = self.preprocessing.to_float(images)
        if train:
            size = self.train_size(self.current_epoch) if self.cfg.augment.resize_from else None
            flip = None
            if self.cfg.augment.alternate_flips:
                flip = alternating_flips(index, self.current_epoch, self.cfg.seed)
            x = self.augment(x, size=size, flip=flip)
        x = self.preprocessing.normalize_(x)
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.trainer.channels_last else x

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, targets, index = batch
        if self.view_bank is not None:
            # the stored view that the teachers scored, augmented already: the student sees what they saw
            view = self.view_bank[self.current_epoch % self.cfg.loss.distill_views]
            x = self._inputs(view[index.cpu()].to(images.device), train=False)
        else:
            x = self._inputs(images, train=True, index=index)
        if targets.ndim == 1:
            targets = F.one_hot(targets, self.num_classes).float()
        a = self.cfg.augment
        if (a.mixup or a.cutmix) and random.random() < a.mix_prob:
            use_cutmix = a.cutmix and (not a.mixup or random.random() < 0.5)
            x, targets = cutmix(x, targets, a.cutmix) if use_cutmix else mixup(x, targets, a.mixup)
        logits = self(x)
        loss = self.criterion(logits, targets)
        if self.teachers:
            # Hinton et al.: KL between softened distributions, scaled by T^2 to keep its gradients comparable
            t, w = self.cfg.loss.distill_temperature, self.cfg.loss.distill_weight
            teacher = self.teacher_log_probs(x, index)
            kl = F.kl_div(F.log_softmax(logits.float() / t, 1), teacher, log_target=True, reduction="batchmean")
            self.log("distill_loss", kl, on_step=False, on_epoch=True, batch_size=len(images))
            loss = (1 - w) * loss + w * t * t * kl
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(images))
        return loss

    def _validation_net(self, batch_idx: int) -> torch.nn.Module:
        """What validation runs: on CPU the network with its BatchNorms folded into the convs, as
        ferlab.Classifier runs it (a ten-crop PublicTest pass of the speed-run network added 5-8 s to an epoch
        instead of 17-21 on a 2-core CPU). The copy is made at each validation's first batch, after weight averaging has
        swapped the averaged weights in."""
        if self.device.type != "cpu":
            return self.model
        if batch_idx == 0 or self.validation_net is None:

            self.__dict__["validation_net"] = inference_copy(self.model)
        return self.validation_net

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        x = self._inputs(images, train=False)
        net, tta = self._validation_net(batch_idx), self.cfg.trainer.val_tta
        # as Classifier.logits(tta=...); cross-entropy and argmax take the mean log-probabilities as scores
        # (with val_tta none, the log-probabilities of the one view: the same loss and argmax as the logits)
        if net is self.model:
            logits = mean_log_probs(net, x, tta)
        else:  # in channels-last chunks, as Classifier.logits
            logits = torch.cat([mean_log_probs(net, chunk.contiguous(memory_format=torch.channels_last), tta)
                                for chunk in x.split(CPU_CHUNK)])
        loss = F.cross_entropy(logits, labels)
        self.val_acc.update(logits, labels)
        self.val_f1.update(logits, labels)
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, batch_size=len(images))
        self.log("val_acc", self.val_acc, on_epoch=True, prog_bar=True)
        self.log("val_f1", self.val_f1, on_epoch=True)

    def configure_optimizers(self) -> Any:
        o, s = self.cfg.optim, self.cfg.scheduler
        params = self.model.parameters()
        fused = {"fused": True} if o.fused else {}
        if o.name == "sgd":
            opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                                  weight_decay=o.weight_decay, **fused)
        elif o.name == "adam":
            opt = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay, **fused)
        elif o.name == "adamw":
            opt = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay, **fused)
        elif o.name == "nadam":
            opt = torch.optim.NAdam(params, lr=o.lr, weight_decay=o.weight_decay)
        else:  # the config validator already refuses these; kept for configs built by hand
            raise ConfigError(f"unknown optimiser '{o.name}'; choose one of sgd, adam, adamw, nadam")
        if s.name == "none":
            return opt
        if s.name == "plateau":
            mode = "min" if self.cfg.trainer.monitor == "val_loss" else "max"
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=s.factor, patience=s.patience,
                                                               min_lr=s.min_lr)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": self.cfg.trainer.monitor}}
        total = int(self.trainer.estimated_stepping_batches)
        if s.name == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=o.lr, total_steps=total, pct_start=s.pct_start)
        else:  # cosine, per step, with optional linear warm-up
            per_epoch = max(1, total // max(1, self.trainer.max_epochs))
            warm = s.warmup_epochs * per_epoch
            floor = s.min_lr / o.lr

            def factor(step: int) -> float:
                if step < warm:
                    return (step + 1) / warm
                t = min(1.0, (step - warm) / max(1, total - warm))
                return float(floor + (1 - floor) * 0.5 * (1 + np.cos(np.pi * t)))

            sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # exact resume: random states travel with the checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        _, key, pos, has_gauss, gauss = np.random.get_state()
        checkpoint["rng"] = {"torch": torch.get_rng_state(), "numpy_key": torch.from_numpy(key.astype(np.int64)),
                             "numpy_pos": int(pos), "numpy_gauss": [int(has_gauss), float(gauss)],
                             "python": list(random.getstate()[1])}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = checkpoint.get("rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            has_gauss, gauss = rng["numpy_gauss"]
            np.random.set_state(("MT19937", rng["numpy_key"].numpy().astype(np.uint32), rng["numpy_pos"],
                                 int(has_gauss), float(gauss)))
            random.setstate((3, tuple(rng["python"]), None))

    def on_train_epoch_start(self) -> None:
        sampler = getattr(self.trainer.datamodule, "_train_sampler", None)
        if sampler is not None:
            sampler.set_epoch(self.current_epoch)
