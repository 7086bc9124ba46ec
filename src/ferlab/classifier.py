"""A trained network with everything needed to use it: labels, preprocessing, model card.

Weights are stored as safetensors with the model card in the file's metadata, so one file is a whole
model and loading it can never run code. ``load()`` also reads ferlab's Lightning checkpoints and run
folders.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ferlab.backends import BACKENDS
from ferlab.data.preprocess import Preprocessing
from ferlab.errors import ModelError
from ferlab.io import atomic_path, atomic_write_json
from ferlab.labels import LabelSet
from ferlab.models import count_parameters, create_model
from ferlab.tta import mean_log_probs, resolve_tta

CARD_KEY = "ferlab_model_card"
BUNDLED_DIR = Path(__file__).parent / "weights"
INT8_SUFFIX = ".int8.onnx"  # a bundled model's int8 graph (ferlab export --int8) beside its weights
# faces per forward pass: 64 was fastest on a 2-core CPU, larger chunks fall out of its caches
# (benchmarks/inference_speed.py); validation in training runs in the same chunks
CPU_CHUNK = 64


def inference_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every BatchNorm folded into the conv before it, in channels-last
    memory layout: the same function, about twice as fast on CPU for these small networks. ``model`` itself,
    unchanged, when torch.fx cannot trace it."""
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(copy.deepcopy(model).eval()).to(memory_format=torch.channels_last)
    except Exception as exc:  # torch.fx cannot trace some control flow; run the model as it is
        warnings.warn(f"running {type(model).__name__} unfused: {exc}", stacklevel=3)
        return model


def bundled_models() -> list[str]:
    """Names of the models shipped inside the package, ensembles of them included (``ferlab.load(name)``
    works offline)."""
    return sorted([p.stem for p in BUNDLED_DIR.glob("*.safetensors")] + bundled_ensembles())


def bundled_int8_models() -> list[str]:
    """Names of the bundled models that ship an int8 ONNX graph (``load(name, backend="onnx-int8")``)."""
    return sorted(p.name.removesuffix(INT8_SUFFIX) for p in BUNDLED_DIR.glob(f"*{INT8_SUFFIX}"))


