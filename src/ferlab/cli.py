"""``ferlab`` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

from ferlab.backends import BACKENDS
from ferlab.errors import FerlabError
from ferlab.tta import TTA_MODES


def _split_name(name: str) -> str:
    """'PublicTest' -> 'val', with a clear error for a name that is no split."""
    from ferlab.data.splits import canonical_split

    split = canonical_split(name)
    if split is None:
        raise FerlabError(f"unknown split '{name}'; use train, val, test, Training, PublicTest or PrivateTest")
    return split


def _cmd_train(args: argparse.Namespace) -> None:
    import lightning  # noqa: F401  (sets its loggers to INFO on import; quieted below unless --verbose)

    from ferlab.training import train

    if not args.verbose:
        # Lightning's start-up banners (GPU available, tips) are noise in a CLI run; warnings still show
        for name in ("lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)

    result = train(args.config, args.overrides, resume=args.resume)
    print(result)


def _model_data(clf, path: str | None):
    """The dataset at ``path`` (default: the model's training data) read as the model was trained."""
    from ferlab.evaluation.evaluate import load_model_data
    from ferlab.training.config import expand_path

    data = path or clf.card.get("data", {}).get("path")
    if not data:
        raise FerlabError("no data given: pass --data PATH (a FER2013 CSV or an image folder)")
    return load_model_data(clf, expand_path(str(data)))


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from ferlab.classifier import Ensemble, load
    from ferlab.evaluation import evaluate

    if len(args.model) == 1:
        clf = load(args.model[0], backend=args.backend)
    else:
        clf = Ensemble(args.model, backend=args.backend)
    ds = _model_data(clf, args.data)
    result = evaluate(clf, ds, split=args.split, tta=args.tta, batch_size=args.batch_size)
    print(result.summary())
    logged = clf.card.get("metrics", {})
    if logged.get("accuracy") is not None:
        print(f"model card: {logged.get('split')} accuracy {logged['accuracy']:.4f}")
    if args.out:
        names = " + ".join(Path(str(m)).name for m in args.model)
        out = result.save(args.out, title=f"{names} on {result.info['split']}")
        print(f"wrote {out}/metrics.json, report.md, confusion.png, confusion_normalized.png, mistakes.png")


def _cmd_ensemble(args: argparse.Namespace) -> None:
    import datetime as dt
    import shlex

    from ferlab.classifier import Ensemble
    from ferlab.evaluation import evaluate
    from ferlab.system import hardware_summary

    ens = Ensemble(args.model, backend=args.backend, card={"tta": args.tta})
    ds = _model_data(ens, args.data)
    # the card keeps the single-crop numbers beside the ones with the ensemble's own views
    single = evaluate(ens, ds, split=args.split, tta="none", batch_size=args.batch_size)
    result = single if args.tta == "none" else evaluate(ens, ds, split=args.split, batch_size=args.batch_size)
    split = result.info["split"]
    ens.card.update({
        "metrics": {"split": split, **result.summary_metrics()},
        "metrics_single_crop": {"split": split, **single.summary_metrics()},
        "date": dt.date.today().isoformat(), "hardware": hardware_summary(),
        "command": "ferlab " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["ensemble"] else None})
    if args.description:
        ens.card["description"] = args.description
    print(f"{split}, {args.tta} TTA:\n{result.summary()}\nsingle crop: accuracy {single.accuracy:.4f}  "
          f"macro_f1 {single.metrics['macro_f1']:.4f}")
    if args.report:
        out = result.save(args.report, title=f"{' + '.join(args.model)} ({args.tta} TTA) on {split}")
        print(f"wrote {out}/metrics.json, report.md, confusion.png, confusion_normalized.png, mistakes.png")
    print(f"wrote {ens.save(args.out)}: load it with ferlab.load() or pass it wherever a model goes")


def _cmd_calibrate(args: argparse.Namespace) -> None:
    from ferlab.classifier import ENSEMBLE_SUFFIX, load, model_path
    from ferlab.evaluation.calibration import apply_calibration, calibrate, save_calibration

    clf = load(args.model)
    ds = _model_data(clf, args.data)
    result, probs = calibrate(clf, ds, split=args.split, batch_size=args.batch_size)
    print(result)
    if args.out:
        print(f"wrote {save_calibration(result, probs, args.out)}/calibration.json, reliability.png")
    if args.write:
        path = model_path(args.model)
        is_ensemble = path.name.endswith(ENSEMBLE_SUFFIX)
        if path.suffix != ".safetensors" and not is_ensemble:
            raise FerlabError(f"--write rewrites a .safetensors model file or an ensemble file, not {path}; save "
                              f"the model first (load it and call .save())")
        applied = apply_calibration(clf, result, data=ds, batch_size=args.batch_size)
        clf.save(path)
        print(f"wrote {path}" + ("" if is_ensemble else " and its .json card") + ": " +
              (f"temperature {clf.temperature:.3f}" if applied else "no temperature (scaling did not help)"))


def _output_name(source: str, used: set[str], suffix: str) -> str:
    stem = Path(source).stem or "image"
    name, n = f"{stem}{suffix}", 1
    while name in used:
        name, n = f"{stem}-{n}{suffix}", n + 1
    used.add(name)
    return name


def _cmd_predict(args: argparse.Namespace) -> None:
    from ferlab.pipeline import Recognizer, SkippedInputWarning

    if args.explain and args.backend != "torch":
        raise FerlabError("--explain needs gradients: use --backend torch (the default)")
    rec = Recognizer(args.model, args.detector, gender=args.gender, detect_every=args.every, smooth=args.smooth,
                     backend=args.backend, tta=args.tta)
    if args.explain:
        from ferlab.classifier import require_network

        require_network(rec.classifier, "--explain")  # before any input is read
    source = int(args.source) if args.source.isdigit() and not Path(args.source).exists() else args.source
    save = Path(args.save) if args.save else None
    if save:
        save.mkdir(parents=True, exist_ok=True)
    if args.explain:
        from ferlab.explain import overlay_faces
        from ferlab.results import Results

        def draw(r):  # each face's saliency map blended into its box, then the usual annotations
            heat = overlay_faces(r.image, r.xyxy, rec.classifier, args.explain)
            return Results(heat, r.faces, r.source, r.frame, r.timings).plot(bars=False)
    else:
        def draw(r):
            return r.plot()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=SkippedInputWarning)  # listed at the end instead
        output = rec.predict(source)
        if isinstance(output, list):
            _images_report(output, rec.skipped, save, args, draw)
        else:
            _video_report(output, source, save, args, draw)


