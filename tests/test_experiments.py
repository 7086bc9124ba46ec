"""Suites of reference experiments: every suite loads, the runner trains / skips / resumes, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ferlab.cli import main
from ferlab.errors import ConfigError
from ferlab.experiments import collect_results, list_suites, load_suite, run_suite, write_report

ROOT = Path(__file__).resolve().parents[1]
SUITES = sorted((ROOT / "configs" / "suites").glob("*.yaml"))

# what the issue and the reports publish, and must appear beside ours
PUBLISHED = {("maastricht1", "final"): 0.618, ("vgg2017", "no_augmentation"): 0.589,
             ("vgg2017", "augmentation"): 0.622, ("copenhagen", "reduced5_native"): 0.576,
             ("copenhagen", "reduced5_efficientnet"): 0.685}


@pytest.mark.parametrize("path", SUITES, ids=[p.stem for p in SUITES])
def test_every_suite_loads_with_both_profiles(path):
    suite = load_suite(path)
    assert {"quick", "full"} <= set(suite.profiles) and suite.experiments_for("quick")
    for exp in suite.experiments:
        assert exp.config.is_file() and exp.config.is_relative_to(ROOT / "configs" / "experiments")


def test_published_numbers_are_in_the_suites():
    for (suite, exp), value in PUBLISHED.items():
        assert load_suite(ROOT / "configs" / "suites" / f"{suite}.yaml").experiment(exp).published["accuracy"] == value
    expected = {"maastricht1", "maastricht1-grid", "maastricht2", "vgg2017", "copenhagen", "transfer"}
    assert expected <= {p.stem for p in SUITES}


def _suite(tmp_path: Path, fer_csv: Path) -> Path:
    exp = tmp_path / "experiments"
    exp.mkdir()
    (exp / "base.yaml").write_text(f"data:\n  path: {fer_csv}\n  drop_leaks: false\nmodel:\n  name: maastricht_cnn1\n"
                                   "trainer:\n  epochs: 3\n  batch_size: 32\n  early_stopping: null\n  progress: none\n"
                                   "  num_threads: 1\n")
    (exp / "first.yaml").write_text("base: base.yaml\n")
    (exp / "second.yaml").write_text("base: base.yaml\noptim:\n  lr: 0.0003\n")
    suites = tmp_path / "suites"
    suites.mkdir()
    path = suites / "tiny.yaml"
    path.write_text("title: Tiny suite\nsource: generated stripes\nprofiles:\n"
                    "  quick: {description: one epoch, overrides: [trainer.epochs=1]}\n"
                    "  full: {description: three epochs, overrides: []}\n"
                    "experiments:\n"
                    "  - {config: ../experiments/first.yaml, label: First, published: {accuracy: 0.5}}\n"
                    "  - config: ../experiments/second.yaml\n    label: Second from first\n"
                    "    overrides: ['model.init_from=@first']\n"
                    "  - {config: ../experiments/first.yaml, name: big, label: Only full, profiles: [full]}\n")
    return path


def test_run_skip_resume_and_report(tmp_path, fer_csv):
    suite = load_suite(_suite(tmp_path, fer_csv))
    runs = tmp_path / "runs"
    assert [e.name for e in suite.experiments_for("quick")] == ["first", "second"]
    with pytest.raises(ConfigError, match="has not finished"):
        suite.config(suite.experiment("second"), "quick", runs)
    statuses = run_suite(suite, "quick", runs, log=lambda _: None)
    assert [s["status"] for s in statuses] == ["trained", "trained"]
    second = Path(statuses[1]["run"])
    card = json.loads((second / "model.json").read_text())
    assert card["config"]["model"]["init_from"] == statuses[0]["run"]
    # finished runs are skipped; a run without summary.json is resumed from its last checkpoint
    (second / "summary.json").unlink()
    statuses = run_suite(suite, "quick", runs, log=lambda _: None)
    assert [s["status"] for s in statuses] == ["skipped", "trained"] and statuses[1]["run"] == str(second)
    assert (second / "summary.json").is_file()

    rows = collect_results(suite, "quick", runs)
    assert rows[0]["ours"]["accuracy"] is not None and rows[0]["params"] > 1000 and rows[2]["run"] is None
    md = write_report(suite, "quick", runs, tmp_path / "reports")
    text = md.read_text()
    assert md.name == "tiny.md" and "| First | 50.0% |" in text and "| Only full | – | not run |" in text
    assert "ferlab experiments run tiny --profile quick" in text
    assert (tmp_path / "reports" / "tiny" / "accuracy.png").stat().st_size > 1000


def test_report_on_fake_run_folders(tmp_path):
    """The report reads only summary.json and model.json: fake run folders give a full table."""
    suites = tmp_path / "suites"
    suites.mkdir()
    (tmp_path / "a.yaml").write_text("model:\n  name: vgg2017\n")
    (suites / "fake.yaml").write_text("title: Fake\nsource: s\nprofiles: {quick: {overrides: []}, full: {overrides: []}}\n"
                                      "experiments:\n  - {config: ../a.yaml, label: A, published: {accuracy: 0.622, "
                                      "weighted_f1: 0.6}, note: their split leaked}\n")
    run = tmp_path / "runs" / "fake" / "quick" / "a" / "20260101-000000"
    run.mkdir(parents=True)
    metrics = {"accuracy": 0.5912, "weighted_f1": 0.58, "macro_f1": 0.51, "balanced_accuracy": 0.55}
    (run / "summary.json").write_text(json.dumps({"metrics": metrics, "train_seconds": 600.0,
                                                  "test_metrics": {**metrics, "accuracy": 0.6}}))
    (run / "model.json").write_text(json.dumps({"epochs_run": 12, "architecture": "vgg2017", "hardware": "test CPU",
                                                "config": {"trainer": {"num_threads": 1}},
                                                "data": {"region_crops": {"rows": 400, "fallback": True,
                                                                          "detector_failures": {"train": 30,
                                                                                                "val": 10}}}}))
    md = write_report(suites / "fake.yaml", "quick", tmp_path / "runs", tmp_path / "reports")
    line = next(row for row in md.read_text().splitlines() if row.startswith("| A |"))
    assert "62.2%" in line and "59.1% (test 60.0%)" in line and "0.600" in line and "10.0" in line
    assert "their split leaked" in line and "test CPU, 1 torch thread(s) per run" in md.read_text()
    assert "- A: the detector found no face in 40 of 400 images (10.0%) (30 in train, 10 in val)" in md.read_text()


def test_bad_suites(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: x\nprofiles: {quick: {}}\nexperiments: []\n")
    with pytest.raises(ConfigError, match="'full'"):
        load_suite(bad)
    bad.write_text("title: x\nprofiles: {quick: {}, full: {}}\nexperiments:\n  - {config: missing.yaml}\n")
    with pytest.raises(ConfigError, match="not found"):
        load_suite(bad)
    bad.write_text("title: x\nprofile: {}\n")
    with pytest.raises(ConfigError, match="unknown suite keys"):
        load_suite(bad)
    with pytest.raises(ConfigError, match="maastricht1"):
        load_suite("maastricht") if "maastricht1" in list_suites() else load_suite(ROOT / "configs/suites/maastricht")


def test_cli(tmp_path, fer_csv, capsys):
    path = _suite(tmp_path, fer_csv)
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    assert main(["experiments", "run", str(path), "--only", "first", "--runs", str(runs), "--reports", str(reports),
                 "--report", "--set", "trainer.num_threads=1", "--set", "augment.hflip=false"]) == 0
    assert (reports / "tiny.md").is_file() and "1 trained" in capsys.readouterr().out
    card = json.loads(next((runs / "tiny" / "quick" / "first").glob("*/model.json")).read_text())
    assert card["config"]["augment"]["hflip"] is False and card["config"]["trainer"]["epochs"] == 1
    assert main(["experiments", "run", str(path), "--profile", "nightly", "--runs", str(runs)]) == 2
    assert "quick" in capsys.readouterr().err