def as_face_batch(images: torch.Tensor | np.ndarray, in_chans: int = 1) -> torch.Tensor:
    """uint8 faces as an (N, in_chans, H, W) tensor: single faces and channel-less stacks get their axes, colour
    faces for a grey model become grey (ITU-R 601 luma, as Pillow's 'L')."""
    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = images.copy()  # torch warns on read-only arrays (e.g. from np.asarray(PIL image))
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8:
        raise ModelError(f"Classifier expects uint8 face images, got {x.dtype}; pass raw 0..255 pixels")
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ModelError(f"expected faces shaped (N, C, H, W), (N, H, W) or (H, W), got {tuple(x.shape)}")
    if x.shape[1] == 3 and in_chans == 1:
        w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        x = (x.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    if x.shape[1] != in_chans:
        raise ModelError(f"faces have {x.shape[1]} channels but the model takes {in_chans}")
    return x


class Classifier(nn.Module):
    """A face classifier: uint8 faces in, class probabilities out.

    Args:
        model: the network (from :func:`ferlab.create_model`).
        label_set: the classes of its outputs.
        preprocessing: how uint8 faces become network input.
        card: the model card (architecture, data, metrics, ...).
    """

    def __init__(self, model: nn.Module, label_set: LabelSet, preprocessing: Preprocessing,
                 card: dict[str, Any] | None = None, optimize: bool = True) -> None:
        super().__init__()
        self.model = model
        self.label_set = label_set
        self.preprocessing = preprocessing
        self.card = card or {}
        self.optimize = optimize
        # set through __dict__ so the fused copy is no submodule (never in state_dict / .to())
        self.__dict__["_fused"] = None

    def _runner(self) -> nn.Module:
        """What runs the forward pass: on CPU an inference copy with every BatchNorm folded into the conv
        before it, in channels-last memory layout (about 3x faster for these small networks on a 2-core
        CPU); else the model itself.

        The copy is built on first use; build a new Classifier after changing the weights.
        """
        if not self.optimize or self.device.type != "cpu" or self.model.training:
            return self.model
        if self._fused is None:
            self.__dict__["_fused"] = inference_copy(self.model)
        return self._fused

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.label_set.names

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def __repr__(self) -> str:
        return (f"Classifier({self.card.get('architecture', type(self.model).__name__)}, "
                f"classes={list(self.class_names)}, params={count_parameters(self.model, True):,})")

    def _as_batch(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        return as_face_batch(images, self.card.get("in_chans", 1))

    @property
    def temperature(self) -> float:
        """Divisor of the network's outputs fitted by temperature scaling (``ferlab calibrate``); 1 if never fitted."""
        return float(self.card.get("temperature", 1.0))

    @torch.inference_mode()
    def logits(self, images: torch.Tensor | np.ndarray, batch_size: int = CPU_CHUNK, tta: str | None = None
               ) -> torch.Tensor:
        """Scores (N, num_classes): the network's outputs divided by the card's temperature; with ``tta``
        averaged over flips (and shifted crops) in log space (None: the card's ``tta``, else none).

        Faces run in chunks of ``batch_size``: 64 was fastest on a 2-core CPU (larger chunks fall out of
        its caches; see benchmarks/inference_speed.py).
        """
        tta = resolve_tta(tta, self.card)
        x = self._as_batch(images)
        self.model.eval()
        net = self._runner()
        t = self.temperature
        out = []
        for start in range(0, len(x), batch_size):
            batch = self.preprocessing(x[start:start + batch_size].to(self.device))
            if net is not self.model:
                batch = batch.contiguous(memory_format=torch.channels_last)
            if tta == "none":
                out.append(net(batch).float().cpu() / t)
            else:
                out.append(mean_log_probs(net, batch, tta, t).cpu())
        return torch.cat(out) if out else torch.empty(0, self.label_set.num_classes)

    def predict_proba(self, images: torch.Tensor | np.ndarray, batch_size: int = CPU_CHUNK, tta: str | None = None
                      ) -> torch.Tensor:
        """Class probabilities (N, num_classes) for uint8 faces (N, C, H, W) / (N, H, W)."""
        return torch.softmax(self.logits(images, batch_size, tta), dim=1)

    def predict(self, images: torch.Tensor | np.ndarray, batch_size: int = CPU_CHUNK, tta: str | None = None
                ) -> list[str]:
        """Top class name per face."""
        idx = self.logits(images, batch_size, tta).argmax(1)
        return [self.class_names[i] for i in idx.tolist()]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.predict_proba(images)

    def save(self, path: str | os.PathLike, half: bool = False) -> Path:
        """Write ``path`` (.safetensors, card in its metadata) and ``<path>.json`` (the card, for people).

        With ``half`` floating-point weights are stored as float16 (half the file; they load as float32), for
        large networks whose weights came out of mixed-precision training.
        """
        from safetensors.torch import save_file

        path = Path(path)
        card = {**self.card, "labels": self.label_set.to_dict(), "preprocessing": self.preprocessing.to_dict()}
        state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
                 for k, v in self.model.state_dict().items()}
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata={CARD_KEY: json.dumps(card)})
        atomic_write_json(path.with_suffix(".json"), card)
        return path


def require_network(clf: Any, needs: str) -> Classifier:
    """``clf`` when it is one PyTorch network; else a ModelError saying what ``needs`` it."""
    if not isinstance(clf, Classifier):
        raise ModelError(f"{needs} needs one PyTorch network, not {type(clf).__name__}: use one model "
                         f"(an ensemble's member, e.g. 'emotion') loaded with backend 'torch'")
    return clf