def _images_report(results: list, skipped: list, save: Path | None, args: argparse.Namespace, draw) -> None:
    import pandas as pd

    from ferlab.io import atomic_write_json, atomic_write_text
    from ferlab.results import save_image

    used: set[str] = set()
    for r in results:
        print(r.summary())
        if save:
            path = save_image(draw(r), save / _output_name(r.source, used, ".jpg"))
            print(f"  saved {path}")
    frames = [r.to_dataframe() for r in results if len(r)]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if args.json:
        atomic_write_json(args.json, [r.to_dict() for r in results])
    if args.csv:
        atomic_write_text(args.csv, table.to_csv(index=False))
    if len(results) > 1:
        counts = table["emotion"].value_counts() if len(table) else pd.Series(dtype=int)
        print(f"\n{len(results)} images, {len(table)} faces; emotions: "
              + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none"))
    if skipped:
        print(f"\nskipped {len(skipped)} unreadable file(s):", file=sys.stderr)
        for path, reason in skipped:
            print(f"  {path}: {reason}", file=sys.stderr)


def _video_report(stream, source, save: Path | None, args: argparse.Namespace, draw) -> None:
    import cv2
    import pandas as pd

    from ferlab.evaluation.plots import plot_emotion_timeline
    from ferlab.io import atomic_write_text

    rows, writer, frames, start = [], None, 0, time.perf_counter()
    name = "webcam" if isinstance(source, int) else Path(source).stem
    fps = 25.0
    if not isinstance(source, int):
        cap = cv2.VideoCapture(source)
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        cap.release()
    video_path = save / f"{name}_annotated.mp4" if save else None
    # VideoWriter needs a real .mp4 name: write a hidden partial file and rename it when done
    partial = video_path.with_name(f".{video_path.stem}.partial.mp4") if video_path else None
    try:
        for r in stream:
            annotated = None
            if save or args.show:
                annotated = cv2.cvtColor(draw(r), cv2.COLOR_RGB2BGR)
            if save:
                if writer is None:
                    h, w = annotated.shape[:2]
                    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                writer.write(annotated)
            if args.show:
                cv2.imshow("ferlab", annotated)
                if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                    break
            table = r.to_dataframe()
            if len(table):
                table.insert(2, "time_s", r.frame / fps)
                rows.append(table)
            frames += 1
    finally:
        if writer is not None:
            writer.release()
            # the frames already processed are kept, also after Ctrl+C on a webcam
            partial.replace(video_path)
    seconds = time.perf_counter() - start
    timeline = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    print(f"{name}: {frames} frames, {len(timeline)} face detections, {frames / max(seconds, 1e-9):.1f} frames/s")
    if save:
        atomic_write_text(save / f"{name}_timeline.csv", timeline.to_csv(index=False))
        if len(timeline):
            plot_emotion_timeline(timeline, save / f"{name}_timeline.png")
        print(f"saved {video_path}, {name}_timeline.csv" + (f", {name}_timeline.png" if len(timeline) else ""))
    if args.csv:
        atomic_write_text(args.csv, timeline.to_csv(index=False))


def _faces_of(source: str, clf, detector: str) -> tuple:
    """uint8 (N, 1, S, S) faces of an image (the image itself when it is a small crop, else the detected
    faces) and a caption for each."""
    import numpy as np

    from ferlab.data.readers import open_image
    from ferlab.faces import create_detector, crop_faces

    rgb = np.asarray(open_image(source))
    size = clf.preprocessing.input_size
    if max(rgb.shape[:2]) <= 2 * size:  # already a face crop (FER2013 style)
        return crop_faces(rgb, np.array([[0, 0, rgb.shape[1], rgb.shape[0]]], np.float32), size=size, margin=0.0,
                          align=False), ["face"]
    found = create_detector(detector).detect(rgb)
    if not len(found):
        raise FerlabError(f"no face found in {source}; pass a face crop or a photo with visible faces")
    crops = crop_faces(rgb, found.boxes, found.landmarks, size=size)
    return crops, [f"face {i} at ({int(b[0])}, {int(b[1])})" for i, b in enumerate(found.boxes)]


def _cmd_explain(args: argparse.Namespace) -> None:
    import numpy as np

    from ferlab.classifier import load, require_network
    from ferlab.explain import (
        METHODS,
        activations,
        class_average_saliency,
        confident_mistakes,
        explain,
        first_layer_kernels,
        maximise,
    )
    from ferlab.explain.plots import plot_class_grid, plot_explanation, plot_maps, plot_methods_grid

    clf = require_network(load(args.model), "ferlab explain")
    out = Path(args.save)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    methods = list(METHODS) if args.method == "all" else [args.method]
    explained = []
    if args.source:
        parts = [_faces_of(src, clf, args.detector) for src in args.source]
        faces = np.concatenate([f for f, _ in parts])
        titles = [t if len(parts) == 1 else f"{Path(src).stem}: {t}" for src, (_, ts) in zip(args.source, parts,
                                                                                             strict=True) for t in ts]
        stem = Path(args.source[0]).stem if len(args.source) == 1 else "faces"
        for method in methods:
            if args.all_classes:
                for i in range(len(faces)):
                    e = _all_classes(clf, faces[i:i + 1], method, args.layer)
                    written.append(plot_class_grid([e], out / f"{stem}_face{i}_{method}_all_classes.png"))
            else:
                e = explain(clf, faces, method, target=args.cls, layer=args.layer)
                written.append(plot_explanation(e, out / f"{stem}_{method}.png", titles))
                explained.append(e)
        if len(explained) > 1:
            written.append(plot_methods_grid(explained, out / f"{stem}_methods.png", titles))
        if args.activations:
            acts = activations(clf.model, clf.preprocessing(clf._as_batch(faces[:1])), args.activations)[0]
            if acts.ndim != 3:
                raise FerlabError(f"layer {args.activations} gives {tuple(acts.shape)}, not feature maps")
            written.append(plot_maps(acts.numpy(), out / f"{stem}_activations_{args.activations}.png",
                                     [f"ch {c}" for c in range(len(acts))], cmap="viridis",
                                     title=f"{args.activations} on face 0"))
    if args.filters:
        kernels = first_layer_kernels(clf.model)
        written.append(plot_maps(kernels, out / "first_layer_kernels.png", [f"k{i}" for i in range(len(kernels))],
                                 cmap="bwr", title="first-layer kernels"))
        images = [maximise(clf.model, class_index=c, size=clf.preprocessing.input_size,
                           in_chans=clf.card.get("in_chans", 1)) for c in range(len(clf.class_names))]
        written.append(plot_maps(np.stack(images), out / "class_maximisation.png", list(clf.class_names),
                                 title="inputs that maximise each class (gradient ascent)"))
    if args.data:
        from ferlab.data import load_dataset
        from ferlab.training.config import expand_path

        split = _split_name(args.split)
        ds = load_dataset(expand_path(args.data), clf.label_set, val_fraction=0.0).split(split)
        if args.samples:
            labels = ds.labels.numpy()
            picks = [int(np.flatnonzero(labels == c)[0]) for c in range(len(clf.class_names)) if (labels == c).any()]
            picks = picks[: args.samples]
            grid = [explain(clf, ds.images[picks], m, layer=args.layer) for m in methods]
            captions = [f"true {clf.class_names[labels[i]]}" for i in picks]
            written.append(plot_methods_grid(grid, out / f"samples_{'_'.join(methods) if len(methods) == 1 else 'methods'}.png",
                                             captions))
        for method in methods:
            maps, means = class_average_saliency(clf, ds, method, per_class=args.per_class)
            written.append(plot_maps(np.concatenate([means, maps]), out / f"class_average_{method}.png",
                                     [f"mean {c}" for c in clf.class_names] + [f"{method} {c}" for c in clf.class_names],
                                     cols=len(clf.class_names), cmap=["gray"] * len(means) + ["inferno"] * len(maps),
                                     title=f"mean face and mean {method} map per class ({args.per_class} faces each)"))
            e, captions = confident_mistakes(clf, ds, method)
            written.append(plot_explanation(e, out / f"confident_mistakes_{method}.png", captions))
    if not written:
        raise FerlabError("nothing to explain: give a SOURCE image, --filters, or --data")
    for path in written:
        print(f"wrote {path}")


def _all_classes(clf, face, method: str, layer: str | None):
    """One face explained for every class, as one Explanation with a map per class."""
    import numpy as np

    from ferlab.explain import explain

    n = len(clf.class_names)
    maps, probs = [], None
    for c in range(n):
        e = explain(clf, face, method, target=c, layer=layer)
        maps.append(e.maps[0])
        probs = e.probs
    e.maps, e.targets, e.probs = np.stack(maps), list(range(n)), probs.repeat(n, 0)
    e.faces = e.faces.repeat(n, 0)
    return e


def _cmd_data_inspect(args: argparse.Namespace) -> None:
    from ferlab.data import load_dataset
    from ferlab.data.inspect import inspect_dataset

    ds = load_dataset(args.path, args.label_set, ferplus=args.ferplus, ferplus_labels=args.labels == "ferplus",
                      val_fraction=0.0)
    report = inspect_dataset(ds)
    print(report.summary())
    if args.out:
        out = report.save(args.out)
        print(f"wrote {out}/summary.json, class_histogram.png, sample_grid.png")


def _cmd_data_pack(args: argparse.Namespace) -> None:
    from ferlab.data.readers import pack_fer_csv

    out = pack_fer_csv(args.csv, args.out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); use it wherever the CSV goes (data.path, --data)")


def _cmd_attack_scaling(args: argparse.Namespace) -> None:
    from ferlab.attacks import RESIZERS, measure_scaling_attacks
    from ferlab.classifier import load
    from ferlab.data import load_dataset
    from ferlab.data.readers import default_data_root
    from ferlab.training.config import expand_path

    clf = load(args.model)
    data = expand_path(args.data or str(default_data_root() / "fer2013" / "fer2013.csv.gz"))
    ds = load_dataset(data, clf.label_set, val_fraction=0.0)
    methods = list(RESIZERS) if args.method == "all" else [m.strip() for m in args.method.split(",")]
    photos = args.photos if args.photos else str(default_data_root() / "photos")
    command = "ferlab attack scaling " + " ".join(sys.argv[3:]) if sys.argv[1:3] == ["attack", "scaling"] else \
        "ferlab attack scaling"
    report = measure_scaling_attacks(clf, ds, methods, pairs=args.pairs, source_size=args.source_size,
                                     max_change=args.max_change, split=_split_name(args.split), photos=photos,
                                     seed=args.seed, command=command, progress=True, model_name=args.model)
    path = report.save(args.out, args.name)
    print(f"report: {path}")


def _cmd_attack_craft(args: argparse.Namespace) -> None:
    import numpy as np
    from PIL import Image

    from ferlab.attacks import craft, scaling_score
    from ferlab.data.readers import open_image
    from ferlab.results import save_image

    mode = "L" if args.grey else "RGB"
    source = np.asarray(open_image(args.source, mode))
    target_img = open_image(args.target, mode)
    size = tuple(args.size) if args.size else target_img.size[::-1]
    target = np.asarray(target_img.resize((size[1], size[0]), Image.Resampling.LANCZOS))
    attack = craft(source, target, args.method, max_change=args.max_change)
    save_image(attack.image if attack.image.ndim == 3 else np.repeat(attack.image[..., None], 3, 2), args.out)
    print(f"wrote {args.out}: {args.method} downscales it to the target within {attack.max_error:.0f} grey levels "
          f"(mean {attack.mean_error:.2f}); PSNR {attack.psnr:.1f} dB, SSIM {attack.ssim:.3f} against the source; "
          f"scaling-attack score {scaling_score(attack.image, size):.1f} (source {scaling_score(source, size):.1f})")


def _cmd_experiments(args: argparse.Namespace) -> None:
    import lightning  # noqa: F401  (sets its loggers to INFO on import; quieted below)

    from ferlab.experiments import list_suites, load_suite, run_suite, write_report

    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if args.experiments_command == "list":
        for name in list_suites():
            suite = load_suite(name)
            profiles = ", ".join(f"{p} ({len(suite.experiments_for(p))})" for p in suite.profiles)
            print(f"{name:18s} {suite.title}\n{'':18s} profiles: {profiles}")
        return
    if args.experiments_command == "run":
        statuses = run_suite(args.suite, args.profile, args.runs, only=args.only.split(",") if args.only else None,
                             overrides=args.overrides)
        print(f"{sum(s['status'] == 'trained' for s in statuses)} trained, "
              f"{sum(s['status'] == 'skipped' for s in statuses)} finished earlier")
        if args.report:
            print(f"report: {write_report(args.suite, args.profile, args.runs, args.reports)}")
        return
    for name in [args.suite] if args.suite else list_suites():
        print(f"report: {write_report(load_suite(name), args.profile, args.runs, args.reports)}")


def _cmd_save(args: argparse.Namespace) -> None:
    import torch

    from ferlab.classifier import load, require_network
    from ferlab.evaluation import evaluate

    clf = require_network(load(args.model), "ferlab save")
    if args.half:  # round in memory first, so the card below measures the weights the file will hold
        with torch.no_grad():
            for t in clf.model.state_dict().values():
                if t.is_floating_point():
                    t.copy_(t.half())
    old = clf.card.get("metrics") or {}
    if not args.keep_metrics:
        split = old.get("split", "val")
        result = evaluate(clf, _model_data(clf, args.data), split=split, tta="none", batch_size=args.batch_size)
        # the card's numbers came from the training device (a GPU, mixed precision): these are the file's own
        clf.card["metrics"] = {"split": split, **result.summary_metrics(),
                               **({"logged": old["logged"]} if "logged" in old else {})}
    path = clf.save(args.out, half=args.half)
    m = clf.card.get("metrics") or {}
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and its .json card"
          + (f": {m['split']} accuracy {m['accuracy']:.4f}" if "accuracy" in m else ""))


