"""Suites: named lists of experiment configs with the published numbers they reproduce, and their runner.

A suite file (``configs/suites/<name>.yaml``)::

    title: First Maastricht report: depth ablation
    source: the report, its split and what it measured
    profiles:
      quick: {description: 6 epochs on 8,000 training images, overrides: [trainer.epochs=6, data.limit=8000]}
      full: {description: the configs as written (GPU), overrides: []}
    experiments:
      - config: ../experiments/maastricht1/depth_123.yaml   # relative to the suite file
        label: "123"
        published: {accuracy: 0.51}
        note: why ours may differ
        profiles: [full]   # optional: only under these profiles

Runs go to ``<out_dir>/<suite>/<profile>/<experiment>/<timestamp>/``. A finished run (``summary.json``) is
skipped, an interrupted one (``checkpoints/last.ckpt``) resumed, so ``run_suite`` can be stopped and restarted.
``model.init_from: "@other"`` in an experiment's overrides starts it from the finished run of ``other``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ferlab.errors import ConfigError, unknown_choice
from ferlab.training.config import ExperimentConfig, load_config


def suites_dir() -> Path:
    """Where suites are looked up by name: ``$FERLAB_CONFIGS/suites`` or ``configs/suites`` here."""
    return Path(os.environ.get("FERLAB_CONFIGS", "configs")) / "suites"


@dataclass
class Experiment:
    """One row of a suite: a config file, extra overrides, and what the reference report published."""

    name: str
    config: Path
    label: str
    published: dict[str, float] = field(default_factory=dict)
    note: str = ""
    overrides: list[str] = field(default_factory=list)
    profiles: list[str] | None = None  # the profiles it runs under (None: all); big backbones skip "quick"


@dataclass
class Suite:
    name: str
    title: str
    source: str
    path: Path
    profiles: dict[str, dict[str, Any]]
    experiments: list[Experiment]

    def experiments_for(self, profile: str) -> list[Experiment]:
        """The experiments that run under ``profile``."""
        self.profile_overrides(profile)
        return [e for e in self.experiments if e.profiles is None or profile in e.profiles]

    def experiment(self, name: str) -> Experiment:
        for exp in self.experiments:
            if exp.name == name:
                return exp
        raise ConfigError(unknown_choice(f"experiment of suite '{self.name}'", name, [e.name for e in self.experiments]))

    def profile_overrides(self, profile: str) -> list[str]:
        if profile not in self.profiles:
            raise ConfigError(unknown_choice(f"profile of suite '{self.name}'", profile, self.profiles))
        return [str(o) for o in self.profiles[profile].get("overrides", [])]

    def root(self, profile: str, out_dir: str | os.PathLike = "runs/experiments") -> Path:
        return Path(out_dir) / self.name / profile

    def config(self, exp: Experiment, profile: str, out_dir: str | os.PathLike = "runs/experiments",
               extra: list[str] | None = None) -> ExperimentConfig:
        """The resolved config of ``exp`` under ``profile`` (``@other`` references become run folders);
        ``extra`` overrides come last (e.g. ``trainer.num_threads=1`` to share the machine)."""
        overrides = [*self.profile_overrides(profile), *exp.overrides, *(extra or [])]
        resolved = []
        for item in overrides:
            key, _, value = item.partition("=")
            if value.startswith("@"):
                done = finished_run(self.root(profile, out_dir) / value[1:])
                if done is None:
                    raise ConfigError(f"experiment '{exp.name}' starts from '{value[1:]}', which has not finished "
                                      f"under profile '{profile}'; run it first (suites list it earlier)")
                item = f"{key}={done}"
            resolved.append(item)
        resolved += [f"out_dir={self.root(profile, out_dir)}", f"name={exp.name}"]
        return load_config(exp.config, resolved)


def _runs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.name) if folder.is_dir() else []


def finished_run(folder: Path) -> Path | None:
    """The newest run folder under ``folder`` that finished (has summary.json)."""
    done = [r for r in _runs(folder) if (r / "summary.json").is_file()]
    return done[-1] if done else None


def unfinished_run(folder: Path) -> Path | None:
    """The newest run folder that stopped after at least one epoch (last.ckpt, no summary.json)."""
    runs = [r for r in _runs(folder) if (r / "checkpoints" / "last.ckpt").is_file() and not (r / "summary.json").is_file()]
    return runs[-1] if runs else None


def list_suites() -> list[str]:
    return sorted(p.stem for p in suites_dir().glob("*.yaml"))


def load_suite(name_or_path: str | os.PathLike) -> Suite:
    """A suite by name (``configs/suites/<name>.yaml``) or path; every experiment's config is validated."""
    path = Path(name_or_path)
    if not path.suffix:
        path = suites_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(unknown_choice("suite", str(name_or_path), list_suites()) +
                              f" (looked in {suites_dir()}; run from the project root or set FERLAB_CONFIGS)")
    if not path.is_file():
        raise ConfigError(f"suite file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    unknown = set(raw) - {"title", "source", "profiles", "experiments"}
    if unknown:
        raise ConfigError(f"{path}: unknown suite keys {sorted(unknown)}; a suite has title, source, profiles, "
                          f"experiments")
    profiles = raw.get("profiles") or {}
    if "quick" not in profiles or "full" not in profiles:
        raise ConfigError(f"{path}: every suite needs a 'quick' (CPU, under an hour) and a 'full' profile")
    experiments = []
    for i, item in enumerate(raw.get("experiments") or []):
        if "config" not in item:
            raise ConfigError(f"{path}: experiment {i + 1} has no 'config' file")
        extra = set(item) - {"config", "name", "label", "published", "note", "overrides", "profiles"}
        if extra:
            raise ConfigError(f"{path}: experiment {i + 1} has unknown keys {sorted(extra)}")
        config = (path.parent / item["config"]).resolve()
        name = str(item.get("name") or config.stem)
        experiments.append(Experiment(name=name, config=config, label=str(item.get("label", name)),
                                      published={k: float(v) for k, v in (item.get("published") or {}).items()},
                                      note=str(item.get("note", "")),
                                      overrides=[str(o) for o in item.get("overrides", [])],
                                      profiles=item.get("profiles")))
    if not experiments:
        raise ConfigError(f"{path}: the suite lists no experiments")
    names = [e.name for e in experiments]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: experiment names repeat: {names}")
    suite = Suite(name=path.stem, title=str(raw.get("title", path.stem)), source=str(raw.get("source", "")),
                  path=path, profiles=profiles, experiments=experiments)
    for exp in experiments:  # fail now, not an hour into the suite
        load_config(exp.config, [o for o in exp.overrides if "=@" not in o])
    return suite


def run_suite(suite: Suite | str, profile: str = "quick", out_dir: str | os.PathLike = "runs/experiments",
              only: list[str] | None = None, overrides: list[str] | None = None,
              log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run every experiment of ``suite`` (or those in ``only``) under ``profile``; skip finished ones, resume
    interrupted ones. ``overrides`` apply to every run after the profile's. Returns one status per experiment."""
    from ferlab.training import train

    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    chosen = [suite.experiment(n) for n in only] if only else suite.experiments_for(profile)
    statuses = []
    for i, exp in enumerate(chosen, 1):
        folder = suite.root(profile, out_dir) / exp.name
        done = finished_run(folder)
        if done is not None:
            log(f"[{i}/{len(chosen)}] {exp.name}: finished earlier ({done})")
            statuses.append({"experiment": exp.name, "status": "skipped", "run": str(done)})
            continue
        partial = unfinished_run(folder)
        if partial is not None:
            log(f"[{i}/{len(chosen)}] {exp.name}: resuming {partial}")
            result = train(resume=partial)
        else:
            log(f"[{i}/{len(chosen)}] {exp.name}: training ({exp.config.name}, profile {profile})")
            result = train(suite.config(exp, profile, out_dir, overrides))
        statuses.append({"experiment": exp.name, "status": "trained", "run": str(result.run_dir),
                         "accuracy": result.metrics.get("accuracy")})
        log(f"    -> {result.metrics.get('accuracy', float('nan')):.4f} val accuracy")
    return statuses