def _build(card: dict[str, Any], state: dict[str, torch.Tensor], source: str,
           architecture: str | None = None) -> Classifier:
    for key in ("architecture", "labels", "preprocessing"):
        if key not in card:
            raise ModelError(f"{source} is not a ferlab model: its model card lacks '{key}'. Load files written "
                             f"by ferlab (model.safetensors, *.ckpt) or build the network with create_model().")
    if architecture is not None and architecture != card["architecture"]:
        raise ModelError(f"{source} holds a '{card['architecture']}' network, not '{architecture}'; load it "
                         f"without an architecture, or pick a checkpoint trained as '{architecture}'.")
    label_set = LabelSet.from_dict(card["labels"])
    # the file holds every weight: ImageNet initial weights (model_kwargs 'pretrained') would only be overwritten,
    # and fetching them would make a fine-tuned model need the weights package or a download to load
    kwargs = {k: v for k, v in card.get("model_kwargs", {}).items() if k != "pretrained"}
    model = create_model(card["architecture"], num_classes=label_set.num_classes, in_chans=card.get("in_chans", 1),
                         **kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1:3]
        raise ModelError(f"the weights in {source} do not fit the '{card['architecture']}' architecture "
                         f"({'; '.join(s.strip() for s in first)}). The file was probably written for another "
                         f"network or version; retrain or pick the matching checkpoint.") from exc
    model.eval()
    return Classifier(model, label_set, Preprocessing.from_dict(card["preprocessing"]), card)


def model_path(path_or_name: str | os.PathLike) -> Path:
    """The file :func:`load` reads for ``path_or_name``: a bundled model's file, a run folder's
    ``model.safetensors``, or the path itself."""
    path = Path(path_or_name)
    if _is_bundled_name(str(path_or_name)):
        suffix = ENSEMBLE_SUFFIX if str(path_or_name) in bundled_ensembles() else ".safetensors"
        return BUNDLED_DIR / f"{path_or_name}{suffix}"
    return path / "model.safetensors" if path.is_dir() else path


def _is_bundled_name(reference: str, folder: Path = Path()) -> bool:
    """Whether ``reference`` names a bundled model: a bundled name with no file or folder of that name in
    ``folder`` (a local file wins over a bundled model of the same name)."""
    return not (folder / reference).exists() and reference in bundled_models()


def load(path_or_name: str | os.PathLike, architecture: str | None = None, device: str | None = None,
         backend: str = "torch") -> Classifier:
    """Load a ferlab model from a .safetensors file, a Lightning .ckpt, a run folder, an exported .onnx file
    or an ensemble file (``*.ensemble.json``, loaded as an :class:`Ensemble`).

    Args:
        path_or_name: a bundled model name (see :func:`bundled_models`), a model file, a checkpoint, or a
            run folder (its ``model.safetensors``).
        architecture: if given, fail unless the file holds this architecture.
        device: where to put the model (default CPU).
        backend: ``torch``, or ``onnx`` to run the forward pass in ONNX Runtime (CPU; exported in memory
            unless the file is already .onnx), or ``onnx-int8`` for a bundled model's int8 graph (faster on
            CPU, a few tenths of a point less accurate; ``ferlab export --int8`` writes one for any model).
            Same predict / predict_proba; no gradients (no explain).

    Raises:
        ModelError: missing file, a file ferlab did not write, or weights of another architecture.

    Example:
        >>> clf = load("runs/mini_xception/model.safetensors")  # doctest: +SKIP
        >>> clf.predict(faces_uint8)  # doctest: +SKIP
    """
    path = model_path(path_or_name)
    if path.name.endswith(ENSEMBLE_SUFFIX) and path.is_file():
        if architecture is not None:
            raise ModelError(f"{path_or_name} is an ensemble, not one '{architecture}' network")
        return load_ensemble(path, device=device, backend=backend)
    if path.suffix == ".onnx" and path.is_file():
        from ferlab.onnx import load_onnx

        return load_onnx(path)
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend '{backend}'; choose {', '.join(BACKENDS)}")
    if backend == "onnx-int8":
        return _load_int8(path_or_name)
    if not path.is_file():
        bundled = ", ".join(bundled_models()) or "none"
        raise ModelError(f"no model at {path_or_name}: pass a bundled model name ({bundled}), a .safetensors "
                         f"model, a .ckpt checkpoint or a run folder written by 'ferlab train'.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(f"{path} is not a readable safetensors file ({exc}).") from exc
        if CARD_KEY not in meta:
            raise ModelError(f"{path} has no ferlab model card in its metadata; it was not written by ferlab.")
        card = json.loads(meta[CARD_KEY])
    elif path.suffix == ".ckpt":
        try:
            # weights_only: a checkpoint from a stranger must not be able to run code
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
            raise ModelError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc}).") from exc
        card = (ckpt.get("hyper_parameters") or {}).get("card")
        if not isinstance(card, dict):
            raise ModelError(f"{path} is not a ferlab checkpoint (no model card in its hyper-parameters).")
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    else:
        raise ModelError(f"cannot load {path}: expected a .safetensors or .ckpt file or a run folder.")
    clf = _build(card, state, str(path), architecture)
    if backend == "onnx":
        from ferlab.onnx import to_onnx

        return to_onnx(clf)
    return clf.to(device) if device else clf


