"""Build the bundled LFW asset (``assets/lfw``): aligned crops of LFW's people with at least 10 photos.

Usage::

    .venv/bin/python scripts/build_lfw_asset.py --lfw ../shared/data/lfw            # a folder of person folders
    .venv/bin/python scripts/build_lfw_asset.py --lfw ~/Downloads/lfw.tgz            # the official archive
    .venv/bin/python scripts/build_lfw_asset.py --lfw hub:<owner>/<name>             # a Hugging Face mirror

Every photo goes through MTCNN; where a photo shows several faces the one nearest its centre is taken (LFW's
convention), and every photo where that choice is not clear is listed in ``assets/lfw/index.json`` (``ambiguous``),
as is every photo without a usable face and why (``failures``). Only the aligned 150x150 crops are written (JPEG in
tar shards under 9 MB each), never the original photos. The same source gives the same bytes: the script prints each
file's sha256 for ``assets/README.md``. Detection is not cached here unless ``--cache`` is given, so the printed time
is a full rebuild.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dlfd_core.data import align_dataset  # noqa: E402
from dlfd_core.data.aligned import aligner_fingerprint  # noqa: E402
from dlfd_core.data.lfw import LFW_MIN_IMAGES, lfw_aligner, load_lfw  # noqa: E402
from dlfd_core.data.packed import JPEG_QUALITY, packed_sha256, write_packed  # noqa: E402
from dlfd_core.errors import DLFDError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw", required=True, help="LFW folder, lfw.tgz, or hub:<owner>/<name>")
    parser.add_argument("--out", default=str(ROOT / "assets" / "lfw"), help="asset folder (default: assets/lfw)")
    parser.add_argument("--min-images", type=int, default=LFW_MIN_IMAGES, help="people with fewer photos are left out")
    parser.add_argument("--quality", type=int, default=JPEG_QUALITY, help="JPEG quality of the crops")
    parser.add_argument("--cache", action="store_true", help="reuse (and write) the aligned-face cache")
    parser.add_argument("--json", help="also write the build report here")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        dataset = load_lfw(args.lfw, min_images_per_identity=args.min_images)
        aligner = lfw_aligner()
        last = [0.0]

        def progress(fraction: float, message: str) -> None:
            if fraction - last[0] >= 0.05 or fraction >= 1.0:
                last[0] = fraction
                print(f"  {fraction:6.1%} {message} ({time.perf_counter() - start:.0f} s)", flush=True)

        aligned = align_dataset(dataset, aligner, cache=args.cache, progress=progress)
        t_align = time.perf_counter() - start
        source = {
            "dataset": "Labeled Faces in the Wild (original, not funneled, images)",
            "people": f"those with at least {args.min_images} photos",
            "loaded_from": "a folder, lfw.tgz or a Hub mirror in LFW's layout (scripts/build_lfw_asset.py --lfw)",
        }
        index = write_packed(
            args.out, dataset, aligned, source=source, aligner=aligner_fingerprint(aligner), quality=args.quality
        )
    except DLFDError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    digests = packed_sha256(args.out)
    sizes = {name: (Path(args.out) / name).stat().st_size for name in digests}
    report = {
        "counts": index["counts"],
        "files": {name: {"bytes": sizes[name], "sha256": digests[name]} for name in digests},
        "total_bytes": sum(sizes.values()),
        "seconds_align": round(t_align, 1),
        "seconds_total": round(seconds, 1),
    }
    counts = index["counts"]
    print(
        f"{counts['identities']} people, {counts['photos']} photos: {counts['aligned']} aligned, "
        f"{counts['failed']} failed, {counts['ambiguous']} ambiguous (listed in {args.out}/index.json)"
    )
    for name in digests:
        print(f"  {name}  {sizes[name] / 1e6:6.2f} MB  sha256 {digests[name]}")
    print(f"total {report['total_bytes'] / 1e6:.2f} MB in {seconds:.0f} s (alignment {t_align:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