def _cmd_export(args: argparse.Namespace) -> None:
    import shlex

    import numpy as np
    import torch

    from ferlab.classifier import load, require_network
    from ferlab.onnx import export_onnx, load_onnx, quantize_onnx, write_onnx

    clf = require_network(load(args.model), "ferlab export")
    if not args.int8:
        path = export_onnx(clf, args.out, opset=args.opset)
        check = load_onnx(path)  # the file must load and agree with the PyTorch model
        faces = torch.randint(0, 256, (8, clf.card.get("in_chans", 1), clf.preprocessing.input_size,
                                       clf.preprocessing.input_size), dtype=torch.uint8,
                              generator=torch.Generator().manual_seed(0))
        diff = float((check.predict_proba(faces) - clf.predict_proba(faces)).abs().max())
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): uint8 faces (N, C, H, W) in, probabilities "
              f"out; max difference from PyTorch {diff:.1e}")
        return
    from ferlab.evaluation import evaluate
    from ferlab.onnx import OnnxClassifier

    data = _model_data(clf, args.data)
    train = data.split("train")
    pick = np.random.default_rng(args.seed).choice(len(train), min(args.calibration_faces, len(train)), replace=False)
    graph = quantize_onnx(clf, train.images[torch.from_numpy(np.sort(pick))], method=args.calibration_method,
                          reduce_range=args.reduce_range)
    int8 = OnnxClassifier(graph)
    int8.card["quantization"].update(
        calibration_data={"path": str(args.data or data.source), "split": "train", "seed": args.seed},
        command="ferlab " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["export"] else None)
    old = clf.card.get("metrics") or {}
    split = old.get("split", "val")
    if data.has_split(split):  # the card's numbers become the int8 graph's own, the float ones kept beside them
        result = evaluate(int8, data, split=split, tta="none", batch_size=args.batch_size)
        int8.card["metrics"] = {"split": split, **result.summary_metrics()}
        int8.card["float_metrics"] = {k: v for k, v in old.items() if k != "logged"}
    path = write_onnx(graph, args.out, card=int8.card)
    m = int8.card.get("metrics") or {}
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): int8 graph calibrated on {len(pick)} training faces"
          + (f"; {split} accuracy {m['accuracy']:.4f} (float {old.get('accuracy', float('nan')):.4f})"
             if data.has_split(split) else ""))


