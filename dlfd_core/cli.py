"""The ``python -m dlfd_core`` command line.

Commands:
    data      load a face dataset, detect and align every face (cached), print a summary.
    split     make a seeded split of a dataset and save it as JSON.
    train     train the original model (or the gold model with --gold) on a split and save it.
    evaluate  evaluate a model (and the gold model) on a split: a table on stdout, JSON with --json.
    forget    unlearn people or photos with one method: the before / after / gold table, JSON with --json.
    bench     every method x seeds x forgetting settings x backbones: mean +- std table (JSON and Markdown).

Every bad input (a bad argument, a hostile or damaged file, an unavailable device or dataset) ends the command with
exactly one line ``error: ...`` on stderr and exit code 2, before any long work starts where it can be checked early.

Output files (--out, --json, --markdown): missing parent folders are created; each file is written to a temporary
name beside it and renamed into place only when complete, so a failed run never leaves a partial file. An output
path that cannot be written (it is a folder, or a parent is a file) is refused before any work starts.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .checks import MAX_SEED
from .errors import DLFDError, SplitError, UnknownNameError

log = logging.getLogger("dlfd_core")

OUTPUT_RULE = "missing parent folders are created; the file appears only when complete, never partial"


class UsageError(DLFDError):
    """A command line that argparse refuses (unknown option, a value of the wrong type or range, ...)."""


class _ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors become one ``error: ...`` line (via :class:`UsageError`), not usage + exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _int_arg(low: int, high: int, what: str = "a whole number") -> Callable[[str], int]:
    """An argparse type: an integer in ``[low, high]``; the message names the range and the bad value."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            shown = text if len(text) <= 40 else text[:37] + "..."
            raise argparse.ArgumentTypeError(f"must be {what} from {low} to {high}, got {shown!r}")
        return value

    parse.__name__ = "integer"
    return parse


_seed_arg = _int_arg(0, MAX_SEED, "an integer seed")


def _seeds_arg(text: str) -> list[int]:
    """``--seeds``: ``N`` (seeds 0..N-1), a range ``A-B`` (A..B inclusive) or a list ``A,B,C`` of distinct seeds."""
    shown = text if len(text) <= 40 else text[:37] + "..."
    bad = argparse.ArgumentTypeError(f"must be N (seeds 0..N-1), a range A-B or a list A,B,C, got {shown!r}")
    text = text.strip()
    try:
        if "," in text:
            seeds = [int(part) for part in text.split(",")]
        elif "-" in text.lstrip("-"):
            low, high = (int(part) for part in text.split("-"))
            if high < low:
                raise bad
            seeds = list(range(low, high + 1))
        else:
            count = int(text)
            if count < 1:
                raise bad
            seeds = list(range(count))
    except ValueError:
        raise bad from None
    if not seeds or len(seeds) > 1000 or len(set(seeds)) != len(seeds) or not all(0 <= s <= MAX_SEED for s in seeds):
        raise bad
    return seeds


def _rate_arg(text: str) -> float:
    """An argparse type: a learning rate, a number in ``(0, 10]``."""
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan
    if not 0.0 < value <= 10.0:  # NaN fails too
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise argparse.ArgumentTypeError(f"must be a learning rate above 0 and at most 10, got {shown!r}")
    return value


def _fraction_arg(text: str) -> float:
    """An argparse type: a number in ``[0, 1)``."""
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan
    if not 0.0 <= value < 1.0:  # NaN fails too
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise argparse.ArgumentTypeError(f"must be a fraction from 0 to below 1, got {shown!r}")
    return value