def _load_int8(reference: str | os.PathLike) -> Any:
    """The bundled int8 graph of ``reference``; int8 graphs of other models need calibration faces, so they
    are written once with ``ferlab export --int8`` and loaded as .onnx files."""
    from ferlab.onnx import load_onnx

    name = str(reference)
    if _is_bundled_name(name) and (BUNDLED_DIR / f"{name}{INT8_SUFFIX}").is_file():
        return load_onnx(BUNDLED_DIR / f"{name}{INT8_SUFFIX}")
    what = (f"bundled '{name}' ships no int8 graph (those that do: {', '.join(bundled_int8_models()) or 'none'})"
            if _is_bundled_name(name) else f"{name} is no bundled model with an int8 graph")
    raise ModelError(f"backend 'onnx-int8': {what}. Write one with 'ferlab export {name} --int8 --data <its "
                     f"training data> --out model{INT8_SUFFIX}' and load that file.")


ENSEMBLE_SUFFIX = ".ensemble.json"
# what an ensemble's card takes from its first member: how faces are read (the data, not the recipe)
_SHARED_CARD_KEYS = ("labels", "preprocessing", "in_chans", "data")


class Ensemble:
    """Several classifiers of the same classes as one: their log-probabilities (after each member's own
    preprocessing and test-time augmentation) are averaged, the way ``loss.distill_from`` combines teachers.

    Args:
        members: loaded classifiers (torch or ONNX) or anything :func:`load` accepts; at least two, with the
            same classes and input channels.
        card: what the ensemble's file says of it (``tta``, ``metrics``, ``command``...), over the card built
            from the members.

    Example:
        >>> ens = Ensemble(["emotion", "emotion-base"])  # doctest: +SKIP
        >>> ens.predict_proba(faces_uint8, tta="ten-crop")  # doctest: +SKIP
        >>> ens.save("mine.ensemble.json"); ferlab.load("mine.ensemble.json")  # doctest: +SKIP
    """

    def __init__(self, members: list[Any], device: str | None = None, backend: str = "torch",
                 card: dict[str, Any] | None = None) -> None:
        # names and paths are kept so that save() can write the ensemble as references to its members
        self.sources = [str(m) if isinstance(m, str | os.PathLike) else None for m in members]
        self.members = [as_classifier(m, device=device, backend=backend) for m in members]
        if len(self.members) < 2:
            raise ModelError(f"an ensemble needs at least two models, got {len(self.members)}; "
                             f"use the model itself")
        first = self.members[0]
        for member in self.members[1:]:
            if member.class_names != first.class_names:
                raise ModelError(f"ensemble members must share their classes: {list(first.class_names)} vs "
                                 f"{list(member.class_names)}")
            if member.card.get("in_chans", 1) != first.card.get("in_chans", 1):
                raise ModelError("ensemble members must all take grey faces or all colour faces")
        self.label_set = first.label_set
        self.preprocessing = first.preprocessing
        names = [m.card.get("architecture", type(m).__name__) for m in self.members]
        # data is read as the first member was trained (FER2013 faces are 48x48 grey for every member)
        self.card = {**{k: first.card[k] for k in _SHARED_CARD_KEYS if k in first.card},
                     "architecture": "ensemble(" + ", ".join(names) + ")", "metrics": {},
                     "parameters": sum(m.card.get("parameters", 0) for m in self.members),
                     "macs_per_face": sum(m.card.get("macs_per_face", 0) for m in self.members),
                     "train_seconds": round(sum(m.card.get("train_seconds") or 0 for m in self.members), 1),
                     **(card or {})}

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.label_set.names

    @property
    def backend(self) -> str:
        return getattr(self.members[0], "backend", "torch")

    def __repr__(self) -> str:
        return f"Ensemble({', '.join(repr(m) for m in self.members)})"

    @property
    def temperature(self) -> float:
        """Divisor of the mean log-probabilities fitted by ``ferlab calibrate`` on the ensemble; 1 if never
        fitted (averaging sharpens or flattens probabilities, so members' own temperatures do not carry over)."""
        return float(self.card.get("temperature", 1.0))

    def logits(self, images: torch.Tensor | np.ndarray, batch_size: int = CPU_CHUNK, tta: str | None = None
               ) -> torch.Tensor:
        """Mean log-probabilities (N, num_classes) of the members, each with ``tta`` (None: the ensemble
        card's ``tta``, else none; the members' own cards are not asked), divided by the card's temperature."""
        tta = resolve_tta(tta, self.card)
        mean = torch.stack([torch.log_softmax(m.logits(images, batch_size=batch_size, tta=tta).float(), 1)
                            for m in self.members]).mean(0)
        return mean / self.temperature

    def predict_proba(self, images: torch.Tensor | np.ndarray, batch_size: int = CPU_CHUNK, tta: str | None = None
                      ) -> torch.Tensor:
        """Class probabilities (N, num_classes): the softmax of the mean log-probabilities."""
        return torch.softmax(self.logits(images, batch_size, tta), dim=1)

    def predict(self, images: torch.Tensor | np.ndarray, batch_size: int = CPU_CHUNK, tta: str | None = None
                ) -> list[str]:
        """Top class name per face."""
        return [self.class_names[i] for i in self.logits(images, batch_size, tta).argmax(1).tolist()]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the ensemble as ``<name>.ensemble.json``: its card and its members as bundled names or paths
        relative to the file's folder (the members' weights are not copied)."""
        path = Path(path)
        if not path.name.endswith(ENSEMBLE_SUFFIX):
            raise ModelError(f"an ensemble is saved as a '*{ENSEMBLE_SUFFIX}' file, not {path.name}")
        if None in self.sources:
            raise ModelError("this ensemble was built from loaded classifiers; build it from bundled names or "
                             "model files to save it (the file refers to its members, it does not hold them)")
        members = [source if _is_bundled_name(source) else os.path.relpath(Path(source).resolve(),
                                                                            path.parent.resolve())
                   for source in self.sources]
        atomic_write_json(path, {**self.card, "members": members})
        return path


def bundled_ensembles() -> list[str]:
    """Names of the ensembles of bundled models shipped inside the package."""
    return sorted(p.name.removesuffix(ENSEMBLE_SUFFIX) for p in BUNDLED_DIR.glob(f"*{ENSEMBLE_SUFFIX}"))


def load_ensemble(path: str | os.PathLike, device: str | None = None, backend: str = "torch") -> Ensemble:
    """The ensemble an ``*.ensemble.json`` file describes (see :meth:`Ensemble.save`)."""
    path = Path(path)
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path} is not a readable ensemble file ({exc}).") from exc
    members = spec.get("members") if isinstance(spec, dict) else None
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise ModelError(f"{path} has no 'members' list of model names or paths; write it with Ensemble.save()")
    # bundled names stay names; anything else is a path relative to the file, as save() writes it
    resolved = [m if _is_bundled_name(m, path.parent) else str(path.parent / m) for m in members]
    return Ensemble(resolved, device=device, backend=backend, card=spec)


def as_classifier(model: Any, device: str | None = None, backend: str = "torch") -> Any:
    """``model`` itself when it is already a loaded classifier (torch, ONNX or an Ensemble), an Ensemble for a
    list of models, else :func:`load` of it."""
    from ferlab.onnx import OnnxClassifier

    if isinstance(model, Classifier | OnnxClassifier | Ensemble):
        return model
    if isinstance(model, list | tuple):
        return Ensemble(list(model), device=device, backend=backend)
    return load(model, device=device, backend=backend)