def _cmd_models(args: argparse.Namespace) -> None:
    from ferlab.models import count_parameters, create_model, list_models

    for name in list_models(args.filter):
        model = create_model(name)
        print(f"{name:20s} {count_parameters(model, trainable_only=True):>11,d} trainable  {model.reference}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferlab", description="Facial expression recognition with CNNs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a classifier from a YAML config")
    p.add_argument("--config", "-c", help="YAML experiment config (see configs/)")
    p.add_argument("--resume", help="run folder to continue from its last checkpoint")
    p.add_argument("overrides", nargs="*", help="config overrides: key=value, e.g. optim.lr=0.01 trainer.epochs=5")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a model on a dataset split")
    p.add_argument("model", nargs="+", help="bundled model name, model file (.safetensors), checkpoint (.ckpt) or "
                   "run folder; several evaluate their ensemble (mean log-probabilities)")
    p.add_argument("--data", help="FER2013 CSV or image folder (default: the model's training data)")
    p.add_argument("--split", default="val", help="train, val, test, or Training / PublicTest / PrivateTest")
    p.add_argument("--tta", choices=list(TTA_MODES),
                   help="test-time augmentation (default: the one the model's card names, else none)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", help="folder for metrics.json, report.md and PNGs")
    p.add_argument("--backend", default="torch", choices=list(BACKENDS),
                   help="run the model in PyTorch, ONNX Runtime or ONNX Runtime on its int8 graph")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("ensemble", help="measure an ensemble on a split and save it as one model (.ensemble.json)")
    p.add_argument("model", nargs="+", help="two or more bundled names, model files or run folders")
    p.add_argument("--out", required=True, help="the *.ensemble.json file to write (members are referred to, "
                   "not copied)")
    p.add_argument("--tta", default="none", choices=list(TTA_MODES),
                   help="the views every member sees whenever the ensemble runs (stored in its card)")
    p.add_argument("--data", help="FER2013 CSV or image folder (default: the first member's training data)")
    p.add_argument("--split", default="val", help="the split its card reports: val (PublicTest) to select on")
    p.add_argument("--report", help="folder for the evaluation report (metrics.json, report.md, PNGs)")
    p.add_argument("--description", help="a sentence for the card: what the ensemble is for")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--backend", default="torch", choices=list(BACKENDS))
    p.set_defaults(func=_cmd_ensemble)

    p = sub.add_parser("calibrate", help="fit temperature scaling on a split and measure ECE before / after")
    p.add_argument("model", help="bundled model name, model file (.safetensors or .ensemble.json) or run folder")
    p.add_argument("--data", help="FER2013 CSV or image folder (default: the model's training data)")
    p.add_argument("--split", default="val", help="split to fit on: val (PublicTest for FER2013) unless you know why")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", help="folder for calibration.json and reliability.png")
    p.add_argument("--write", action="store_true", help="store the temperature in the model file's card")
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser("predict", help="find faces in images, folders, videos or a webcam and classify them")
    p.add_argument("source", help="image, folder, glob pattern, video file, or webcam index (0)")
    p.add_argument("--model", default="emotion", help="bundled name, model file or run folder (default: emotion)")
    p.add_argument("--detector", default="mtcnn", help="face detector: mtcnn (default) or haar (fast)")
    p.add_argument("--gender", help="optional gender model (bundled name or file)")
    p.add_argument("--save", help="folder for annotated images / video, timeline CSV and PNG")
    p.add_argument("--json", help="write all results as JSON to this file")
    p.add_argument("--csv", help="write one row per face to this CSV file")
    p.add_argument("--every", type=int, default=1, help="video: run the detector every N frames, track between")
    p.add_argument("--smooth", type=float, default=0.0, help="video: smoothing of probabilities per face (0-0.95)")
    p.add_argument("--show", action="store_true", help="video / webcam: show a live window (needs a display)")
    p.add_argument("--explain", metavar="METHOD", help="overlay each face's saliency map (e.g. gradcam)")
    p.add_argument("--backend", default="torch", choices=list(BACKENDS),
                   help="run the classifiers in PyTorch, ONNX Runtime (faster on CPU; pip install 'ferlab[onnx]') or ONNX "
                   "Runtime on the bundled int8 graphs (fastest)")
    p.add_argument("--tta", choices=["none", "flip"],
                   help="test-time augmentation of the emotion model (flip: more accurate, half the speed; "
                   "default: the one its card names, else none)")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("export", help="export a model to ONNX (preprocessing and softmax included)")
    p.add_argument("model", help="bundled name, model file, checkpoint or run folder")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--int8", action="store_true", help="static int8 quantization, calibrated on training faces of "
                   "--data; its card's metrics are measured again on the card's split when --data has it")
    p.add_argument("--data", help="with --int8: the training data (default: the model's own)")
    p.add_argument("--calibration-faces", type=int, default=2048, help="training faces drawn for calibration")
    p.add_argument("--calibration-method", default="minmax", choices=["minmax", "entropy", "percentile"])
    p.add_argument("--reduce-range", action=argparse.BooleanOptionalAction, default=True,
                   help="7-bit weights (default), which score the same on every CPU; --no-reduce-range gains "
                   "0.1-0.4 points on CPUs with VNNI but saturates on others (AVX2), losing points there")
    p.add_argument("--seed", type=int, default=0, help="which calibration faces are drawn")
    p.add_argument("--batch-size", type=int, default=256)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("save", help="write one network (run folder, checkpoint or file) as a .safetensors file, "
                       "its card's metrics measured again on the weights it holds")
    p.add_argument("model", help="bundled name, model file, checkpoint or run folder")
    p.add_argument("--out", required=True, help="the .safetensors file to write (its card beside it as .json)")
    p.add_argument("--half", action="store_true", help="store float weights as float16: half the file")
    p.add_argument("--data", help="the data of the card's split (default: the model's training data)")
    p.add_argument("--keep-metrics", action="store_true", help="copy the card's metrics instead of measuring")
    p.add_argument("--batch-size", type=int, default=256)
    p.set_defaults(func=_cmd_save)

    p = sub.add_parser("explain", help="saliency maps, kernels, activations and maximising images")
    p.add_argument("source", nargs="*", help="face crops or photos (faces are found first)")
    p.add_argument("--model", default="emotion", help="bundled name, model file or run folder")
    p.add_argument("--method", default="gradcam", help="guided-backprop, gradcam, guided-gradcam, saliency, "
                   "smoothgrad, integrated-gradients, or all")
    p.add_argument("--class", dest="cls", help="explain this class (default: each face's prediction)")
    p.add_argument("--all-classes", action="store_true", help="one face against every class")
    p.add_argument("--layer", help="Grad-CAM layer (default: the last spatial block of model.features)")
    p.add_argument("--activations", metavar="LAYER", help="also plot the activation maps of this layer")
    p.add_argument("--filters", action="store_true", help="first-layer kernels and class-maximising inputs")
    p.add_argument("--data", help="dataset for per-class average maps and the most confident mistakes")
    p.add_argument("--split", default="PublicTest")
    p.add_argument("--per-class", type=int, default=64, help="faces per class for the average maps")
    p.add_argument("--samples", type=int, default=0, help="with --data: the first face of each class, every method")
    p.add_argument("--detector", default="mtcnn")
    p.add_argument("--save", required=True, help="folder for the PNGs")
    p.set_defaults(func=_cmd_explain)

    p = sub.add_parser("data", help="dataset tools")
    dsub = p.add_subparsers(dest="data_command", required=True)
    q = dsub.add_parser("inspect", help="counts, near-blank images, duplicates, leaks, sample grid")
    q.add_argument("path", help="FER2013 CSV, class-folder tree or UTKFace folder")
    q.add_argument("--label-set", default="fer7")
    q.add_argument("--ferplus", help="FER+ vote file aligned with the CSV")
    q.add_argument("--labels", choices=["ferplus", "fer2013"], default="ferplus",
                   help="with --ferplus: label by the FER+ majority (default), or keep the FER2013 labels and "
                        "report how often the FER+ majority agrees with them")
    q.add_argument("--out", help="folder for summary.json, sample_grid.png, class_histogram.png")
    q.set_defaults(func=_cmd_data_inspect)
    q = dsub.add_parser("pack", help="a FER2013 CSV as a compact .npz (for GPU machines, faster loading)")
    q.add_argument("csv", help="FER2013 CSV (.csv or .csv.gz)")
    q.add_argument("out", help="the .npz file to write")
    q.set_defaults(func=_cmd_data_pack)

    p = sub.add_parser("attack", help="image-scaling (camouflage) attacks: craft, measure, detect, defend")
    asub = p.add_subparsers(dest="attack_command", required=True)
    q = asub.add_parser("scaling", help="attack a model through each resize method; write the report")
    q.add_argument("--model", default="emotion", help="bundled name, model file or run folder (grey 48x48)")
    q.add_argument("--data", help="FER2013 CSV or image folder (default: ../shared/data FER2013)")
    q.add_argument("--split", default="PublicTest", help="where the face pairs come from")
    q.add_argument("--method", default="all", help="resize methods, comma-separated, or all")
    q.add_argument("--pairs", type=int, default=20, help="source -> target pairs per method")
    q.add_argument("--source-size", type=int, default=256, help="side of the (upscaled) source images")
    q.add_argument("--max-change", type=float, help="bound on each pixel's change, grey levels (default: none)")
    q.add_argument("--photos", help="folder of clean photos for the false-positive rate (default: shared photos)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out", default="reports", help="folder for <name>.md, <name>.json and <name>/*.png")
    q.add_argument("--name", default="scaling-attack")
    q.set_defaults(func=_cmd_attack_scaling)
    q = asub.add_parser("craft", help="make an image that looks like SOURCE and downscales to TARGET")
    q.add_argument("source", help="what a person should see (any size)")
    q.add_argument("target", help="what the model should see (resized to --size)")
    q.add_argument("--out", required=True, help="the attack image (PNG: lossless, JPEG would break it)")
    q.add_argument("--method", default="cv2-bilinear", help="the resize the victim calls")
    q.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="target size (default: the target's own)")
    q.add_argument("--max-change", type=float, help="bound on each pixel's change, grey levels")
    q.add_argument("--grey", action="store_true", help="work on grey images")
    q.set_defaults(func=_cmd_attack_craft)

    p = sub.add_parser("experiments", help="run the reference experiments as suites and report them")
    esub = p.add_subparsers(dest="experiments_command", required=True)
    q = esub.add_parser("list", help="suites in configs/suites with their profiles")
    q.set_defaults(func=_cmd_experiments)
    for cmd, text in (("run", "run a suite (finished runs are skipped, interrupted ones resumed)"),
                      ("report", "write reports/<suite>.md from the finished runs")):
        q = esub.add_parser(cmd, help=text)
        q.add_argument("suite", nargs="?" if cmd == "report" else None,
                       help="suite name (configs/suites/<name>.yaml) or file" + ("; default: all" if cmd == "report" else ""))
        q.add_argument("--profile", default="quick", help="quick (CPU, under an hour) or full")
        q.add_argument("--runs", default="runs/experiments", help="where the suite's run folders go")
        q.add_argument("--reports", default="reports", help="where <suite>.md and its PNGs go")
        if cmd == "run":
            q.add_argument("--only", help="comma-separated experiment names")
            q.add_argument("--report", action="store_true", help="write the report afterwards")
            q.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                           help="override for every run, e.g. --set trainer.num_threads=1 (repeatable)")
        q.set_defaults(func=_cmd_experiments)

    p = sub.add_parser("models", help="list registered models with parameter counts")
    p.add_argument("filter", nargs="?", default="")
    p.set_defaults(func=_cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except FerlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"interrupted: {exc or 'finished files and the last checkpoint are kept'}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`ferlab evaluate ... | head -1`): nothing left to say to it, and no traceback;
        # stdout points at devnull so the interpreter's final flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for SIGPIPE
    return 0


if __name__ == "__main__":
    sys.exit(main())
