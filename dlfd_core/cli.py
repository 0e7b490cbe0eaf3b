"""The ``python -m dlfd_core`` command line.

Commands:
    data      load a face dataset, detect and align every face (cached), print a summary.
    split     make a seeded split of a dataset and save it as JSON.
    train     train the original model (or the gold model with --gold) on a split and save it.
    evaluate  evaluate a model (and the gold model) on a split: a table on stdout, JSON with --json.
    forget    unlearn people or photos with one method: the before / after / gold table, JSON with --json.
    bench     every method x seeds x forgetting settings x backbones: mean +- std table (JSON and Markdown).

Each command turns :class:`~dlfd_core.errors.DLFDError` into a one-line message and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from .errors import DLFDError

log = logging.getLogger("dlfd_core")


def _progress_printer(label: str) -> Callable[[float, str], None]:
    """A progress callback that writes a single updating line to stderr."""
    last = {"pct": -1}

    def progress(fraction: float, message: str = "") -> None:
        pct = int(fraction * 100)
        if pct != last["pct"] and sys.stderr.isatty():
            last["pct"] = pct
            sys.stderr.write(f"\r{label}: {pct:3d}% {message[:60]:<60}")
            if pct >= 100:
                sys.stderr.write("\n")
            sys.stderr.flush()

    return progress


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments that choose a dataset: the bundled ORL, a local folder, or a Hugging Face dataset repo."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--folder", metavar="PATH", help="folder-per-identity image tree (default: bundled ORL)")
    group.add_argument("--hub", metavar="REPO_ID", help="Hugging Face dataset repo laid out folder-per-identity")
    parser.add_argument("--revision", help="revision of the --hub repo")


def load_dataset_from_args(args: argparse.Namespace) -> Any:
    """The dataset the arguments of :func:`add_dataset_arguments` choose."""
    from .data import load_folder, load_hub_dataset, load_orl

    if args.folder:
        return load_folder(args.folder)
    if args.hub:
        return load_hub_dataset(args.hub, revision=args.revision)
    return load_orl()


def cmd_data(args: argparse.Namespace) -> int:
    from .data import align_dataset

    t0 = time.perf_counter()
    dataset = load_dataset_from_args(args)
    t_load = time.perf_counter() - t0
    t1 = time.perf_counter()
    aligned = align_dataset(dataset, cache=not args.no_cache, progress=_progress_printer("aligning"))
    t_align = time.perf_counter() - t1
    several = sum(1 for n in aligned.num_faces if n > 1)
    summary = {
        "dataset": dataset.name,
        "identities": len(dataset.identities),
        "images": len(dataset),
        "faces_aligned": len(aligned.keys),
        "failures": dict(aligned.failures),
        "images_with_several_faces": several,
        "crop_size": int(aligned.crops.shape[1]) if len(aligned.keys) else None,
        "cache": "off" if args.no_cache else "on",
        "seconds_load": round(t_load, 3),
        "seconds_align": round(t_align, 3),
    }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)
    print(f"dataset      {summary['dataset']}")
    print(f"identities   {summary['identities']}")
    print(f"images       {summary['images']}")
    print(f"faces        {summary['faces_aligned']} aligned ({summary['crop_size']}x{summary['crop_size']} crops)")
    print(f"several      {several} images had more than one face (the most confident large one was kept)")
    print(f"failures     {len(aligned.failures)}")
    for key, reason in sorted(aligned.failures.items()):
        print(f"  {key}: {reason}")
    cache_note = "cache off" if args.no_cache else "cache on: a second run reads the cache"
    print(f"time         load {t_load:.2f} s, detect + align {t_align:.2f} s ({cache_note})")
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    from .data import make_split, save_split, validate_split, with_forget_identities, with_forget_instances

    dataset = load_dataset_from_args(args)
    split = make_split(
        dataset,
        seed=args.seed,
        num_unseen=args.num_unseen,
        test_per_identity=args.test_per_identity,
        holdout_per_identity=args.holdout_per_identity,
    )
    if args.forget_identities:
        split = with_forget_identities(split, [s.strip() for s in args.forget_identities.split(",") if s.strip()])
    elif args.forget_instances:
        split = with_forget_instances(split, args.forget_instances, seed=args.seed)
    validate_split(split, dataset)
    save_split(split, args.out)
    n_train = sum(len(v) for v in split.train.values())
    n_test = sum(len(v) for v in split.test.values())
    print(
        f"split of {dataset.name} (seed {split.seed}): {len(split.known)} known identities "
        f"({n_train} train, {n_test} test images), {len(split.unseen)} unseen; "
        f"forget mode {split.forget_mode}, {len(split.forget_keys)} forget images -> {args.out}"
    )
    return 0


DEFAULT_SPLIT = "assets/splits/orl_seed0.json"
DEFAULT_MODEL = "assets/models/orl_dlib_resnet_original.safetensors"


def _repo_path(relative: str) -> str:
    from .paths import REPO_ROOT

    return str(REPO_ROOT / relative)


def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments that choose a split and, optionally, what to forget."""
    parser.add_argument("--split", metavar="PATH", help=f"split JSON (default: {DEFAULT_SPLIT} for ORL, else seed 0)")
    forget = parser.add_mutually_exclusive_group()
    forget.add_argument("--forget-identities", metavar="IDS", help="comma-separated identities to forget, e.g. s3,s17")
    forget.add_argument("--forget-instances", metavar="N", type=int, help="forget N random training images")
    parser.add_argument("--forget-seed", type=int, default=0, help="seed of the --forget-instances draw")


