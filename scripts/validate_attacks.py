"""Validate the verdict's membership attacks on a bundled dataset (issue 14): the reference-free "population"
statistic against offline LiRA with the shipped reference statistics, on the original model, the gold model and
unlearned models, forgetting one person at a time.

    python scripts/validate_attacks.py --dataset orl --people 5 --json docs/attack_validation_orl.json

For each of ``--people`` people (the bench's fixed random order), the gold model is trained without them (the
original's recipe, seed 0) and each method unlearns them from the shipped original. Every model's per-photo
statistic (:func:`~dlfd_core.evaluate.attacks.membership_scores`: the top class's logit-scaled confidence) is scored
two ways: as it is (the population attack), and as offline LiRA's z-value against the photos' OUT reference values.
Members are the forgotten people's training photos, non-members the never-trained people's photos; the scores of
all people are pooled per model. A good attack finds the original's members (high AUC, high TPR at 1 % FPR) and sits
near chance (AUC 0.5, TPR near the FPR) on the gold model.

Two 95 % intervals per AUC: over photos (the photos resampled), and over people (whole rounds resampled, one round
being one forgotten person with their photos and that round's non-members). The second is the honest one for this
question: a person's photos share their reference values (LiRA's OUT mean of a person comes from the few models that
left them out), so with few people the pooled AUC moves by person, not by photo.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dlfd_core import studio  # noqa: E402
from dlfd_core.data import with_forget_identities  # noqa: E402
from dlfd_core.env import environment  # noqa: E402
from dlfd_core.evaluate.attacks import _pair_auc, attack_summary, membership_scores  # noqa: E402
from dlfd_core.experiment import forget  # noqa: E402
from dlfd_core.references import PersonReferences  # noqa: E402
from dlfd_core.train import recipe_of, train_on_split  # noqa: E402
from dlfd_core.unlearn import create_method  # noqa: E402


def people_interval(rounds: list[tuple[list[float], list[float]]], resamples: int = 2000, seed: int = 0) -> list[float]:
    """The percentile interval of the pooled AUC when whole rounds (people) are resampled with replacement."""
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        chosen = [rounds[i] for i in rng.integers(0, len(rounds), len(rounds))]
        draws.append(_pair_auc(np.concatenate([m for m, _ in chosen]), np.concatenate([n for _, n in chosen])))
    return [float(v) for v in np.quantile(draws, [0.025, 0.975])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="orl", choices=("orl", "lfw"))
    parser.add_argument("--people", type=int, default=5, help="people forgotten, one at a time")
    parser.add_argument("--methods", default="class_reset,dlfd", help="unlearning methods, comma-separated")
    parser.add_argument("--references", help="a reference-statistics file (default: the bundle's shipped one)")
    parser.add_argument("--json", help="write the summary here")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    workspace = studio.load_workspace(args.dataset)
    references = PersonReferences.load(args.references) if args.references else workspace.references
    if references is None:
        parser.error(f"no shipped reference statistics for {args.dataset}: run python -m dlfd_core references first")
    aligned, base, model, cache = workspace.aligned, workspace.split, workspace.model, workspace.outputs
    order = np.random.default_rng(0).permutation(list(base.known))  # the bench's order: seed i forgets person i
    people = [str(p) for p in order[: args.people]]
    methods = [m for m in args.methods.split(",") if m]
    scores: dict[str, dict[str, dict[str, list]]] = {}

    def add(label: str, parts: dict, keys: dict) -> None:
        phi = membership_scores(parts, "identity")
        lira = {
            "forget": references.lira_scores(keys["forget_train"], phi["forget"]),
            "nonmember": references.lira_scores(keys["unseen"], phi["nonmember"]),
        }
        for attack, values in (("population", phi), ("lira", lira)):
            side = scores.setdefault(label, {}).setdefault(attack, {"members": [], "nonmembers": [], "rounds": []})
            side["members"] += [float(v) for v in values["forget"]]
            side["nonmembers"] += [float(v) for v in values["nonmember"]]
            side["rounds"].append((np.asarray(values["forget"], float), np.asarray(values["nonmember"], float)))

    for i, person in enumerate(people):
        split = with_forget_identities(base, [person])
        keys = split.part_keys(aligned)
        print(f"[{i + 1}/{len(people)}] {person}: gold model", flush=True)
        gold = train_on_split(
            aligned,
            split,
            which="gold",
            backbone=model.backbone_name,
            config=recipe_of(model),
            seed=0,
            prefix=lambda m, k: cache.prefix_outputs(m, k, aligned),
        ).model
        gold_parts = cache.collect(gold, aligned, split, device="cpu")
        add("original", cache.parts(aligned, split), keys)
        add("gold", gold_parts, keys)
        for name in methods:
            print(f"[{i + 1}/{len(people)}] {person}: {name}", flush=True)
            outcome = forget(
                aligned,
                split,
                model,
                create_method(name),
                seed=0,
                gold_outputs=gold_parts,
                outputs=cache,
                report_reference=False,
            )
            add(name, outcome.outputs["after"], keys)
    summary = {}
    for label, attacks in scores.items():
        summary[label] = {}
        for attack, side in attacks.items():
            s = attack_summary(np.asarray(side["members"]), np.asarray(side["nonmembers"]))
            summary[label][attack] = {
                "auc": s.auc,
                "auc_interval": list(s.auc_interval),
                "auc_interval_people": people_interval(side["rounds"]),
                "tpr_at_1pct_fpr": s.tpr[0.01],
                "tpr_at_01pct_fpr": s.tpr[0.001],
                "members": s.members,
                "nonmembers": s.nonmembers,
                # where each side sits: for LiRA, the mean z-value against the reference models (0: as they are)
                "member_mean": float(np.mean(side["members"])),
                "nonmember_mean": float(np.mean(side["nonmembers"])),
            }
    print(
        f"\n{args.dataset}: {len(people)} people forgotten one at a time ({', '.join(people)}); "
        f"{references.count} reference models"
    )
    print(
        "| model | population AUC [95 %, photos] | population TPR@1 % | LiRA AUC [95 %, photos] "
        "| LiRA AUC [95 %, people] | LiRA TPR@1 % | LiRA mean z, members / non-members |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, attacks in summary.items():
        p, q = attacks["population"], attacks["lira"]
        print(
            f"| {label} | {p['auc']:.3f} [{p['auc_interval'][0]:.3f}, {p['auc_interval'][1]:.3f}] | "
            f"{p['tpr_at_1pct_fpr']:.3f} | {q['auc']:.3f} [{q['auc_interval'][0]:.3f}, {q['auc_interval'][1]:.3f}] | "
            f"[{q['auc_interval_people'][0]:.3f}, {q['auc_interval_people'][1]:.3f}] | "
            f"{q['tpr_at_1pct_fpr']:.3f} | {q['member_mean']:+.2f} / {q['nonmember_mean']:+.2f} |"
        )
    if args.json:
        payload = {
            "command": "python scripts/validate_attacks.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "environment": environment(),
            "seconds": time.perf_counter() - start,
            "people": people,
            "references": dict(references.meta),
            "summary": summary,
        }
        Path(args.json).write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
