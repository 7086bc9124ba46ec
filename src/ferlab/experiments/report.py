"""``reports/<suite>.md``: each experiment's published number beside ours, with parameters and training time."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ferlab.experiments.suite import Suite, finished_run, load_suite
from ferlab.io import atomic_write_text

METRICS = ("accuracy", "weighted_f1", "macro_f1", "balanced_accuracy")


def collect_results(suite: Suite | str, profile: str = "quick", out_dir: str | os.PathLike = "runs/experiments"
                    ) -> list[dict[str, Any]]:
    """One row per experiment: published numbers, ours on val (and test when the data has it), size, time."""
    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    rows = []
    for exp in suite.experiments:
        row: dict[str, Any] = {"experiment": exp.name, "label": exp.label, "published": exp.published,
                               "note": exp.note, "run": None}
        run = finished_run(suite.root(profile, out_dir) / exp.name)
        if run is not None:
            summary = json.loads((run / "summary.json").read_text())
            card = json.loads((run / "model.json").read_text())
            row.update(run=str(run), ours={k: summary["metrics"].get(k) for k in METRICS},
                       test={k: summary["test_metrics"].get(k) for k in METRICS} if "test_metrics" in summary else None,
                       minutes=summary["train_seconds"] / 60, epochs=card.get("epochs_run"),
                       architecture=card.get("architecture"), hardware=card.get("hardware"),
                       train_images=card.get("data", {}).get("images", {}).get("train"),
                       threads=card.get("config", {}).get("trainer", {}).get("num_threads"),
                       region_crops=card.get("data", {}).get("region_crops"))
            # the model card counts them at the end of training (ferlab train)
            row["params"], row["trainable"] = card.get("parameters"), card.get("trainable_parameters")
        rows.append(row)
    return rows


def _fmt(v: float | None, pct: bool = True) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    return f"{v:.1%}" if pct else f"{v:.3f}"


def write_report(suite: Suite | str, profile: str = "quick", out_dir: str | os.PathLike = "runs/experiments",
                 reports_dir: str | os.PathLike = "reports") -> Path:
    """Write ``<reports_dir>/<suite>.md`` and ``<reports_dir>/<suite>/accuracy.png``; experiments that have not
    run under ``profile`` are listed as such."""
    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    rows = collect_results(suite, profile, out_dir)
    reports = Path(reports_dir)
    figs = reports / suite.name
    figs.mkdir(parents=True, exist_ok=True)
    done = [r for r in rows if r["run"]]
    prof = suite.profiles[profile]
    hardware = next((r["hardware"] for r in done if r.get("hardware")), "not run yet")
    minutes = sum(r["minutes"] for r in done)
    threads = {r.get("threads") for r in done} - {None}
    if threads:  # times depend on it: say so when runs were limited to fewer threads than cores
        hardware += f", {'/'.join(map(str, sorted(threads)))} torch thread(s) per run"
    lines = [f"# {suite.title}", "", suite.source.strip(), "",
             f"Profile **{profile}**: {prof.get('description', '')} "
             f"(overrides: `{' '.join(suite.profile_overrides(profile)) or 'none'}`). "
             f"{len(done)} of {len(rows)} experiments ran, {minutes:.0f} min of training in all on {hardware}.", "",
             "Reproduce: `ferlab experiments run " + suite.name + f" --profile {profile}` then "
             f"`ferlab experiments report {suite.name} --profile {profile}`.", "",
             "Ours = FER2013 PublicTest (the validation split; PrivateTest is withheld), best epoch. Published = "
             "the report's number on its own test split.", "",
             "| experiment | published acc | ours acc | published F1 (w) | ours F1 (w) | ours F1 (macro) | "
             "ours bal. acc | params | min | epochs | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pub = r["published"]
        if r["run"]:
            o = r["ours"]
            params = f"{r['params']:,}" if r.get("params") else "–"
            if r.get("trainable") and r.get("params") and r["trainable"] != r["params"]:
                params += f" ({r['trainable']:,} trainable)"
            cells = [_fmt(o["accuracy"]), _fmt(pub.get("weighted_f1"), False), _fmt(o["weighted_f1"], False),
                     _fmt(o["macro_f1"], False), _fmt(o["balanced_accuracy"]), params, f"{r['minutes']:.1f}",
                     str(r["epochs"])]
            if r.get("test"):
                cells[0] += f" (test {_fmt(r['test']['accuracy'])})"
        else:
            cells = ["not run", _fmt(pub.get("weighted_f1"), False)] + ["–"] * 6
        lines.append(f"| {r['label']} | {_fmt(pub.get('accuracy'))} | " + " | ".join(cells) + f" | {r['note']} |")
    crops = [r for r in done if r.get("region_crops")]
    if crops:
        lines += ["", "Landmark crops (from each run's model card):", ""]
        lines += [_crop_line(r["label"], r["region_crops"]) for r in crops]
    if done:
        _plot(done, figs / "accuracy.png", f"{suite.name} ({profile})")
        lines += ["", f"![published vs ours]({suite.name}/accuracy.png)"]
    path = reports / f"{suite.name}.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _crop_line(label: str, crops: dict[str, Any]) -> str:
    """How many faces the landmark detector missed, per split, and what became of them."""
    failures = crops.get("detector_failures", {})
    missed, rows = sum(failures.values()), crops.get("rows", 0)
    per_split = ", ".join(f"{n:,} in {split}" for split, n in failures.items())
    fate = ("their landmarks were fitted in the whole image instead" if crops.get("fallback")
            else f"{crops.get('dropped', 0):,} faces were dropped")
    share = f" ({missed / rows:.1%})" if rows else ""
    return (f"- {label}: the detector found no face in {missed:,} of {rows:,} images{share} ({per_split}); "
            f"{fate}.")


def _plot(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    from ferlab.evaluation.plots import _pyplot, _save

    plt = _pyplot()
    labels = [r["label"] for r in rows]
    x = np.arange(len(rows))
    pub = [r["published"].get("accuracy", np.nan) for r in rows]
    ours = [r["ours"]["accuracy"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(rows) + 2), 3.8))
    ax.bar(x - 0.2, pub, 0.4, label="published", color="#999999")
    ax.bar(x + 0.2, ours, 0.4, label="ours (PublicTest)", color="#1b9e77")
    ax.set_xticks(x, labels, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, max(0.8, np.nanmax([*pub, *ours]) + 0.05))
    ax.legend(fontsize=8)
    ax.set_title(title)
    return _save(fig, path)
