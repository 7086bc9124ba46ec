"""Label sets: the names of the classes and how the FER2013 codes map onto them.

A :class:`LabelSet` maps the 7 FER2013 codes (0..6 = angry, disgust, fear, happy, sad, surprise,
neutral) to its own class indices, or to -1 for a code it drops. ``get_label_set`` accepts a
registered name (``fer7``, ``ferplus8``, ``reduced5``, ``fer6-disgust-as-angry``) or a merge
spec such as ``fer7:disgust>angry`` (merge disgust into angry) or ``fer7:-disgust,-fear`` (drop).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ferlab.errors import ConfigError, unknown_choice

FER7 = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# FER+ vote columns in the order of fer2013new.csv (its 8 emotions; 'unknown' and 'NF' are not classes)
FERPLUS8 = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
# FER+ emotion -> FER2013 name, to map FER+ columns onto the fer7 family
FERPLUS_TO_FER7 = {
    "neutral": "neutral",
    "happiness": "happy",
    "surprise": "surprise",
    "sadness": "sad",
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "contempt": None,
}


@dataclass(frozen=True)
class LabelSet:
    """Class names plus the mapping from source codes to class indices (-1 = dropped)."""

    name: str
    names: tuple[str, ...]
    source: tuple[str, ...]  # the names of the source codes (FER7 or FERPLUS8)
    mapping: tuple[int, ...]  # source code -> class index, -1 drops the code

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def map_codes(self, codes: np.ndarray) -> np.ndarray:
        """Map source codes to class indices; dropped codes become -1."""
        table = np.asarray(self.mapping, dtype=np.int64)
        return table[np.asarray(codes, dtype=np.int64)]

    def map_distribution(self, dist: np.ndarray) -> np.ndarray:
        """Sum a (N, len(source)) distribution into (N, num_classes); dropped codes' mass is removed."""
        out = np.zeros((dist.shape[0], self.num_classes), dtype=np.float32)
        for code, idx in enumerate(self.mapping):
            if idx >= 0:
                out[:, idx] += dist[:, code]
        return out

    def to_dict(self) -> dict:
        return {"name": self.name, "names": list(self.names), "source": list(self.source),
                "mapping": list(self.mapping)}

    @classmethod
    def from_dict(cls, d: dict) -> LabelSet:
        return cls(d["name"], tuple(d["names"]), tuple(d["source"]), tuple(d["mapping"]))


def _identity(name: str, names: tuple[str, ...]) -> LabelSet:
    return LabelSet(name, names, names, tuple(range(len(names))))


def _derive(name: str, base: LabelSet, drop: tuple[str, ...] = (), merge: dict[str, str] | None = None
            ) -> LabelSet:
    """A label set from ``base`` with some classes dropped and some merged into others."""
    merge = merge or {}
    for cls_name in (*drop, *merge.keys(), *merge.values()):
        if cls_name not in base.names:
            raise ConfigError(unknown_choice(f"class in label set '{base.name}'", cls_name, base.names))
    kept = [n for n in base.names if n not in drop and n not in merge]
    mapping = []
    for src_name in base.source:
        base_idx = base.mapping[base.source.index(src_name)]
        target = base.names[base_idx] if base_idx >= 0 else None
        target = merge.get(target, target)
        mapping.append(kept.index(target) if target in kept else -1)
    return LabelSet(name, tuple(kept), base.source, tuple(mapping))


_FER7 = _identity("fer7", FER7)
LABEL_SETS: dict[str, LabelSet] = {
    "fer7": _FER7,
    "ferplus8": _identity("ferplus8", FERPLUS8),
    "reduced5": _derive("reduced5", _FER7, drop=("disgust", "fear")),
    "fer6-disgust-as-angry": _derive("fer6-disgust-as-angry", _FER7, merge={"disgust": "angry"}),
    "gender2": _identity("gender2", ("male", "female")),
}


def list_label_sets() -> list[str]:
    """Names of the registered label sets."""
    return sorted(LABEL_SETS)


def get_label_set(spec: str | LabelSet) -> LabelSet:
    """Resolve a label set by name or by a ``base:edits`` spec.

    Edits are comma-separated: ``-name`` drops a class, ``a>b`` merges class a into b.
    Example: ``get_label_set("fer7:disgust>angry")`` gives six classes.
    """
    if isinstance(spec, LabelSet):
        return spec
    base_name, _, edits = spec.partition(":")
    if base_name not in LABEL_SETS:
        raise ConfigError(unknown_choice("label set", base_name, LABEL_SETS))
    base = LABEL_SETS[base_name]
    if not edits:
        return base
    drop, merge = [], {}
    for edit in (e.strip() for e in edits.split(",") if e.strip()):
        if edit.startswith("-"):
            drop.append(edit[1:])
        elif ">" in edit:
            src, dst = (s.strip() for s in edit.split(">", 1))
            merge[src] = dst
        else:
            raise ConfigError(f"bad label-set edit '{edit}' in '{spec}': use '-name' to drop a class "
                              f"or 'a>b' to merge class a into b, e.g. 'fer7:disgust>angry'.")
    return _derive(spec, base, tuple(drop), merge)
