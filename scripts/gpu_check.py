"""The GPU path end to end, timed, and checked against the same work on the CPU.

Runs on the machine it is started on (see ``scripts/gpu_check.sh``):

1. **forget + gold**: forget one person of the ``--dataset`` bundle (LFW by default) with DLFD and train the gold
   model on CUDA; then the same on ORL (s7) on CUDA *and* the CPU, compared metric by metric (ORL, so that the
   CPU half stays within the time limit);
2. **enrolment**: enrol the bundle's example person (photos the model never saw) into a session on CUDA;
3. **bench cell**: one ``bench`` cell (ORL, dlib ResNet, identity forgetting, seed 0, DLFD) on CUDA and the CPU;
4. **app run path**: :func:`dlfd_core.studio.run_forget` on the enrolled session, as the app's Forget button does.

Each step prints its seconds; the CUDA and CPU results are compared metric by metric (CUDA runs in bfloat16 mixed
precision, so small differences are expected: a difference above ``--tolerance`` is printed as a MISMATCH and makes
the exit status 1). ``--json PATH`` writes every figure. ``--allow-cpu`` runs the CUDA half on the CPU too (a smoke
test of the script on a machine without a GPU; its figures say nothing about a GPU).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dlfd_core.bench import run_bench  # noqa: E402
from dlfd_core.data import load_split, with_forget_identities  # noqa: E402
from dlfd_core.experiment import forget  # noqa: E402
from dlfd_core.models import load_model  # noqa: E402
from dlfd_core.studio import Session, enrol, example_photos, load_workspace, run_forget  # noqa: E402
from dlfd_core.unlearn import create_method  # noqa: E402

COMPARED = ("retain_test_acc", "forget_train_acc", "forget_test_acc", "label_free_mia_acc", "forget_verification_auc")


def _timed(label: str, fn: Any, figures: dict[str, Any]) -> Any:
    start = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - start
    figures.setdefault("seconds", {})[label] = round(seconds, 2)
    print(f"{label:40s} {seconds:8.1f} s", flush=True)
    return value


def _compare(what: str, gpu: dict[str, float], cpu: dict[str, float], tolerance: float) -> list[str]:
    problems = []
    for name in COMPARED:
        a, b = gpu.get(name, math.nan), cpu.get(name, math.nan)
        if math.isnan(a) and math.isnan(b):
            continue
        if math.isnan(a) or math.isnan(b) or abs(a - b) > tolerance:
            problems.append(f"MISMATCH {what} {name}: cuda {a:.4f} vs cpu {b:.4f}")
        else:
            print(f"  {what} {name}: cuda {a:.4f} cpu {b:.4f} (|diff| {abs(a - b):.4f})")
    return problems


def _forget(aligned: Any, split: Any, model: Any, device: str) -> dict[str, float]:
    outcome = forget(aligned, split, model, create_method("dlfd"), seed=0, device=device, train_gold=True)
    return {**outcome.reports["after"].metrics, **{f"gold_{k}": v for k, v in outcome.reports["gold"].metrics.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--allow-cpu", action="store_true", help="run the 'cuda' half on the CPU (smoke test only)")
    parser.add_argument("--dataset", default="lfw", choices=("lfw", "orl"), help="the bundle timed on CUDA")
    parser.add_argument("--person", help="the person to forget (default: Hugo_Chavez on LFW, s7 on ORL)")
    parser.add_argument("--tolerance", type=float, default=0.03, help="largest accepted |cuda - cpu| per metric")
    parser.add_argument("--skip-cpu", action="store_true", help="do not rerun the steps on the CPU for comparison")
    parser.add_argument("--json", metavar="PATH", help="write every figure here")
    args = parser.parse_args(argv)

    if torch.cuda.is_available():
        gpu = "cuda"
        name = torch.cuda.get_device_name(0)
    elif args.allow_cpu:
        gpu, name = "cpu", "none (--allow-cpu: the 'cuda' half ran on the CPU)"
    else:
        print("no CUDA device here; run this on a machine with a GPU (or pass --allow-cpu for a smoke test)")
        return 2
    figures: dict[str, Any] = {
        "device": name,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
    }
    print(f"GPU check on {name}; torch {torch.__version__}; {torch.get_num_threads()} CPU threads", flush=True)
    problems: list[str] = []

    person = args.person or ("Hugo_Chavez" if args.dataset == "lfw" else "s7")
    workspace = _timed(
        f"load the {args.dataset} workspace (faces, model, outputs)",
        lambda: load_workspace(args.dataset, device=gpu),
        figures,
    )
    _timed("  wait for the outputs", workspace.wait_ready, figures)
    split = with_forget_identities(workspace.split, [person])
    model = load_model(workspace.bundle.model_path)
    figures["forget_gpu"] = _timed(
        f"1. forget {person} + gold ({gpu})", lambda: _forget(workspace.aligned, split, model, gpu), figures
    )
    orl = load_workspace("orl") if args.dataset != "orl" else workspace
    orl.wait_ready()
    orl_split = with_forget_identities(orl.split, ["s7"])
    orl_model = load_model(orl.bundle.model_path)
    if args.dataset == "orl" and person == "s7":  # step 1 was this already
        on_gpu = figures["forget_gpu"]
    else:
        on_gpu = _timed(
            f"1. ORL forget s7 + gold ({gpu})", lambda: _forget(orl.aligned, orl_split, orl_model, gpu), figures
        )
    figures["orl_forget_gpu"] = on_gpu
    if not args.skip_cpu:
        on_cpu = _timed(
            "1. ORL forget s7 + gold (cpu)", lambda: _forget(orl.aligned, orl_split, orl_model, "cpu"), figures
        )
        figures["orl_forget_cpu"] = on_cpu
        problems += _compare("ORL forget", on_gpu, on_cpu, args.tolerance)

    with tempfile.TemporaryDirectory() as root:
        session = Session.start(workspace, root)
        photos = example_photos(session)
        enrolment = _timed(
            f"2. enrol {workspace.bundle.example_identity} ({len(photos)} photos, {gpu})",
            lambda: enrol(session, "Example person", photos, device=gpu),
            figures,
        )
        figures["enrolment"] = {"recognised": enrolment.recognised, "retain_test_acc": enrolment.retain_test_acc}
        print(f"  recognised {enrolment.recognised:.3f}, retain-test {enrolment.retain_test_acc:.3f}")
        record = _timed(
            f"4. app run path: run_forget with gold ({gpu})",
            lambda: run_forget(session, ["Example person"], create_method("dlfd"), device=gpu),
            figures,
        )
        figures["app_run"] = {"verdict": record.verdict, **record.outcome.reports["after"].metrics}
        print(f"  verdict: {record.verdict}")
        session.close()

    def cell(device: str) -> dict[str, float]:
        records = run_bench(
            orl.aligned,
            load_split(orl.bundle.split_path),
            methods=["dlfd"],
            seeds=[0],
            settings=["identity"],
            backbones=["dlib_resnet"],
            device=device,
        )
        return next(r["metrics"] for r in records if r["model"] == "dlfd")

    bench_gpu = _timed(f"3. bench cell ORL/dlfd/identity/seed 0 ({gpu})", lambda: cell(gpu), figures)
    figures["bench_gpu"] = bench_gpu
    if not args.skip_cpu:
        bench_cpu = _timed("3. bench cell (cpu)", lambda: cell("cpu"), figures)
        figures["bench_cpu"] = bench_cpu
        problems += _compare("bench", bench_gpu, bench_cpu, args.tolerance)

    for line in problems:
        print(line)
    print("OK: no mismatch" if not problems else f"{len(problems)} mismatch(es)")
    figures["mismatches"] = problems
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, default=float) + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
