"""Time to accuracy: wall time of whole training runs until PublicTest accuracy reaches a target; median over seeds.

Measured the way CIFAR-10 speed runs measure it: every seed is one fresh ``python -m ferlab train`` process,
and its wall time includes start-up, data loading, training and the per-epoch evaluations. A run stops as
soon as the monitored validation accuracy reaches the target (``trainer.stop_at``) or its budget is spent
(``trainer.max_minutes``); a run that never reaches the target counts as not reached, and then so does the
median when half the seeds or more missed.

    python benchmarks/time_to_accuracy.py [--config configs/speedrun.yaml] [--target 0.65] [--seeds 0 1 2]
                                          [--budget-minutes 20] [--set key=value ...]

Prints a markdown table and writes benchmarks/results/time_to_accuracy.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from common import RESULTS, report

ROOT = Path(__file__).resolve().parents[1]


def _epochs(run: Path) -> pd.DataFrame:
    """One row per finished epoch with its validation accuracy (NaN before trainer.validate_from)."""
    logs = [pd.read_csv(f) for f in sorted(run.glob("logs/csv*/metrics.csv"))]
    if not logs:
        return pd.DataFrame(columns=["epoch", "val_acc"])
    log = pd.concat(logs).dropna(subset=["epoch"])
    if "val_acc" not in log:
        log["val_acc"] = float("nan")
    return log.groupby("epoch", as_index=False)["val_acc"].max()


def run_seed(config: str, seed: int, target: float, budget: float, overrides: list[str], out: Path) -> dict:
    """Train one seed in a fresh process; return its wall time and when it reached ``target``."""
    log = out / f"seed{seed}.log"
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "ferlab", "train", "--config", config, *overrides, f"seed={seed}",
           f"trainer.stop_at={target}", f"trainer.max_minutes={budget}", "trainer.progress=text",
           f"out_dir={out}", f"name=seed{seed}"]
    start = time.perf_counter()
    with open(log, "w") as f:
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"seed {seed} failed (exit {done.returncode}); its output is in {log}:\n"
                         + "\n".join(log.read_text().splitlines()[-15:]))
    run = next((out / f"seed{seed}").iterdir())
    epochs = _epochs(run)
    hit = epochs[epochs.val_acc >= target]
    return {"seed": seed, "reached": not hit.empty, "wall_seconds": round(seconds, 1),
            "epoch_reached": int(hit.epoch.iloc[0]) + 1 if not hit.empty else None,
            "epochs_run": len(epochs),
            "best_val_acc": round(float(epochs.val_acc.max()), 4) if epochs.val_acc.notna().any() else None,
            "run_dir": str(run)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "speedrun.yaml"))
    parser.add_argument("--target", type=float, default=0.65, help="validation (PublicTest) accuracy to reach")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget-minutes", type=float, default=20.0, help="stop a seed that has not reached it by then")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for every seed")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "time_to_accuracy"), help="folder for the runs")
    parser.add_argument("--out", default=str(RESULTS / "time_to_accuracy.json"))
    args = parser.parse_args()

    out = Path(args.runs) / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    results = []
    for seed in args.seeds:
        results.append(run_seed(args.config, seed, args.target, args.budget_minutes, args.overrides, out))
        r = results[-1]
        print(f"seed {seed}: {'reached' if r['reached'] else 'did not reach'} {args.target:.1%} "
              f"in {r['wall_seconds'] / 60:.1f} min (best {r['best_val_acc']})", flush=True)
    minutes = [r["wall_seconds"] / 60 if r["reached"] else float("inf") for r in results]
    median = statistics.median(minutes)
    rows = [[str(r["seed"]), "yes" if r["reached"] else "no", str(r["epoch_reached"] or "-"), str(r["epochs_run"]),
             f"{r['wall_seconds'] / 60:.2f}", f"{r['best_val_acc']:.2%}" if r["best_val_acc"] is not None else "-"]
            for r in results]
    median_text = f"{median:.2f} min" if median != float("inf") else "not reached"
    rows.append(["median", f"{sum(r['reached'] for r in results)}/{len(results)}", "", "", median_text, ""])
    payload = {"config": args.config, "overrides": args.overrides, "target": args.target,
               "budget_minutes": args.budget_minutes, "median_minutes": None if median == float("inf") else
               round(median, 2), "runs": results, "date": dt.date.today().isoformat()}
    report(args.out, f"Time to {args.target:.1%} validation accuracy ({Path(args.config).name})",
           ["seed", "reached", "epoch", "epochs run", "wall minutes", "best val accuracy"], rows, payload)
    print(f"\n{json.dumps({'median_minutes': payload['median_minutes']})}")


if __name__ == "__main__":
    main()