def load_split_from_args(args: argparse.Namespace, dataset: Any, aligned: Any) -> Any:
    """The split (with its forget set) that the arguments of :func:`add_split_arguments` choose."""
    from .data import load_split, make_split, validate_split, with_forget_identities, with_forget_instances

    usable = aligned.usable_dataset(dataset)
    if args.split:
        split = load_split(args.split)
    elif dataset.name == "orl" and not (getattr(args, "folder", None) or getattr(args, "hub", None)):
        split = load_split(_repo_path(DEFAULT_SPLIT))
    else:
        split = make_split(usable, seed=0)
    if args.forget_identities:
        split = with_forget_identities(split, [s.strip() for s in args.forget_identities.split(",") if s.strip()])
    elif args.forget_instances:
        split = with_forget_instances(split, args.forget_instances, seed=args.forget_seed)
    validate_split(split, usable)
    return split


def _environment() -> dict[str, Any]:
    from .env import environment

    return environment()


def cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from .data import align_dataset, split_to_dict
    from .models import load_model, save_model
    from .train import default_config, train_on_split

    dataset = load_dataset_from_args(args)
    aligned = align_dataset(dataset)
    split = load_split_from_args(args, dataset, aligned)
    config = default_config(args.backbone)
    if args.epochs is not None:
        config = dataclasses.replace(config, epochs=args.epochs)
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
    save_model(result.model, args.out, metadata=metadata, delta=result.model.pretrained)
    last = result.history[-1]
    print(
        f"trained {which} model ({args.backbone}, {split.num_classes} classes) in {result.seconds:.1f} s: "
        f"final epoch loss {last['loss']:.4f}, train acc {last['train_acc']:.3f} -> {args.out}"
    )
    if args.compare:
        reference = load_model(args.compare)
        mine = result.model.state_dict()
        diff = max(float((mine[k] - v).abs().max()) for k, v in reference.state_dict().items())
        identical = all(torch.equal(mine[k], v) for k, v in reference.state_dict().items())
        verdict = "identical" if identical else "differs"
        print(f"compared with {args.compare}: max abs parameter difference {diff:.3g} ({verdict})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import time

    from .data import align_dataset
    from .evaluate import format_table
    from .evaluate.evaluate import evaluate_model
    from .models import load_model
    from .train import train_on_split

    dataset = load_dataset_from_args(args)
    aligned = align_dataset(dataset)
    split = load_split_from_args(args, dataset, aligned)
    model = load_model(args.model or _repo_path(DEFAULT_MODEL))
    reports = {}
    timings = {}
    gold_outputs = None
    if args.gold or args.train_gold:
        if args.gold:
            gold_model = load_model(args.gold)
        else:
            result = train_on_split(
                aligned,
                split,
                which="gold",
                backbone=model.backbone_name,
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
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
    return 0


def parse_settings(items: Sequence[str] | None) -> dict[str, Any]:
    """``["k=v", ...]`` -> dict, each value read as JSON when it parses (numbers, booleans), else as a string."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DLFDError(f"a setting must look like name=value, got {item!r}")
        name = key.strip().replace("-", "_")
        if value.strip().lower() in ("true", "false"):
            out[name] = value.strip().lower() == "true"
            continue
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError:
            out[name] = value
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
    from .data import align_dataset
    from .env import warm_up
    from .evaluate import format_table
    from .experiment import forget
    from .models import load_model
    from .unlearn import create_method

    if not (args.forget_identities or args.forget_instances):
        raise DLFDError("say what to forget: --forget-identities s7 or --forget-instances 20")
    method = create_method(args.method, **parse_settings(args.set))
    dataset = load_dataset_from_args(args)
    aligned = align_dataset(dataset)
    split = load_split_from_args(args, dataset, aligned)
    model = load_model(args.model or _repo_path(DEFAULT_MODEL), device=args.device)
    gold_model = load_model(args.gold, device=args.device) if args.gold else None
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
    if args.json:
        payload = {"split": _split_summary(split), "environment": _environment(), **outcome.to_json()}
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
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
        save_model(outcome.result.model.cpu(), args.out, metadata=metadata, delta=model.pretrained)
        print(f"unlearned model -> {args.out}")
    return 0


def _emit_table(table: str, path: str | None) -> None:
    print(table)
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(table)


def _bench_header(command: str, env: dict[str, Any], seconds: float) -> str:
    return (
        f"Command: `{command}`  \n"
        f"Machine: {env['processor']}, {env['cpus']} CPUs, {env['threads']} torch threads, "
        f"GPU {env['cuda'] or 'none'}; torch {env['torch']}; {env['date']}; total {seconds / 60:.1f} min.  \n"
        "Each cell: mean ± sample std over seeds. Every method starts from the same original model per seed and is "
        "compared with the same gold (retrained) model."
    )


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import format_markdown, run_bench
    from .data import align_dataset
    from .unlearn import method_names

    if args.list_methods:
        from .unlearn import method_class

        for name in method_names():
            cls = method_class(name)
            print(f"{name:16s} {cls.title} ({cls.paper}); modes: {', '.join(cls.modes)}")
        return 0
    if args.render:
        with open(args.render, encoding="utf-8") as handle:
            saved = json.load(handle)
        env = saved["environment"]
        header = _bench_header(saved["command"], env, saved["seconds"])
        _emit_table(format_markdown(saved["records"], header=header), args.markdown)
        return 0
    methods = method_names() if args.methods == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    dataset = load_dataset_from_args(args)
    aligned = align_dataset(dataset)
    split = load_split_from_args(args, dataset, aligned)
    if split.forget_mode != "none":
        raise DLFDError("bench draws its own forget requests: give a split without one")
    t0 = time.perf_counter()
    records = run_bench(
        aligned,
        split,
        methods=methods,
        seeds=list(range(args.seeds)),
        settings=[s.strip() for s in args.settings.split(",")],
        method_settings=parse_settings(args.set),
        backbones=[b.strip() for b in args.backbones.split(",")],
        instances=args.instances,
        device=args.device,
        progress=_progress_printer("bench"),
    )
    seconds = time.perf_counter() - t0
    command = "python -m dlfd_core " + " ".join(sys.argv[1:] if args.argv is None else args.argv)
    env = _environment()
    header = _bench_header(command, env, seconds)
    _emit_table(format_markdown(records, header=header), args.markdown)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(
                {"command": command, "environment": env, "seconds": seconds, "records": records}, handle, indent=1
            )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dlfd_core", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="load a dataset, detect and align its faces, print a summary")
    add_dataset_arguments(p)
    p.add_argument("--summary", action="store_true", help="print the summary (the default action)")
    p.add_argument("--no-cache", action="store_true", help="re-detect every face instead of reading the cache")
    p.add_argument("--json", metavar="PATH", help="also write the summary as JSON")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("split", help="make a seeded split and save it as JSON")
    add_dataset_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-unseen", type=int, default=10, help="identities kept out of training (non-members)")
    p.add_argument("--test-per-identity", type=int, default=3)
    p.add_argument("--holdout-per-identity", type=int, default=0)
    forget = p.add_mutually_exclusive_group()
    forget.add_argument("--forget-identities", metavar="IDS", help="comma-separated identities to forget, e.g. s3,s17")
    forget.add_argument("--forget-instances", metavar="N", type=int, help="forget N random training images")
    p.add_argument("--out", required=True, metavar="PATH")
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("train", help="train the original model (or the gold model) on a split")
    add_dataset_arguments(p)
    add_split_arguments(p)
    p.add_argument("--backbone", default="dlib_resnet", help="dlib_resnet (pretrained, default) or resnet18 (scratch)")
    p.add_argument("--gold", action="store_true", help="train the gold model: the retain set only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, help="override the recipe's number of epochs")
    p.add_argument("--out", required=True, metavar="PATH", help="where to save the model (.safetensors)")
    p.add_argument("--compare", metavar="PATH", help="report the largest parameter difference to this model file")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a model (and the gold model) on a split")
    add_dataset_arguments(p)
    add_split_arguments(p)
    p.add_argument("--model", metavar="PATH", help=f"model file (default: {DEFAULT_MODEL})")
    gold = p.add_mutually_exclusive_group()
    gold.add_argument("--gold", metavar="PATH", help="the gold model's file, for the alignment metrics")
    gold.add_argument("--train-gold", action="store_true", help="train the gold model now (same recipe, retain set)")
    p.add_argument("--seed", type=int, default=0, help="seed of the attacks' subsampling and the gold training")
    p.add_argument("--json", metavar="PATH", help="write the reports as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("forget", help="unlearn people or photos from a model with one method")
    add_dataset_arguments(p)
    add_split_arguments(p)
    p.add_argument("--method", default="dlfd", help="registered method name (see --list-methods of bench)")
    p.add_argument("--set", nargs="*", metavar="NAME=VALUE", help="method settings, e.g. --set steps=5 ot_weight=0")
    p.add_argument("--model", metavar="PATH", help=f"the original model (default: {DEFAULT_MODEL})")
    gold = p.add_mutually_exclusive_group()
    gold.add_argument("--gold", metavar="PATH", help="a trained gold model (default: train it now, ~10 s)")
    gold.add_argument("--no-gold", action="store_true", help="skip the gold model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--json", metavar="PATH", help="write before / after / gold reports, settings and timings")
    p.add_argument("--out", metavar="PATH", help="save the unlearned model (.safetensors)")
    p.set_defaults(func=cmd_forget)

    p = sub.add_parser("bench", help="every method x seeds x settings x backbones: a mean +- std table")
    add_dataset_arguments(p)
    p.add_argument("--split", metavar="PATH", help=f"split JSON without a forget request (default: {DEFAULT_SPLIT})")
    p.add_argument("--methods", default="all", help="comma-separated method names, or all")
    p.add_argument("--list-methods", action="store_true", help="list the registered methods and exit")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    p.add_argument("--settings", default="identity,instance", help="identity and/or instance forgetting")
    p.add_argument("--backbones", default="dlib_resnet,resnet18", help="dlib_resnet (pretrained) and/or resnet18")
    p.add_argument("--instances", type=int, default=20, help="photos forgotten in the instance setting")
    p.add_argument("--set", nargs="*", metavar="NAME=VALUE", help="settings for every method that has them")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", metavar="PATH", help="every run's metrics and settings")
    p.add_argument("--markdown", metavar="PATH", help="the summary tables")
    p.add_argument("--render", metavar="JSON", help="only re-render the tables of a saved --json file")
    p.set_defaults(func=cmd_bench, forget_identities=None, forget_instances=None, forget_seed=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else None
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args))
    except DLFDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
