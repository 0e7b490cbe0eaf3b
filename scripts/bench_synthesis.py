"""Time one batch of DLFD's synthesis three ways, at equal K, step and batch: on the photos (``perturb``), on the
frozen layers' outputs (``perturb`` through the trainable layers only, ``synthesis='prefix'``), and the released
code's loop (``released_perturb``: three forward passes per step).

    .venv/bin/python scripts/bench_synthesis.py [--steps 15] [--batch 32] [--repeats 5] [--json PATH]

It loads the shipped ORL model and its photos (offline), takes one retain batch and a forget batch, runs each form
``repeats`` times interleaved (so a busy machine slows all three alike), and prints the median seconds per batch and
the ratios. A benchmark, not a test: the figures go in docs/dlfd.md with the machine they came from.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dlfd_core.bundled import bundle  # noqa: E402
from dlfd_core.data import load_split, with_forget_identities  # noqa: E402
from dlfd_core.env import environment  # noqa: E402
from dlfd_core.models import load_model  # noqa: E402
from dlfd_core.train import run_prefix, set_trainable  # noqa: E402
from dlfd_core.unlearn import UnlearnData  # noqa: E402
from dlfd_core.unlearn.base import SuffixView  # noqa: E402
from dlfd_core.unlearn.dlfd import PAPER_STEP, perturb, released_perturb  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=15, help="perturbation steps K (default: the paper's 15)")
    parser.add_argument("--batch", type=int, default=32, help="retain batch size (default 32, the methods')")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each form (median reported)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    chosen = bundle("orl")
    _, aligned = chosen.load()
    model = load_model(chosen.model_path).eval()
    set_trainable(model, "last")  # as the methods train it (trainable='last'): the frozen layers get no gradients
    split = with_forget_identities(load_split(chosen.split_path), ["s7"])
    data = UnlearnData.from_split(aligned, split, input_size=model.input_size)
    x, y = data.retain_inputs[: args.batch], data.retain_labels[: args.batch]
    x_forget = data.forget_inputs[: args.batch]
    view = SuffixView(model)
    prefix_x = run_prefix(model, x, "cpu")
    with torch.no_grad():
        target = model.features(x_forget).float()
    scale = float(run_prefix(model, data.retain_inputs, "cpu").std()) / float(data.retain_inputs.std())

    def no_autocast() -> torch.autocast:
        return torch.autocast("cpu", enabled=False)

    common = dict(steps=args.steps, ot_weight=3.0, ce_weight=0.5, feature_space="features", ot_on="perturbed")
    common.update(epsilon=0.05, cost="cosine", autocast=no_autocast)
    forms = {
        "pixels": lambda: perturb(model, x, y, target, step_size=PAPER_STEP, **common),
        "prefix": lambda: perturb(
            view, prefix_x, y, target, step_size=PAPER_STEP * scale, bounds=(0.0, None), **common
        ),
        "released": lambda: released_perturb(
            model,
            x,
            y,
            x_forget,
            steps=args.steps,
            step=0.4,
            ot_weight=3.0,
            ce_weight=0.5,
            epsilon=0.01,
            autocast=no_autocast,
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in forms}
    for form in forms.values():  # one untimed warm-up run each
        form()
    for _ in range(args.repeats):
        for name, form in forms.items():
            start = time.perf_counter()
            form()
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in times.items()}
    env = environment()
    print(f"K = {args.steps}, batch {args.batch}, {args.repeats} runs each; {env['cpus']} CPUs, torch {env['torch']}")
    for name in forms:
        print(f"{name:9s} {median[name]:8.3f} s per batch  (runs: {', '.join(f'{t:.3f}' for t in times[name])})")
    print(
        f"released / pixels {median['released'] / median['pixels']:.2f}x; "
        f"released / prefix {median['released'] / median['prefix']:.1f}x; "
        f"pixels / prefix {median['pixels'] / median['prefix']:.1f}x"
    )
    if args.json:
        payload = {"steps": args.steps, "batch": args.batch, "seconds": times, "median": median, "environment": env}
        Path(args.json).write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