def _identities_arg(text: str) -> list[str]:
    """An argparse type: comma-separated identity names, at least one."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"names no identity ({text!r}); give comma-separated names such as s3,s17")
    return names


#: Seconds between two progress lines when stderr is not a terminal (a log file, a cluster job's output).
PROGRESS_LOG_INTERVAL = 30.0


def _progress_printer(label: str, clock: Callable[[], float] = time.monotonic) -> Callable[[float, str], None]:
    """A progress callback: on a terminal a single updating line on stderr; otherwise (output to a file) an INFO
    log line when the stage changes, at most one per ``PROGRESS_LOG_INTERVAL`` seconds and always the last, so
    ``-v`` makes an hour-long bench readable in its log without flooding it."""
    last = {"pct": -1, "logged_message": None, "logged": -math.inf}

    def progress(fraction: float, message: str = "") -> None:
        pct = int(fraction * 100)
        if sys.stderr.isatty():
            if pct != last["pct"]:
                last["pct"] = pct
                sys.stderr.write(f"\r{label}: {pct:3d}% {message[:60]:<60}")
                if pct >= 100:
                    sys.stderr.write("\n")
                sys.stderr.flush()
            return
        now = clock()
        due = message != last["logged_message"] and now - last["logged"] >= PROGRESS_LOG_INTERVAL
        if (due or (pct >= 100 and last["pct"] < 100)) and log.isEnabledFor(logging.INFO):
            last["logged"], last["logged_message"] = now, message
            log.info("%s: %3d%% %s", label, pct, message)
        last["pct"] = pct

    return progress


# ------------------------------------------------------------------------------------------- checks before work
def check_device(text: str) -> str:
    """``text`` if it names a device that exists here (:func:`~dlfd_core.env.resolve_device`'s rule), or ``auto``.

    Raises:
        DLFDError: an unknown device name, or one this machine does not have.
    """
    from .env import resolve_device

    resolve_device(text, what="--device")
    return text


def check_output(path: str, flag: str) -> Path:
    """Refuse an output path that cannot be written, before any work starts (nothing is created here).

    The rule for outputs: missing parent folders are created when the file is written; the path must not be a
    folder, and the nearest existing parent must be a writable folder.

    Raises:
        DLFDError: naming the flag, the path and the reason.
    """
    target = Path(path).expanduser()
    if not target.name or target.is_dir():
        raise DLFDError(f"{flag} {path} is a folder; give a file path such as {target / 'out'}")
    parent = target.parent
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise DLFDError(f"{flag} {path}: cannot create its folder, because {parent} is a file, not a folder")
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise DLFDError(f"{flag} {path}: the folder {parent} is not writable")
    return target


def _write_output(path: str, flag: str, write: Callable[[Any], None], mode: str = "w") -> None:
    """Write one output file atomically (see :func:`check_output` for the rule); OSError becomes one error line."""
    from .paths import atomic_write

    try:
        with atomic_write(Path(path).expanduser(), mode) as handle:
            write(handle)
    except OSError as exc:
        raise DLFDError(f"cannot write {flag} {path}: {exc.strerror or exc}") from None


def _write_json(path: str, flag: str, payload: Any, indent: int = 2) -> None:
    _write_output(path, flag, lambda handle: json.dump(payload, handle, indent=indent))


def _save_file(path: str, flag: str, save: Callable[[], Any]) -> None:
    """Run a library save (save_model, save_split: atomic, folders created); OSError becomes one error line."""
    try:
        save()
    except OSError as exc:
        raise DLFDError(f"cannot write {flag} {path}: {exc.strerror or exc}") from None


# ------------------------------------------------------------------------------------------- datasets and splits
def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments that choose a dataset: a bundled one (ORL by default, LFW), a local folder, or a Hub dataset repo."""
    from .bundled import bundle_names

    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--dataset",
        metavar="NAME",
        choices=tuple(bundle_names()),
        help=f"a bundled dataset: {' or '.join(bundle_names())} (default: orl)",
    )
    group.add_argument("--folder", metavar="PATH", help="folder-per-identity image tree (default: bundled ORL)")
    group.add_argument(
        "--hub", metavar="REPO_ID", help="Hugging Face dataset repo laid out folder-per-identity (cache only offline)"
    )
    parser.add_argument("--revision", help="revision of the --hub repo")


def _bundle_name(args: argparse.Namespace) -> str | None:
    """The bundled dataset the arguments choose (``orl`` unless --folder / --hub), or ``None``."""
    if getattr(args, "folder", None) or getattr(args, "hub", None):
        return None
    return getattr(args, "dataset", None) or "orl"


def load_dataset_from_args(args: argparse.Namespace) -> Any:
    """The dataset the arguments of :func:`add_dataset_arguments` choose."""
    from .bundled import bundle
    from .data import load_folder, load_hub_dataset

    if args.folder:
        return load_folder(args.folder)
    if args.hub:
        return load_hub_dataset(args.hub, revision=args.revision)
    chosen = bundle(_bundle_name(args) or "orl")
    if chosen.name == "orl":
        from .data import load_orl

        return load_orl()
    dataset, aligned = chosen.load()
    args.bundled_aligned = aligned  # the bundle's crops: nothing to detect
    return dataset


def aligned_from_args(args: argparse.Namespace, dataset: Any, **kwargs: Any) -> Any:
    """The aligned crops of ``dataset``: a packed bundle's own, or detected (and cached) now."""
    from .data import align_dataset

    bundled = getattr(args, "bundled_aligned", None)
    if bundled is not None:
        return bundled
    return align_dataset(dataset, **kwargs)


def cmd_data(args: argparse.Namespace) -> int:

    t0 = time.perf_counter()
    dataset = load_dataset_from_args(args)
    t_load = time.perf_counter() - t0
    t1 = time.perf_counter()
    aligned = aligned_from_args(args, dataset, cache=not args.no_cache, progress=_progress_printer("aligning"))
    t_align = time.perf_counter() - t1
    several = sum(1 for n in aligned.num_faces if n > 1)
    ambiguous = dict(aligned.ambiguous)
    summary = {
        "dataset": dataset.name,
        "identities": len(dataset.identities),
        "images": len(dataset),
        "faces_aligned": len(aligned.keys),
        "failures": dict(aligned.failures),
        "images_with_several_faces": several,
        "ambiguous": ambiguous,
        "crop_size": int(aligned.crops.shape[1]) if len(aligned.keys) else None,
        "cache": "off" if args.no_cache else "on",
        "seconds_load": round(t_load, 3),
        "seconds_align": round(t_align, 3),
    }
    if args.json:
        _write_json(args.json, "--json", summary)
    print(f"dataset      {summary['dataset']}")
    print(f"identities   {summary['identities']}")
    print(f"images       {summary['images']}")
    print(f"faces        {summary['faces_aligned']} aligned ({summary['crop_size']}x{summary['crop_size']} crops)")
    print(f"several      {several} images had more than one face (one was chosen; unclear choices below)")
    print(f"ambiguous    {len(ambiguous)}")
    for key, reason in sorted(ambiguous.items()):
        print(f"  {key}: {reason}")
    print(f"failures     {len(aligned.failures)}")
    for key, reason in sorted(aligned.failures.items()):
        print(f"  {key}: {reason}")
    cache_note = "cache off" if args.no_cache else "cache on: a second run reads the cache"
    print(f"time         load {t_load:.2f} s, detect + align {t_align:.2f} s ({cache_note})")
    return 0


