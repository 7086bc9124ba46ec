"""Tiny end-to-end runs: train -> checkpoint -> ferlab.load -> evaluate, resume, CLI."""

import importlib.util
import json
import time
from pathlib import Path

import lightning as L
import pytest
import torch

import ferlab
from ferlab.cli import main
from ferlab.errors import ConfigError
from ferlab.evaluation import evaluate

pytestmark = pytest.mark.slow

TINY = ["model.name=maastricht_cnn4", "trainer.epochs=2", "trainer.batch_size=32", "trainer.progress=none",
        "trainer.channels_last=false", "scheduler.name=cosine", "optim.lr=0.01"]
# the model card a ClassifierModule needs, for tests that build one without a dataset
MINI_XCEPTION_CARD = {"labels": {"names": list("abcdefg")}, "in_chans": 1, "architecture": "mini_xception",
                      "preprocessing": {"input_size": 48, "normalize": "symmetric"}}


def _config(tmp_path, fer_csv):
    path = tmp_path / "tiny.yaml"
    path.write_text(f"data:\n  path: {fer_csv}\nout_dir: {tmp_path / 'runs'}\n")
    return path


def test_train_load_evaluate_reproduces_logged_accuracy(tmp_path, fer_csv):
    result = ferlab.train(_config(tmp_path, fer_csv), TINY)
    run = result.run_dir
    for name in ("config.yaml", "model.safetensors", "model.json", "curves.png", "summary.json",
                 "checkpoints/last.ckpt", "checkpoints/best.ckpt", "logs/csv/metrics.csv", "eval_val/report.md",
                 "eval_val/confusion_normalized.png", "eval_val/mistakes.png", "eval_val/calibration.json",
                 "eval_val/reliability.png"):
        assert (run / name).is_file(), name
    clf = ferlab.load(run)
    # temperature scaling was fitted on the validation split; the temperature is kept only where it helps
    calibration = clf.card["calibration"]
    assert calibration["split"] == "val" and calibration["n"] == 70
    assert clf.temperature == (calibration["temperature"] if calibration["helps"] else 1.0)
    evaluated = evaluate(clf, fer_csv, split="PublicTest")
    assert evaluated.metrics["n"] == 70
    assert evaluated.accuracy == pytest.approx(result.logged["val_acc"], abs=1e-6)
    assert clf.card["metrics"]["accuracy"] == pytest.approx(evaluated.accuracy)
    from ferlab.models import count_macs, count_parameters

    assert clf.card["parameters"] == count_parameters(clf.model) and clf.card["macs_per_face"] == count_macs(clf.model)
    # the fer_csv fixture holds PrivateTest rows: measured once after training, never used for selection
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_metrics"]["split"] == "test" and (run / "eval_test" / "metrics.json").is_file()
    assert evaluated.accuracy > 2 / 7  # stripes are easy: well above chance after two epochs
    # the Lightning checkpoint is self-describing too
    from_ckpt = ferlab.load(run / "checkpoints" / "best.ckpt")
    x = torch.randint(0, 256, (4, 1, 48, 48), dtype=torch.uint8)
    # same network; the temperature is fitted after training, so it lives in model.safetensors only
    torch.testing.assert_close(from_ckpt.logits(x), clf.logits(x) * clf.temperature)


