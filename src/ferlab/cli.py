"""``ferlab`` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

from ferlab.errors import FerlabError


def _cmd_train(args: argparse.Namespace) -> None:
    from ferlab.training import train

    result = train(args.config, args.overrides, resume=args.resume)
    print(result)


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from ferlab.classifier import load
    from ferlab.data import load_dataset
    from ferlab.evaluation import evaluate

    clf = load(args.model)
    data = args.data or (clf.card.get("data", {}).get("path"))
    if not data:
        raise FerlabError("no data given: pass --data PATH (a FER2013 CSV or an image folder)")
    from ferlab.training.config import expand_path

    ds = load_dataset(expand_path(str(data)), clf.label_set, val_fraction=0.0)
    result = evaluate(clf, ds, split=args.split, tta=args.tta, batch_size=args.batch_size)
    print(result.summary())
    logged = clf.card.get("metrics", {})
    if logged.get("accuracy") is not None:
        print(f"model card: {logged.get('split')} accuracy {logged['accuracy']:.4f}")
    if args.out:
        out = result.save(args.out, title=f"{Path(str(args.model)).name} on {result.info['split']}")
        print(f"wrote {out}/metrics.json, report.md, confusion.png, confusion_normalized.png, mistakes.png")


def _cmd_data_inspect(args: argparse.Namespace) -> None:
    from ferlab.data import load_dataset
    from ferlab.data.inspect import inspect_dataset

    ds = load_dataset(args.path, args.label_set, ferplus=args.ferplus, val_fraction=0.0)
    report = inspect_dataset(ds)
    print(report.summary())
    if args.out:
        out = report.save(args.out)
        print(f"wrote {out}/summary.json, class_histogram.png, sample_grid.png")


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
    p.add_argument("model", help="model file (.safetensors), checkpoint (.ckpt) or run folder")
    p.add_argument("--data", help="FER2013 CSV or image folder (default: the model's training data)")
    p.add_argument("--split", default="val", help="train, val, test, or Training / PublicTest / PrivateTest")
    p.add_argument("--tta", default="none", choices=["none", "flip", "flip-crops"], help="test-time augmentation")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--out", help="folder for metrics.json, report.md and PNGs")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("data", help="dataset tools")
    dsub = p.add_subparsers(dest="data_command", required=True)
    q = dsub.add_parser("inspect", help="counts, near-blank images, duplicates, leaks, sample grid")
    q.add_argument("path", help="FER2013 CSV, class-folder tree or UTKFace folder")
    q.add_argument("--label-set", default="fer7")
    q.add_argument("--ferplus", help="FER+ vote file aligned with the CSV")
    q.add_argument("--out", help="folder for summary.json, sample_grid.png, class_histogram.png")
    q.set_defaults(func=_cmd_data_inspect)

    p = sub.add_parser("models", help="list registered models with parameter counts")
    p.add_argument("filter", nargs="?", default="")
    p.set_defaults(func=_cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
    else:
        # Lightning's start-up banners (GPU available, tips) are noise in a CLI run; warnings still show
        for name in ("lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            # data readers warn per skipped file; on the command line one line each is enough
            warnings.simplefilter("default")
            args.func(args)
    except FerlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished files and the last checkpoint are kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
