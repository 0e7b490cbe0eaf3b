"""The ``python -m dlfd_core`` command line.

Commands:
    data     load a face dataset, detect and align every face (cached), print a summary.
    split    make a seeded split of a dataset and save it as JSON.

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