def _extend_to_two_epochs(run):
    """Lets a finished one-epoch run be resumed for a second epoch."""
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("epochs: 1", "epochs: 2"))


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists")  # expected: resuming writes beside it
def test_resume_continues_from_last_checkpoint(tmp_path, fer_csv):
    first = ferlab.train(_config(tmp_path, fer_csv), [*TINY, "trainer.epochs=1"])
    first_steps = torch.load(first.run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    _extend_to_two_epochs(first.run_dir)
    resumed = ferlab.train(resume=first.run_dir)
    ckpt = torch.load(resumed.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2 * first_steps and resumed.run_dir == first.run_dir
    # the metrics of the first epoch survive the resume, beside those of the second
    logs = pd_logs(first.run_dir)
    assert sorted(logs.dropna(subset=["val_acc"])["epoch"].unique()) == [0, 1]


class _Stopwatch(L.Callback):
    """Sleeps ``pause`` seconds per epoch (a slow first segment) and times the fit it is part of."""

    def __init__(self, pause=0.0):
        self.pause, self.start, self.end = pause, None, None

    def on_fit_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        time.sleep(self.pause)

    def on_fit_end(self, trainer, pl_module):
        self.end = time.perf_counter()


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists")
def test_resumed_run_reports_the_training_time_of_all_segments(tmp_path, fer_csv):
    first = ferlab.train(_config(tmp_path, fer_csv), [*TINY, "trainer.epochs=1"], callbacks=[_Stopwatch(pause=2.0)])
    before = torch.load(first.run_dir / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]["TrainingClock"]
    assert 2.0 <= before["seconds"] <= first.seconds
    _extend_to_two_epochs(first.run_dir)
    watch = _Stopwatch()
    resumed = ferlab.train(resume=first.run_dir, callbacks=[watch])
    # the second segment alone is shorter than the first's 2 s pause: only the sum passes
    assert resumed.seconds >= before["seconds"] + (watch.end - watch.start)
    card = ferlab.load(resumed.model_path).card
    assert card["train_seconds"] == pytest.approx(resumed.seconds, abs=0.1)
    summary = json.loads((resumed.run_dir / "summary.json").read_text())
    assert summary["train_seconds"] == pytest.approx(resumed.seconds)


def test_cli_train_evaluate_and_errors(tmp_path, fer_csv, capsys):
    config = _config(tmp_path, fer_csv)
    assert main(["train", "--config", str(config), *TINY]) == 0
    run = next((tmp_path / "runs" / "tiny").iterdir())
    out_dir = tmp_path / "eval"
    assert main(["evaluate", str(run / "model.safetensors"), "--data", str(fer_csv), "--split", "PrivateTest",
                 "--out", str(out_dir)]) == 0
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["n"] == 70
    assert "accuracy" in capsys.readouterr().out
    model = run / "model.safetensors"
    assert main(["calibrate", str(run), "--data", str(fer_csv), "--split", "PublicTest", "--out",
                 str(tmp_path / "cal"), "--write"]) == 0
    assert "temperature" in capsys.readouterr().out and (tmp_path / "cal" / "reliability.png").is_file()
    written = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert ferlab.load(model).card["calibration"] == written
    assert main(["calibrate", str(model), "--split", "Holdout"]) == 2
    assert "unknown split" in capsys.readouterr().err
    assert main(["train", "--config", str(config), "optim.nme=sgd"]) == 2
    assert "Did you mean 'name'" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nothing.safetensors")]) == 2
    assert "no model at" in capsys.readouterr().err


def test_cli_models_and_inspect(tmp_path, fer_csv, capsys):
    assert main(["models", "xception"]) == 0
    assert "58,423" not in capsys.readouterr().out  # trainable count shown, not Keras' total
    assert main(["data", "inspect", str(fer_csv), "--out", str(tmp_path / "inspect")]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "exact duplicates" in out
    assert (tmp_path / "inspect" / "sample_grid.png").stat().st_size > 1000


def test_cli_output_into_a_closed_pipe_is_no_traceback():
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)  # the reader is gone before ferlab prints a line (`ferlab models | head -0`)
    try:
        proc = subprocess.run([sys.executable, "-m", "ferlab", "models"], stdout=write, stderr=subprocess.PIPE,
                              timeout=120)
    finally:
        os.close(write)
    assert proc.returncode == 141 and b"Traceback" not in proc.stderr, proc.stderr.decode()


class _InterruptAtEpoch(__import__("lightning").Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists")
def test_interrupted_run_keeps_a_valid_last_checkpoint(tmp_path, fer_csv):
    with pytest.raises(KeyboardInterrupt, match="--resume"):
        ferlab.train(_config(tmp_path, fer_csv), [*TINY, "trainer.epochs=3"], callbacks=[_InterruptAtEpoch(1)])
    run = next((tmp_path / "runs" / "tiny").iterdir())
    last = run / "checkpoints" / "last.ckpt"
    assert ferlab.load(last).card["architecture"] == "maastricht_cnn4"
    assert not [p for p in (run / "checkpoints").iterdir() if p.suffix == ".tmp"]
    result = ferlab.train(resume=run)
    assert (result.run_dir / "model.safetensors").is_file()


@pytest.mark.parametrize("options", [
    ["loss.class_weights=inverse", "loss.focal_gamma=2.0"],
    ["loss.sampler=oversample", "loss.oversample={disgust: 4.0}", "loss.label_smoothing=0.1"],
    ["loss.sampler=weighted", "augment.mixup=0.4", "augment.cutmix=1.0", "augment.mix_prob=1.0"],
    ["optim.name=sgd", "optim.nesterov=true", "scheduler.name=onecycle", "augment.erasing=0.5", "optim.fused=true"],
    ["optim.name=nadam", "scheduler.name=plateau", "preprocess.equalize=true", "preprocess.normalize=dataset"],
    ["augment.resize_from=32", "augment.resize_until=2", "trainer.epochs=2", "model.name=mini_xception"],
    ["augment.alternate_flips=true", "trainer.epochs=2", "loss.sampler=oversample"],
], ids=["weights-focal", "oversample-smoothing", "weighted-mixup-cutmix", "sgd-onecycle-erasing", "nadam-plateau-eq",
        "progressive-resize", "alternate-flips"])
def test_training_options_run_end_to_end(tmp_path, fer_csv, options):
    result = ferlab.train(_config(tmp_path, fer_csv), [*TINY, "trainer.epochs=1", *options])
    clf = ferlab.load(result.run_dir)
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
    assert clf.card["config"]["loss"] == ferlab.load_config(result.run_dir / "config.yaml").to_dict()["loss"]
    if "preprocess.normalize=dataset" in options:
        assert clf.preprocessing.normalize == "dataset" and clf.preprocessing.std != 0.25  # fitted, not default


def test_progressive_resizing_schedule():
    from ferlab.training.config import load_config
    from ferlab.training.module import ClassifierModule

    cfg = load_config(None, ["augment.resize_from=32", "augment.resize_until=4"])
    module = ClassifierModule(cfg.to_dict(), MINI_XCEPTION_CARD)
    assert [module.train_size(e) for e in range(6)] == [32, 36, 40, 44, 48, 48]
    module.cfg.augment.resize_from = None
    assert module.train_size(0) == 48
    with pytest.raises(ConfigError, match="resize_from=32.*global pooling"):  # a flatten + dense head
        ClassifierModule(cfg.to_dict(), MINI_XCEPTION_CARD | {"architecture": "maastricht_cnn4"})


def test_ferplus_soft_labels_train(tmp_path, fer_csv, ferplus_csv):
    result = ferlab.train(_config(tmp_path, fer_csv),
                          [*TINY, "trainer.epochs=1", f"data.ferplus={ferplus_csv}", "data.soft_labels=true"])
    card = ferlab.load(result.run_dir).card
    assert card["data"]["soft_labels"] and card["data"]["images"]["train"] == 278  # 2 rows dropped by FER+ votes
    with pytest.raises(ConfigError, match="ferplus"):
        ferlab.train(_config(tmp_path, fer_csv), [*TINY, "trainer.epochs=1", "data.soft_labels=true"])
    blended = ferlab.train(_config(tmp_path, fer_csv),
                           [*TINY, "trainer.epochs=1", f"data.ferplus={ferplus_csv}", "data.ferplus_blend=0.5"])
    card = ferlab.load(blended.run_dir).card
    assert card["data"]["ferplus_blend"] == 0.5 and card["data"]["images"]["train"] == 280  # FER2013 rows, labels
    with pytest.raises(ConfigError, match="ferplus_blend"):
        ferlab.train(_config(tmp_path, fer_csv), [*TINY, "trainer.epochs=1", "data.ferplus_blend=0.5"])


def test_ferplus_blend_targets(tmp_path, fer_csv, ferplus_csv):
    from ferlab.training.config import load_config
    from ferlab.training.datamodule import FERDataModule

    cfg = load_config(_config(tmp_path, fer_csv), [f"data.ferplus={ferplus_csv}", "data.ferplus_blend=0.25"])
    data = FERDataModule(cfg)
    data.setup()
    train = data.split("train")
    one_hot = torch.nn.functional.one_hot(train.labels, 7).float()
    torch.testing.assert_close(data._targets(train), 0.75 * one_hot + 0.25 * train.soft_labels)
    _, labels = next(iter(data.val_dataloader()))
    assert labels.ndim == 1  # validation stays on the FER2013 labels


def test_distillation_and_weight_averaging(tmp_path, fer_csv):
    teacher = ferlab.train(_config(tmp_path, fer_csv), [*TINY, "trainer.epochs=1"]).run_dir
    student_overrides = [*TINY, "trainer.epochs=1", f"loss.distill_from={teacher}", "loss.distill_weight=0.7",
                         "loss.distill_temperature=3", "trainer.ema_decay=0.9", "loss.distill_folded=true"]
    result = ferlab.train(_config(tmp_path, fer_csv), student_overrides)
    logs = pd_logs(result.run_dir)
    assert "distill_loss" in logs.columns and logs["distill_loss"].notna().any()
    # the checkpoint holds the averaged weights: the saved model is what was validated
    clf = ferlab.load(result.run_dir)
    assert clf.card["metrics"]["accuracy"] == pytest.approx(result.logged["val_acc"], abs=1.5 / 70)
    ckpt = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert "current_model_state" in ckpt  # Lightning keeps the raw weights beside the average

    # the training loss is (1 - w) * label loss + w * T^2 * KL(teacher || student) at temperature T
    from ferlab.training.module import ClassifierModule

    module = ClassifierModule.load_from_checkpoint(result.run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    module.eval()  # no dropout: both passes see the same network
    images = torch.randint(0, 256, (8, 1, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(8) % 7
    x = module._inputs(images, train=False)
    logits = module(x).float()
    t = 3.0
    kl = torch.nn.functional.kl_div(torch.log_softmax(logits / t, 1), module.teacher_log_probs(x), log_target=True,
                                    reduction="batchmean")
    expected = 0.3 * module.criterion(logits, labels) + 0.7 * t * t * kl
    module.augment = lambda v, size=None, flip=None: v  # same input as above
    module.log = lambda *a, **k: None
    torch.testing.assert_close(module.training_step((images, labels, torch.arange(8)), 0), expected)
    from ferlab.tta import mean_log_probs

    # loss.distill_folded: the teachers score through BatchNorm-folded copies, made once, of the same function
    folded = module._teacher_nets(x.device)
    assert folded is module._teacher_nets(x.device)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for net in folded for m in net.modules())
    module.cfg.loss.distill_folded = False
    assert module._teacher_nets(x.device)[0] is module.teachers[0].model
    torch.testing.assert_close(module.teacher_log_probs(x), torch.log_softmax(torch.stack(
        [mean_log_probs(net, x, "flip", t) for net in folded]).mean(0), 1), atol=1e-5, rtol=1e-4)

    # a teacher that takes other input is refused with the fix named
    with pytest.raises(ConfigError, match="preprocess"):
        ferlab.train(_config(tmp_path, fer_csv), [*student_overrides, "preprocess.normalize=symmetric"])


def test_offline_distillation_from_an_ensemble(tmp_path, fer_csv):
    """Offline: the teachers score the unaugmented training images once (log-probabilities averaged over the
    ensemble and the TTA views) and each batch looks its targets up by index; any teacher input works."""
    teachers = [ferlab.train(_config(tmp_path, fer_csv), [*TINY, "trainer.epochs=1", f"seed={seed}"]).run_dir
                for seed in (0, 1)]
    overrides = [*TINY, "trainer.epochs=1", f"loss.distill_from=[{teachers[0]}, {teachers[1]}]",
                 "loss.distill_offline=true", "loss.distill_tta=ten-crop", "loss.distill_temperature=2",
                 "preprocess.normalize=symmetric"]  # other input than the teachers': fine offline
    result = ferlab.train(_config(tmp_path, fer_csv), overrides)
    assert pd_logs(result.run_dir)["distill_loss"].notna().any()
    assert ferlab.load(result.run_dir).card["config"]["loss"]["distill_from"] == [str(t) for t in teachers]

    from ferlab.training.module import ClassifierModule

    module = ClassifierModule.load_from_checkpoint(result.run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    images = torch.randint(0, 256, (6, 1, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    table = module.score_training_images(images, chunk=4)  # chunks must not change the result
    per_teacher = [torch.log_softmax(ferlab.load(t).logits(images, tta="ten-crop"), 1) for t in teachers]
    torch.testing.assert_close(table, (per_teacher[0] + per_teacher[1]) / 2)
    # the same two teachers named by an ensemble file teach as its members
    ensemble_file = ferlab.Ensemble([str(t) for t in teachers]).save(tmp_path / "teachers.ensemble.json")
    config = dict(module.hparams.config, loss={**module.hparams.config["loss"], "distill_from": str(ensemble_file)})
    from_file = ClassifierModule(config, module.hparams.card)
    assert len(from_file.teachers) == 2
    torch.testing.assert_close(from_file.score_training_images(images), table)
    if importlib.util.find_spec("onnxruntime"):  # an exported teacher scores offline as its source does
        from ferlab.onnx import export_onnx

        onnx_file = export_onnx(ferlab.load(teachers[0]), tmp_path / "teacher0.onnx")
        config["loss"] = {**config["loss"], "distill_from": [str(onnx_file), str(teachers[1])], "distill_tta": "flip"}
        flip = [torch.log_softmax(ferlab.load(t).logits(images, tta="flip"), 1) for t in teachers]
        torch.testing.assert_close(ClassifierModule(config, module.hparams.card).score_training_images(images),
                                   (flip[0] + flip[1]) / 2, atol=1e-4, rtol=1e-4)
        for change, refusal in (({"distill_offline": False}, "offline only"), ({"distill_tta": "ten-crop"}, "runs none")):
            with pytest.raises(ConfigError, match=refusal):
                ClassifierModule(dict(config, loss={**config["loss"], **change}), module.hparams.card)
    module.__dict__["teacher_table"] = table
    index = torch.tensor([4, 0, 2])
    torch.testing.assert_close(module.teacher_log_probs(torch.zeros(3, 1, 48, 48), index),
                               torch.log_softmax(table[index] / 2, 1))

    with pytest.raises(ConfigError, match="mixup"):
        ferlab.train(_config(tmp_path, fer_csv), [*overrides, "augment.mixup=0.2"])
    with pytest.raises(ConfigError, match="empty list"):
        ferlab.train(_config(tmp_path, fer_csv), [*TINY, "loss.distill_from=[]"])


def test_offline_distillation_on_stored_augmented_views(tmp_path, fer_csv):
    """distill_views: the teachers score N augmented views of every training face once; epoch e trains on view
    e mod N, so the student's input is exactly the one its targets were scored on."""
    teacher = ferlab.train(_config(tmp_path, fer_csv), [*TINY, "trainer.epochs=1"]).run_dir
    overrides = [*TINY, f"loss.distill_from={teacher}", "loss.distill_offline=true", "loss.distill_views=2",
                 "loss.distill_tta=none", "augment.rotate=20", "augment.hflip=true", "augment.erasing=0.5"]
    result = ferlab.train(_config(tmp_path, fer_csv), overrides)
    assert pd_logs(result.run_dir)["distill_loss"].notna().any()

    from ferlab.training.datamodule import FERDataModule
    from ferlab.training.module import ClassifierModule

    module = ClassifierModule.load_from_checkpoint(result.run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    data = FERDataModule(module.cfg)
    data.setup()
    faces = data.split("train").images
    bank = module.make_view_bank(faces)
    assert bank.shape == (2, *faces.shape) and bank.dtype == torch.uint8
    assert torch.equal(bank, module.make_view_bank(faces))  # seeded: a resumed run draws the same views
    assert not torch.equal(bank[0], bank[1]) and not torch.equal(bank[0], faces)
    # the run cached the teachers' scores of those views in its folder, for a resume to reuse
    cached = torch.load(result.run_dir / "distill_views.pt", weights_only=True)
    assert cached["about"] == module.view_scores_about(faces)
    assert cached["about"]["teachers"] == str(teacher) and cached["about"]["augment"][0] == 20
    scores = [torch.log_softmax(ferlab.load(teacher).logits(view), 1) for view in bank]
    torch.testing.assert_close(cached["table"], torch.stack(scores))
    # another student of the same teachers reads the scores from a shared file instead of scoring again: taught
    # only by a table planted there, in which every view is 'disgust', it predicts 'disgust'; other views are
    # refused, and the file is kept
    shared = tmp_path / "scores.pt"
    planted = torch.log_softmax(torch.zeros_like(cached["table"]).index_fill_(2, torch.tensor([1]), 20.0), 2)
    torch.save({"about": cached["about"], "table": planted}, shared)
    student = [*overrides, f"loss.distill_cache={shared}", "loss.distill_weight=1"]
    taught = ferlab.load(ferlab.train(_config(tmp_path, fer_csv), student).run_dir)
    assert (taught.logits(faces).argmax(1) == 1).float().mean() > 0.9
    with pytest.raises(ConfigError, match="differ in augment"):
        ferlab.train(_config(tmp_path, fer_csv), [*student, "augment.rotate=5"])
    assert torch.equal(torch.load(shared, weights_only=True)["table"], planted)

    # a training step reads the view of its epoch (0 outside a trainer) and that view's targets, not augment.*
    module.__dict__.update(view_bank=bank, teacher_table=cached["table"])
    module.eval()
    module.log = lambda *a, **k: None
    module.augment = lambda *a, **k: pytest.fail("the stored view is augmented already")
    index, labels = torch.tensor([3, 0, 5]), torch.tensor([1, 2, 3])
    logits = module(module._inputs(bank[0][index], train=False)).float()
    t = module.cfg.loss.distill_temperature
    kl = torch.nn.functional.kl_div(torch.log_softmax(logits / t, 1), torch.log_softmax(scores[0][index] / t, 1),
                                    log_target=True, reduction="batchmean")
    expected = 0.5 * module.criterion(logits, labels) + 0.5 * t * t * kl
    torch.testing.assert_close(module.training_step((faces[index], labels, index), 0), expected)

    for change, refusal in (("loss.distill_offline=false", "distill_offline: true"),
                            ("augment.resize_from=32", "resize_from"), ("loss.distill_from=null", "name the teachers"),
                            ("loss.distill_views=0", "distill_cache")):
        with pytest.raises(ConfigError, match=refusal):
            ferlab.train(_config(tmp_path, fer_csv), [*student, change])


def pd_logs(run):
    import pandas as pd

    return pd.concat(pd.read_csv(f) for f in sorted((run / "logs").glob("csv*/metrics.csv")))


def test_ema_decay_warms_up_to_the_configured_value():
    from torch.optim.swa_utils import AveragedModel

    from ferlab.training.train import ema_with_warmup

    net = torch.nn.Linear(1, 1, bias=False)
    averaged = AveragedModel(net, avg_fn=ema_with_warmup(0.99), use_buffers=True)
    expected = 0.0
    for step in range(2000):
        with torch.no_grad():
            net.weight.fill_(float(step))
        averaged.update_parameters(net)
        d = min(0.99, (1 + step) / (10 + step))  # step = updates averaged so far; the first update copies
        expected = d * expected + (1 - d) * step if step else 0.0
    assert averaged.module.weight.item() == pytest.approx(expected, rel=1e-5)
    # once warmed up (decay 0.99 from about 900 updates on) it follows a ramp d / (1 - d) = 99 steps behind
    assert 95 < 1999 - expected < 100


def test_validate_from_skips_early_evaluations(tmp_path, fer_csv, capsys):
    result = ferlab.train(_config(tmp_path, fer_csv), [*TINY, "trainer.epochs=3", "trainer.validate_from=3",
                                                       "trainer.progress=text"])
    logs = pd_logs(result.run_dir).dropna(subset=["val_acc"])
    assert logs.epoch.tolist() == [2]
    # the text log still has a line per epoch, with validation metrics only where there was a validation
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    assert ["val_acc" in line for line in lines] == [False, False, True]
    # each line's train_loss is its own epoch's (a line printed at validation end would show the previous one)
    train_loss = pd_logs(result.run_dir).dropna(subset=["train_loss"]).groupby("epoch").train_loss.last()
    assert [line.split()[3] for line in lines] == [f"{v:.4f}" for v in train_loss]
    assert result.logged["val_acc"] == pytest.approx(logs.val_acc.iloc[0])
    with pytest.raises(ConfigError, match="plateau"):
        ferlab.train(_config(tmp_path, fer_csv), [*TINY, "trainer.validate_from=2", "scheduler.name=plateau"])


def test_settings_that_clash_fail_before_the_run_folder_is_made(tmp_path, fer_csv):
    for clash, match in ((["optim.name=nadam", "optim.fused=true"], "no fused NAdam"),
                         (["trainer.validate_from=2", "scheduler.name=plateau"], "plateau"),
                         (["loss.distill_folded=true"], "online"),
                         (["augment.alternate_flips=true", "augment.hflip=false"], "hflip=true"),
                         (["augment.alternate_flips=true", "loss.distill_views=2"], "distill_views=2")):
        with pytest.raises(ConfigError, match=match):
            ferlab.train(_config(tmp_path, fer_csv), [*TINY, *clash])
    assert not (tmp_path / "runs").exists()


def test_fused_optimiser_follows_the_loop_implementation():
    from ferlab.training.config import load_config
    from ferlab.training.module import ClassifierModule

    states = []
    for fused in (False, True):
        torch.manual_seed(0)
        module = ClassifierModule(load_config(None, ["optim.name=adamw", f"optim.fused={fused}"]).to_dict(),
                                  MINI_XCEPTION_CARD)
        module.trainer = type("T", (), {"estimated_stepping_batches": 10, "max_epochs": 1})()
        opt = module.configure_optimizers()["optimizer"]
        assert opt.defaults["fused"] is (True if fused else None)
        x = torch.rand(8, 1, 48, 48, generator=torch.Generator().manual_seed(1))
        for _ in range(3):
            opt.zero_grad()
            module.model(x).logsumexp(1).mean().backward()
            opt.step()
        states.append(module.model.state_dict())
    for key, value in states[0].items():  # the same update, rounded a little differently
        assert torch.allclose(value.float(), states[1][key].float(), atol=1e-5), key


def test_validation_runs_the_network_with_batchnorm_folded():
    from ferlab.training.config import load_config
    from ferlab.training.module import ClassifierModule

    module = ClassifierModule(load_config(None, []).to_dict(), MINI_XCEPTION_CARD)
    x = torch.rand(16, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    module.model(x)  # training mode: BatchNorm statistics move off their initial values
    net = module._validation_net(0)
    assert net is not module.model and not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    module.model.eval()
    with torch.no_grad():
        assert torch.allclose(net(x), module.model(x), atol=1e-4)
        assert module._validation_net(1) is net  # one copy per validation,
        module.model.head[0].bias.add_(1.0)  # rebuilt at its first batch, after weight averaging swapped weights in
        assert torch.allclose(module._validation_net(0)(x), module.model(x), atol=1e-4)


def test_last_checkpoint_holds_every_finished_epoch(tmp_path, fer_csv):
    # --resume continues from last.ckpt, so it must be the last finished epoch even when that epoch was not
    # validated or did not improve (Lightning's save_last only writes it beside a new best.ckpt)
    seen = []

    class LastEpochSaved(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch:
                last = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
                seen.append(torch.load(last, weights_only=True)["epoch"])

    result = ferlab.train(_config(tmp_path, fer_csv), [*TINY, "trainer.epochs=3", "trainer.validate_from=3"],
                          callbacks=[LastEpochSaved()])
    assert seen == [0, 1]
    assert torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 2


def test_time_budget_before_validate_from_still_gives_a_model(tmp_path, fer_csv):
    # a budget of 0.6 s ends the run in its first epoch, long before the first validation
    result = ferlab.train(_config(tmp_path, fer_csv), [*TINY, "trainer.epochs=50", "trainer.validate_from=40",
                                                       "trainer.max_minutes=0.01"])
    assert pd_logs(result.run_dir).epoch.max() < 40
    assert ferlab.load(result.run_dir).predict(torch.zeros(2, 48, 48, dtype=torch.uint8)) is not None


def test_val_tta_selects_on_the_scores_inference_gives(tmp_path, fer_csv):
    # validation with flip-crops scores each face as Classifier.logits(tta="flip-crops") does, so the logged
    # accuracy is what `ferlab evaluate --tta flip-crops` reproduces from the checkpoint
    result = ferlab.train(_config(tmp_path, fer_csv), [*TINY, "trainer.epochs=1", "trainer.val_tta=flip-crops"])
    clf = ferlab.load(result.run_dir / "checkpoints" / "best.ckpt")
    crops = evaluate(clf, fer_csv, split="PublicTest", tta="flip-crops")
    assert crops.accuracy == pytest.approx(result.logged["val_acc"], abs=1e-6)
    val_loss = pd_logs(result.run_dir).dropna(subset=["val_loss"]).val_loss.iloc[-1]
    assert crops.metrics["nll"] == pytest.approx(val_loss, abs=1e-4)
    assert evaluate(clf, fer_csv, split="PublicTest").metrics["nll"] != pytest.approx(val_loss, abs=1e-4)


@pytest.mark.parametrize(("argv0", "expected"), [("/venv/bin/ferlab", True), ("/repo/src/ferlab/__main__.py", True),
                                                  ("/usr/bin/pytest", False), ("/x/__main__.py", False)])
def test_card_command_is_recorded_for_the_cli_and_python_m(monkeypatch, argv0, expected):
    from ferlab.training.train import _run_as_ferlab

    monkeypatch.setattr("sys.argv", [argv0, "train"])
    assert _run_as_ferlab() is expected