def _with_forget_request(args: argparse.Namespace, split: Any, seed: int) -> Any:
    """``split`` with the forget request of --forget-identities / --forget-instances (if any)."""
    from .data import with_forget_identities, with_forget_instances

    if args.forget_identities:
        return with_forget_identities(split, args.forget_identities)
    if args.forget_instances is not None:
        return with_forget_instances(split, args.forget_instances, seed=seed)
    return split


def cmd_split(args: argparse.Namespace) -> int:
    from .data import make_split, save_split, validate_split

    dataset = load_dataset_from_args(args)
    split = make_split(
        dataset,
        seed=args.seed,
        num_unseen=args.num_unseen,
        test_per_identity=args.test_per_identity,
        holdout_per_identity=args.holdout_per_identity,
        known_min_images=args.known_min_images,
        test_fraction=args.test_fraction,
        holdout_fraction=args.holdout_fraction,
        validation_fraction=args.validation_fraction,
    )
    split = _with_forget_request(args, split, args.seed)
    validate_split(split, dataset)
    _save_file(args.out, "--out", lambda: save_split(split, args.out))
    n_train = sum(len(v) for v in split.train.values())
    n_test = sum(len(v) for v in split.test.values())
    print(
        f"split of {dataset.name} (seed {split.seed}): {len(split.known)} known identities "
        f"({n_train} train, {n_test} test images), {len(split.unseen)} unseen, {len(split.validation)} validation; "
        f"forget mode {split.forget_mode}, {len(split.forget_keys)} forget images -> {args.out}"
    )
    return 0


DEFAULT_SPLIT = "assets/splits/orl_seed0.json"
DEFAULT_MODEL = "assets/models/orl_dlib_resnet_original.safetensors"


def _default_file(args: argparse.Namespace, which: str) -> str:
    """The bundled dataset's default split or model file (ORL's unless --dataset says otherwise)."""
    from .bundled import bundle

    chosen = bundle(_bundle_name(args) or "orl")
    return str(chosen.split_path if which == "split" else chosen.model_path)


def _repo_path(relative: str) -> str:
    from .paths import REPO_ROOT

    return str(REPO_ROOT / relative)


def _add_forget_request(parser: argparse.ArgumentParser) -> None:
    """``--forget-identities`` or ``--forget-instances`` (one of them)."""
    forget = parser.add_mutually_exclusive_group()
    forget.add_argument(
        "--forget-identities",
        metavar="IDS",
        type=_identities_arg,
        help="comma-separated known identities to forget, e.g. s3,s17",
    )
    forget.add_argument(
        "--forget-instances", metavar="N", type=_int_arg(1, 10**6), help="forget N random training images (N >= 1)"
    )


def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments that choose a split and, optionally, what to forget."""
    parser.add_argument(
        "--split",
        metavar="PATH",
        help="split JSON (default: the bundled dataset's, e.g. assets/splits/lfw_seed0.json; else drawn with seed 0)",
    )
    _add_forget_request(parser)
    parser.add_argument("--forget-seed", type=_seed_arg, default=0, help="seed of the --forget-instances draw")


def early_split_from_args(args: argparse.Namespace) -> Any:
    """The split of --split (or the bundled ORL split) with the forget request, read before any dataset is aligned;
    ``None`` when the split must be drawn on the aligned dataset (--folder / --hub without --split)."""
    from .data import load_split

    if args.split:
        split = load_split(args.split)
    elif not (getattr(args, "folder", None) or getattr(args, "hub", None)):
        split = load_split(_default_file(args, "split"))
    else:
        return None
    return _with_forget_request(args, split, args.forget_seed)


def load_split_from_args(args: argparse.Namespace, dataset: Any, aligned: Any, split: Any = None) -> Any:
    """The split (with its forget set) that the arguments of :func:`add_split_arguments` choose, checked against the
    usable part of ``dataset``; ``split`` is :func:`early_split_from_args`'s, if it was already read."""
    from .data import make_split, validate_split

    usable = aligned.usable_dataset(dataset)
    if split is None:
        split = early_split_from_args(args)
    if split is None:
        split = _with_forget_request(args, make_split(usable, seed=0), args.forget_seed)
    validate_split(split, usable)
    return split


def _dataset_and_early_split(args: argparse.Namespace, split: Any) -> Any:
    """Load the dataset and check an early split against it (names, keys, overlaps) before aligning any face."""
    from .data import validate_split

    dataset = load_dataset_from_args(args)
    if split is not None:
        try:
            validate_split(split, dataset)
        except SplitError as exc:
            where = f"--split {args.split}" if args.split else f"the default split {_default_file(args, 'split')}"
            raise SplitError(f"{where}: {exc}") from None
    return dataset


def _load_model_file(path: str, flag: str, split: Any, device: str = "cpu") -> Any:
    """Load a model file after checking its header, and its class count against ``split`` (if known yet), before
    any tensor is read."""
    from .models import load_model
    from .models.classifier import read_model_config

    config = read_model_config(path)
    if split is not None and config["num_classes"] != split.num_classes:
        raise DLFDError(
            f"{flag} {path} has {config['num_classes']} classes, but the split has {split.num_classes} known "
            "identities; give the model trained on this split"
        )
    return load_model(path, device=device)


def _environment() -> dict[str, Any]:
    from .env import environment

    return environment()


def cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from .data import split_to_dict
    from .models import backbone_names, load_model, save_model
    from .train import default_config, train_on_split

    if args.backbone not in backbone_names():
        raise UnknownNameError(f"unknown --backbone {args.backbone!r}; choose one of {', '.join(backbone_names())}")
    reference = load_model(args.compare) if args.compare else None
    early = early_split_from_args(args)
    dataset = _dataset_and_early_split(args, early)
    aligned = aligned_from_args(args, dataset)
    split = load_split_from_args(args, dataset, aligned, early)
    config = default_config(args.backbone)
    if args.epochs is not None:
        config = dataclasses.replace(config, epochs=args.epochs)
    if args.no_augment:
        config = dataclasses.replace(config, augment=None)
    if args.lr is not None:
        config = dataclasses.replace(config, lr=args.lr)
    if args.head_lr is not None:
        config = dataclasses.replace(config, head_lr=args.head_lr)
    if args.batch_size is not None:
        config = dataclasses.replace(config, batch_size=args.batch_size)
    if args.warmup_epochs is not None:
        config = dataclasses.replace(config, warmup_epochs=args.warmup_epochs)
    which = "gold" if args.gold else "original"
    result = train_on_split(
        aligned,
        split,
        which=which,
        backbone=args.backbone,
        config=config,
        seed=args.seed,
        progress=_progress_printer(f"training {which}"),
    )
    metadata = {
        "kind": which,
        "dataset": dataset.name,
        "split": split_to_dict(split),
        "seed": args.seed,
        "train_config": config.to_dict(),
        "history": list(result.history),
        "seconds": result.seconds,
        "environment": _environment(),
    }
    _save_file(
        args.out, "--out", lambda: save_model(result.model, args.out, metadata=metadata, delta=result.model.pretrained)
    )
    last = result.history[-1]
    print(
        f"trained {which} model ({args.backbone}, {split.num_classes} classes) in {result.seconds:.1f} s: "
        f"final epoch loss {last['loss']:.4f}, train acc {last['train_acc']:.3f} -> {args.out}"
    )
    if reference is not None:
        mine = result.model.state_dict()
        theirs = reference.state_dict()
        if mine.keys() != theirs.keys() or any(mine[k].shape != v.shape for k, v in theirs.items()):
            print(f"compared with {args.compare}: a different architecture (not comparable)")
            return 0
        diff = max(float((mine[k] - v).abs().max()) for k, v in theirs.items())
        identical = all(torch.equal(mine[k], v) for k, v in theirs.items())
        verdict = "identical" if identical else "differs"
        print(f"compared with {args.compare}: max abs parameter difference {diff:.3g} ({verdict})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import format_table
    from .evaluate.evaluate import evaluate_model
    from .train import recipe_of, train_on_split

    early = early_split_from_args(args)
    model_path = args.model or _default_file(args, "model")
    model = _load_model_file(model_path, "--model", early)
    gold_model = _load_model_file(args.gold, "--gold", early) if args.gold else None
    dataset = _dataset_and_early_split(args, early)
    aligned = aligned_from_args(args, dataset)
    split = load_split_from_args(args, dataset, aligned, early)
    reports = {}
    timings = {}
    gold_outputs = None
    if gold_model is not None or args.train_gold:
        if gold_model is None:
            result = train_on_split(
                aligned,
                split,
                which="gold",
                backbone=model.backbone_name,
                config=recipe_of(model),
                seed=args.seed,
                progress=_progress_printer("training gold"),
            )
            gold_model = result.model
            timings["gold_train_seconds"] = result.seconds
        t0 = time.perf_counter()
        reports["gold"], gold_outputs = evaluate_model(gold_model, aligned, split, seed=args.seed)
        timings["gold_eval_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    reports["model"], _ = evaluate_model(model, aligned, split, gold=gold_outputs, seed=args.seed)
    timings["eval_seconds"] = time.perf_counter() - t0
    reports = {"model": reports["model"], **({"gold": reports["gold"]} if "gold" in reports else {})}
    print(format_table(reports))
    print(" ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
    if args.json:
        payload = {
            "split": _split_summary(split),
            "timings": timings,
            "environment": _environment(),
            **{name: report.to_json() for name, report in reports.items()},
        }
        _write_json(args.json, "--json", payload)
    return 0


_NON_FINITE_WORDS = frozenset({"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})


def parse_settings(items: Sequence[str] | None) -> dict[str, Any]:
    """``["k=v", ...]`` -> dict, each value read as JSON when it parses (numbers, booleans), else as a string.

    Raises:
        DLFDError: an item without ``=``, a name given twice, or a value that is not a finite number where it reads
            as one (``nan``, ``inf``, ``1e999``).
    """
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DLFDError(f"a setting must look like name=value, got {item!r}")
        name = key.strip().replace("-", "_")
        if name in out:
            raise DLFDError(f"--set {name} is given twice")
        text = value.strip()
        if text.lower() in ("true", "false"):
            out[name] = text.lower() == "true"
            continue
        if text.lower() in _NON_FINITE_WORDS:
            raise DLFDError(f"--set {name}={text}: the value must be a finite number")
        try:
            parsed = json.loads(text, parse_constant=lambda word: math.nan)
        except RecursionError:
            raise DLFDError(f"--set {name}: the value is nested too deeply") from None
        except ValueError:
            parsed = value
        if isinstance(parsed, float) and not math.isfinite(parsed):
            raise DLFDError(f"--set {name}={text}: the value must be a finite number")
        out[name] = parsed
    return out


def _split_summary(split: Any) -> dict[str, Any]:
    return {
        "dataset": split.dataset,
        "seed": split.seed,
        "forget_mode": split.forget_mode,
        "forget_identities": list(split.forget_identities),
        "forget_keys": len(split.forget_keys),
    }


def cmd_forget(args: argparse.Namespace) -> int:
    from .env import warm_up
    from .evaluate import format_table
    from .experiment import forget
    from .unlearn import create_method

    if not (args.forget_identities or args.forget_instances):
        raise DLFDError("say what to forget: --forget-identities s7 or --forget-instances 20")
    method = create_method(args.method, **parse_settings(args.set))
    mode = "identity" if args.forget_identities else "instance"
    if mode not in method.modes:
        raise DLFDError(f"--method {method.name} supports {' and '.join(method.modes)} forgetting, not {mode}")
    early = early_split_from_args(args)
    if early is not None and method.needs_holdout and not early.holdout_keys:
        raise DLFDError(f"--method {method.name} needs holdout photos (a split made with --holdout-per-identity 1)")
    model_path = args.model or _default_file(args, "model")
    model = _load_model_file(model_path, "--model", early, args.device)
    gold_model = _load_model_file(args.gold, "--gold", early, args.device) if args.gold else None
    dataset = _dataset_and_early_split(args, early)
    aligned = aligned_from_args(args, dataset)
    split = load_split_from_args(args, dataset, aligned, early)
    warm_up()  # one-time imports, so that they do not count as unlearning time
    outcome = forget(
        aligned,
        split,
        model,
        method,
        seed=args.seed,
        device=args.device,
        gold_model=gold_model,
        train_gold=not args.gold and not args.no_gold,
        progress=_progress_printer(f"{args.method}"),
    )
    print(format_table(outcome.reports))
    print(" ".join(f"{k} {v:.2f} s" for k, v in outcome.timings.items()))
    attacks = _per_photo_attacks(args, aligned, split, model, outcome) if args.references else None
    if args.json:
        payload = {"split": _split_summary(split), "environment": _environment(), **outcome.to_json()}
        if attacks is not None:
            payload["per_photo_attacks"] = attacks
        _write_json(args.json, "--json", payload)
    if args.out:
        from .data import split_to_dict
        from .models import save_model

        metadata = {
            "kind": "unlearned",
            "method": method.name,
            "settings": method.settings(),
            "seed": args.seed,
            "split": split_to_dict(split),
            "seconds": outcome.result.seconds,
            "environment": _environment(),
        }
        unlearned = outcome.result.model.cpu()
        _save_file(
            args.out, "--out", lambda: save_model(unlearned, args.out, metadata=metadata, delta=model.pretrained)
        )
        print(f"unlearned model -> {args.out}")
    return 0


def _per_photo_attacks(args: argparse.Namespace, aligned: Any, split: Any, model: Any, outcome: Any) -> dict:
    """``forget --references N``: offline LiRA and RMIA on the original, unlearned and gold models, printed."""
    from .references import attack_models
    from .train import recipe_of

    models = {"original": model, "unlearned": outcome.result.model}
    if outcome.gold_model is not None:
        models["gold"] = outcome.gold_model
    t0 = time.perf_counter()
    results, references = attack_models(
        aligned,
        split,
        models,
        count=args.references,
        recipe=recipe_of(model),
        seed=args.seed,
        device=args.device,
        progress=_progress_printer("reference models"),
    )
    print(f"per-photo attacks ({args.references} reference models, {references.seconds:.1f} s):")
    print("model       LiRA AUC [95% interval]  TPR@1%  TPR@0.1%   RMIA AUC [95% interval]  TPR@1%  TPR@0.1%")
    for name, result in results.items():
        cells = []
        for attack in (result["lira"], result["rmia"]):
            low, high = attack["auc_interval"]
            cells.append(
                f"{attack['auc']:8.3f} [{low:.3f}, {high:.3f}]  {attack['tpr_1pct']:6.3f}  {attack['tpr_01pct']:8.3f}"
            )
        print(f"{name:10s}  " + "   ".join(cells))
    return {
        "references": args.references,
        "reference_seconds": references.seconds,
        "attack_seconds": time.perf_counter() - t0,
        **results,
    }


def _emit_table(table: str, path: str | None) -> None:
    print(table)
    if path:
        _write_output(path, "--markdown", lambda handle: handle.write(table))


def _bench_header(command: str, env: dict[str, Any], seconds: float) -> str:
    return (
        f"Command: `{command}`  \n"
        f"Machine: {env['processor']}, {env['cpus']} CPUs, {env['threads']} torch threads, "
        f"GPU {env['cuda'] or 'none'}; torch {env['torch']}; {env['date']}; total {seconds / 60:.1f} min.  \n"
        "Each cell: mean ± sample std over seeds. Every method starts from the same original model per seed and is "
        "compared with the same gold (retrained) model."
    )


def _load_saved_bench(path: str) -> dict[str, Any]:
    """A saved ``bench --json`` file, checked for the fields the tables need."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DLFDError(f"--render {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DLFDError(f"--render {path}: cannot read it ({exc})") from None
    try:
        saved = json.loads(text)
    except RecursionError:
        raise DLFDError(f"--render {path}: its JSON is nested too deeply") from None
    except ValueError as exc:
        raise DLFDError(f"--render {path} is not JSON ({exc})") from None
    fields = ("command", "environment", "seconds", "records")
    if not isinstance(saved, dict) or any(name not in saved for name in fields):
        raise DLFDError(f"--render {path} is not a saved bench --json file (it needs {', '.join(fields)})")
    if not isinstance(saved["records"], list) or not all(isinstance(r, dict) for r in saved["records"]):
        raise DLFDError(f"--render {path} has malformed bench records (records must be a list of objects)")
    return saved


def _render_saved(paths: Sequence[str], markdown: str | None) -> None:
    """Re-render the tables of saved ``bench --json`` files; several files are read as one run (e.g. more seeds).

    A method's run (backbone, setting, seed, model) found in two files is refused: it would be counted twice. The
    original and gold models of a seed are the same training in every file; the first file's are kept.
    """
    from .bench import format_markdown

    saved = [_load_saved_bench(path) for path in paths]
    seen: dict[tuple[Any, ...], str] = {}
    records: list[dict[str, Any]] = []
    for path, one in zip(paths, saved, strict=True):
        for record in one["records"]:
            key = tuple(str(record.get(k)) for k in ("backbone", "setting", "seed", "model"))
            if key in seen and record.get("model") in ("original", "gold"):
                continue
            if key in seen:
                raise DLFDError(
                    f"--render: {path} and {seen[key]} both hold the run {'/'.join(key)}; give each run once"
                )
            seen[key] = path
            records.append(record)
    try:
        header = _bench_header(
            " + ".join(str(one["command"]) for one in saved),
            saved[0]["environment"],
            sum(float(one["seconds"]) for one in saved),
        )
        table = format_markdown(records, header=header)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        shown = paths[0] if len(paths) == 1 else ", ".join(paths)
        raise DLFDError(f"--render {shown} has malformed bench records ({type(exc).__name__}: {exc})") from None
    _emit_table(table, markdown)


def _bench_lists(args: argparse.Namespace) -> tuple[list[str], list[str], list[str]]:
    """The methods, settings and backbones of a bench command line, each checked by name."""
    from .bench import setting_mode
    from .models import backbone_names
    from .unlearn import method_class, method_names

    methods = method_names() if args.methods == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    for flag, values in (("--methods", methods), ("--settings", settings), ("--backbones", backbones)):
        if not values:
            raise DLFDError(f"{flag} names nothing; give comma-separated names")
        if len(set(values)) != len(values):
            raise DLFDError(f"{flag} lists a name twice: {', '.join(values)}")
    for name in methods:
        method_class(name)
    for name in settings:
        setting_mode(name)
    for name in backbones:
        if name not in backbone_names():
            raise UnknownNameError(f"unknown --backbones entry {name!r}; choose from {', '.join(backbone_names())}")
    return methods, settings, backbones


def _check_bench_settings(methods: Sequence[str], settings: dict[str, Any]) -> None:
    """Each --set name must belong to at least one chosen method, and be valid for every method that has it."""
    import dataclasses

    from .unlearn import create_method, method_class

    for name in settings:
        if not any(name in {f.name for f in dataclasses.fields(method_class(m))} for m in methods):
            raise UnknownNameError(f"--set {name}: none of the chosen methods ({', '.join(methods)}) has this setting")
    for method in methods:
        fields = {f.name for f in dataclasses.fields(method_class(method))}
        create_method(method, **{k: v for k, v in settings.items() if k in fields})


def cmd_references(args: argparse.Namespace) -> int:
    """Compute a bundled dataset's reference statistics for the verdict's LiRA attack (once; they are shipped)."""
    import numpy as np

    from .bundled import bundle
    from .data import load_split
    from .evaluate.cache import collect_all
    from .models import load_model
    from .references import train_person_references
    from .train import recipe_of

    chosen = bundle(args.dataset or "orl")
    out = args.out or str(chosen.references_path)
    _, aligned = chosen.load()
    split = load_split(chosen.split_path)
    model = load_model(chosen.model_path, device=args.device)
    cache = collect_all(model, aligned, split, device=args.device, cache=True, source_digest=chosen.content_digest())
    references = train_person_references(
        aligned,
        split,
        count=args.count,
        backbone=model.backbone_name,
        recipe=recipe_of(model),
        seed=args.seed,
        out_fraction=args.out_fraction,
        design=args.design,
        device=args.device,
        prefix=lambda m, keys: cache.prefix_outputs(m, keys, aligned),
        progress=_progress_printer("reference models"),
    )
    _save_file(out, "--out", lambda: references.save(out))
    covered = int(np.sum(~np.isnan(references.statistic)))
    print(
        f"{references.count} reference models on {chosen.name} in {references.meta['seconds']:.0f} s: "
        f"{covered} OUT values over {len(references.keys)} photos, pooled std {references.pooled_std():.3f} -> {out}"
    )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import BenchSource, format_markdown, run_bench
    from .unlearn import method_names

    if args.list_methods:
        from .unlearn import method_class

        for name in method_names():
            cls = method_class(name)
            print(f"{name:16s} {cls.title} ({cls.paper}); modes: {', '.join(cls.modes)}")
        return 0
    if args.render:
        _render_saved(args.render, args.markdown)
        return 0
    methods, settings, backbones = _bench_lists(args)
    method_settings = parse_settings(args.set)
    _check_bench_settings(methods, method_settings)
    early = early_split_from_args(args)
    if early is not None and early.forget_mode != "none":
        raise DLFDError("bench draws its own forget requests: give a split without one")
    dataset = _dataset_and_early_split(args, early)
    aligned = aligned_from_args(args, dataset)
    split = load_split_from_args(args, dataset, aligned, early)
    if split.forget_mode != "none":
        raise DLFDError("bench draws its own forget requests: give a split without one")
    recipes, digest, references = {}, None, None
    name = _bundle_name(args)
    if args.folder is None and args.hub is None:
        from .bundled import bundle
        from .models import load_model
        from .train import recipe_of

        chosen = bundle(name or "orl")
        digest = chosen.content_digest()
        if not args.split:  # the bundle's own split: its shipped model's recipe, for that model's backbone
            shipped = load_model(chosen.model_path)
            recipes[shipped.backbone_name] = recipe_of(shipped)
            if chosen.references_path.is_file():  # whole-person forgetting is then judged by offline LiRA
                references = chosen.references_path

    def outputs_for(model: Any) -> Any:
        from .evaluate.cache import collect_all

        return collect_all(model, aligned, split, device=args.device, cache=True, source_digest=digest)

    source = None
    if name is not None:
        source = BenchSource(bundle=name)
    elif args.folder:
        source = BenchSource(folder=str(Path(args.folder).resolve()))
    elif args.workers > 1 or args.ray:
        raise DLFDError("--workers and --ray need a bundled dataset or --folder (a --hub dataset runs here only)")
    t0 = time.perf_counter()
    records = run_bench(
        aligned,
        split,
        workers=args.workers,
        ray_address=args.ray,
        source=source,
        cache_dir=args.cache,
        methods=methods,
        seeds=args.seeds,
        settings=settings,
        method_settings=method_settings,
        backbones=backbones,
        instances=args.instances,
        device=args.device,
        recipes=recipes,
        references=references,
        outputs_for=outputs_for,
        progress=_progress_printer("bench"),
    )
    seconds = time.perf_counter() - t0
    command = "python -m dlfd_core " + " ".join(sys.argv[1:] if args.argv is None else args.argv)
    env = _environment()
    header = _bench_header(command, env, seconds)
    _emit_table(format_markdown(records, header=header), args.markdown)
    if args.json:
        payload = {"command": command, "environment": env, "seconds": seconds, "records": records}
        _write_json(args.json, "--json", payload, indent=1)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="python -m dlfd_core",
        description=__doc__.split("\n\n")[0],
        epilog=f"Output files: {OUTPUT_RULE}. Bad input: one 'error: ...' line on stderr, exit code 2.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and debug messages to stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    from .bundled import bundle_names

    out_help = f"({OUTPUT_RULE})"

    p = sub.add_parser("data", help="load a dataset, detect and align its faces, print a summary")
    add_dataset_arguments(p)
    p.add_argument("--summary", action="store_true", help="print the summary (the default action)")
    p.add_argument("--no-cache", action="store_true", help="re-detect every face instead of reading the cache")
    p.add_argument("--json", metavar="PATH", help=f"also write the summary as JSON {out_help}")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("split", help="make a seeded split and save it as JSON")
    add_dataset_arguments(p)
    p.add_argument("--seed", type=_seed_arg, default=0, help=f"seed of the draw, 0 to {MAX_SEED}")
    p.add_argument(
        "--num-unseen", type=_int_arg(0, 10**6), default=10, help="identities kept out of training (non-members)"
    )
    p.add_argument("--test-per-identity", type=_int_arg(0, 10**6), default=3)
    p.add_argument("--holdout-per-identity", type=_int_arg(0, 10**6), default=0)
    p.add_argument(
        "--known-min-images",
        type=_int_arg(1, 10**6),
        help="known identities are those with at least this many images, the rest unseen (replaces --num-unseen)",
    )
    p.add_argument("--test-fraction", type=_fraction_arg, help="share of each known identity's images for test")
    p.add_argument("--holdout-fraction", type=_fraction_arg, help="share of each known identity's images for holdout")
    p.add_argument(
        "--validation-fraction",
        type=_fraction_arg,
        default=0.3,
        help="share of the never-trained identities kept for methods' monitoring, never evaluated (default 0.3)",
    )
    _add_forget_request(p)
    p.add_argument("--out", required=True, metavar="PATH", help=f"where to save the split JSON {out_help}")
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("train", help="train the original model (or the gold model) on a split")
    add_dataset_arguments(p)
    add_split_arguments(p)
    p.add_argument("--backbone", default="dlib_resnet", help="dlib_resnet (pretrained, default) or resnet18 (scratch)")
    p.add_argument("--gold", action="store_true", help="train the gold model: the retain set only")
    p.add_argument("--seed", type=_seed_arg, default=0, help=f"training seed, 0 to {MAX_SEED}")
    p.add_argument("--epochs", type=_int_arg(1, 10_000), help="override the recipe's number of epochs")
    p.add_argument("--lr", type=_rate_arg, help="override the recipe's learning rate of the trained backbone layers")
    p.add_argument("--head-lr", type=_rate_arg, help="override the recipe's learning rate of the classification head")
    p.add_argument("--batch-size", type=_int_arg(1, 4096), help="override the recipe's photos per step")
    p.add_argument(
        "--warmup-epochs",
        type=_int_arg(0, 10_000),
        help="override the recipe's epochs of linear learning-rate warm-up before the cosine decay",
    )
    p.add_argument(
        "--no-augment",
        action="store_true",
        help="train without augmentation (then a pretrained backbone's frozen layers run once per photo: much faster; "
        "the recipe is saved with the model, and its gold model follows it)",
    )
    p.add_argument("--out", required=True, metavar="PATH", help=f"where to save the model (.safetensors) {out_help}")
    p.add_argument("--compare", metavar="PATH", help="report the largest parameter difference to this model file")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a model (and the gold model) on a split")
    add_dataset_arguments(p)
    add_split_arguments(p)
    p.add_argument("--model", metavar="PATH", help="model file (default: the bundled dataset's shipped model)")
    gold = p.add_mutually_exclusive_group()
    gold.add_argument("--gold", metavar="PATH", help="the gold model's file, for the alignment metrics")
    gold.add_argument("--train-gold", action="store_true", help="train the gold model now (same recipe, retain set)")
    p.add_argument("--seed", type=_seed_arg, default=0, help="seed of the attacks' subsampling and the gold training")
    p.add_argument("--json", metavar="PATH", help=f"write the reports as JSON {out_help}")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("forget", help="unlearn people or photos from a model with one method")
    add_dataset_arguments(p)
    add_split_arguments(p)
    p.add_argument("--method", default="dlfd", help="registered method name (see --list-methods of bench)")
    p.add_argument("--set", nargs="*", metavar="NAME=VALUE", help="method settings, e.g. --set steps=5 ot_weight=0")
    p.add_argument("--model", metavar="PATH", help="the original model (default: the bundled dataset's shipped model)")
    gold = p.add_mutually_exclusive_group()
    gold.add_argument("--gold", metavar="PATH", help="a trained gold model (default: train it now, ~10 s)")
    gold.add_argument("--no-gold", action="store_true", help="skip the gold model")
    p.add_argument("--seed", type=_seed_arg, default=0, help=f"seed of the unlearning run, 0 to {MAX_SEED}")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (checked before any work)")
    p.add_argument("--json", metavar="PATH", help=f"write before / after / gold reports, settings, timings {out_help}")
    p.add_argument("--out", metavar="PATH", help=f"save the unlearned model (.safetensors) {out_help}")
    p.add_argument(
        "--references",
        type=_int_arg(2, 256),
        metavar="N",
        help="also run the per-photo attacks (offline LiRA, RMIA) with N reference models (each a gold-model training)",
    )
    p.set_defaults(func=cmd_forget)

    p = sub.add_parser(
        "references", help="train reference models once and save the statistics the verdict's LiRA attack reads"
    )
    p.add_argument("--dataset", metavar="NAME", choices=tuple(bundle_names()), help="bundled dataset (default: orl)")
    p.add_argument("--count", type=_int_arg(2, 256), default=16, help="reference models (default 16)")
    p.add_argument("--seed", type=_seed_arg, default=0, help=f"draws of the halves and training seeds, 0 to {MAX_SEED}")
    p.add_argument(
        "--out-fraction",
        type=float,
        default=0.5,
        help="share of the known people each reference model leaves out (default 0.5)",
    )
    p.add_argument(
        "--design",
        choices=("random", "balanced"),
        default="random",
        help="random: each person left out independently per model; balanced: every person left out by exactly "
        "round(count x out-fraction) models (default random)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (checked before any work)")
    p.add_argument("--out", metavar="PATH", help="where to save (.npz; default: the bundle's shipped file)")
    p.set_defaults(func=cmd_references)

    p = sub.add_parser("bench", help="every method x seeds x settings x backbones: a mean +- std table")
    add_dataset_arguments(p)
    p.add_argument(
        "--split", metavar="PATH", help="split JSON without a forget request (default: the bundled dataset's)"
    )
    p.add_argument("--methods", default="all", help="comma-separated method names, or all")
    p.add_argument("--list-methods", action="store_true", help="list the registered methods and exit")
    p.add_argument(
        "--seeds",
        type=_seeds_arg,
        default=[0, 1, 2],
        help="N (seeds 0..N-1), a range A-B or a list A,B,C (default: 3)",
    )
    p.add_argument(
        "--settings",
        default="identity,instance",
        help="identity (one person), identityN (N people at once, e.g. identity5) and/or instance forgetting",
    )
    p.add_argument("--backbones", default="dlib_resnet,resnet18", help="dlib_resnet (pretrained) and/or resnet18")
    p.add_argument("--instances", type=_int_arg(1, 10**6), default=20, help="photos forgotten in the instance setting")
    p.add_argument("--set", nargs="*", metavar="NAME=VALUE", help="settings for every method that has them")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (checked before any work)")
    p.add_argument(
        "--workers",
        type=_int_arg(1, 1024),
        default=1,
        help="run the cells (one per backbone and seed) in a local pool of N processes (default 1: here, in order)",
    )
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run the cells as Ray tasks: 'local' starts Ray here with --workers CPUs, else a cluster's address "
        "(needs the ray extra: pip install 'dlfd-core[ray]')",
    )
    p.add_argument(
        "--cache",
        metavar="DIR",
        help="keep each finished cell's records in DIR and reuse them (an interrupted run resumes; a cell is keyed "
        "by its settings, the photos and the code)",
    )
    p.add_argument("--json", metavar="PATH", help=f"every run's metrics and settings {out_help}")
    p.add_argument("--markdown", metavar="PATH", help=f"the summary tables {out_help}")
    p.add_argument(
        "--render",
        nargs="+",
        metavar="JSON",
        help="only re-render the tables of saved --json files (several: their records together, e.g. more seeds)",
    )
    p.set_defaults(func=cmd_bench, forget_identities=None, forget_instances=None, forget_seed=0)
    return parser


_OUTPUT_FLAGS = (("--out", "out"), ("--json", "json"), ("--markdown", "markdown"))


def _preflight(args: argparse.Namespace) -> None:
    """Checks that need no dataset or model: the device, the output paths, --revision only with --hub."""
    if getattr(args, "revision", None) and not getattr(args, "hub", None):
        raise DLFDError("--revision only applies to --hub REPO_ID")
    if getattr(args, "device", None) is not None:
        check_device(args.device)
    for flag, name in _OUTPUT_FLAGS:
        if getattr(args, name, None):
            check_output(getattr(args, name), flag)


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "(no message)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code (0, or 2 after one ``error: ...`` line on stderr)."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        args.argv = list(argv) if argv is not None else None
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.WARNING,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            datefmt="%H:%M:%S",
            stream=sys.stderr,
        )
        _preflight(args)
        return int(args.func(args))
    except DLFDError as exc:
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except RecursionError as exc:
        print(f"error: input nested too deeply ({_one_line(str(exc))})", file=sys.stderr)
        return 2
    except Exception as exc:  # the safety net: a bug, but still one line and exit code 2
        print(f"error: internal error ({type(exc).__name__}): {_one_line(str(exc))}", file=sys.stderr)
        return 2
