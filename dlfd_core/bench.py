"""The benchmark: every method x seeds x forgetting settings x backbones, summarised as mean ± std.

For each backbone and seed the original model is trained with the recipe and that seed; for each forgetting setting
the forget request is drawn with the seed (seed i forgets the i-th person of a fixed random order of the known
people, or ``instances`` random photos drawn with the seed), the gold model
is retrained on the retain set with the same seed, and every method runs on the same original model and is
evaluated against the same gold model. Timings are wall times of this machine (see the JSON's ``environment``).

Method settings are each method's defaults, except for ResNet-18 trained from scratch, where the learning rates are
replaced by the papers' scale (:data:`BACKBONE_OVERRIDES`): the defaults are scaled to the pretrained model's recipe,
which would barely move a model trained from scratch at rate 0.05.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .errors import CancelledError, DLFDError
from .progress import ProgressFn, no_progress, scaled

log = logging.getLogger(__name__)

__all__ = [
    "BACKBONE_OVERRIDES",
    "SUMMARY_METRICS",
    "forget_feature_moved",
    "format_markdown",
    "paired_differences",
    "paired_t_test",
    "run_bench",
    "summarise",
    "t_interval",
]

BACKBONE_OVERRIDES: dict[str, dict[str, Any]] = {"resnet18": {"lr": 0.01, "head_lr": 0.01, "trainable": "all"}}
"""Settings replaced per backbone for every method that has them (``retrain`` always uses the recipe; methods whose
rates are Adam rates keep theirs)."""

SUMMARY_METRICS = (
    "retain_test_acc",
    "forget_train_acc",
    "forget_acc_gap_to_gold",
    "mia_balanced_acc",
    "nomus",
    "label_free_mia_acc",
    "nomus_label_free",
    "attack_auc",
    "attack_auc_gap_to_gold",
    "forget_verification_auc",
    "activation_distance_to_gold",
    "forget_feature_moved",
    "unlearn_seconds",
    "perturbed_batches",
)


def _settings_for(method_name: str, backbone: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The backbone's overrides and then ``extra``, each limited to the settings the method has."""
    from .unlearn import method_class

    cls = method_class(method_name)
    fields = {f.name for f in dataclasses.fields(cls)}
    backbone_fields = set() if method_name == "retrain" else set(fields)  # retrain always uses the recipe
    if cls.optimizer != "sgd":  # Adam rates are not on the SGD scale of the overrides
        backbone_fields -= {"lr", "head_lr"}
    out = {k: v for k, v in BACKBONE_OVERRIDES.get(backbone, {}).items() if k in backbone_fields}
    out.update({k: v for k, v in (extra or {}).items() if k in fields})
    return out


def run_bench(
    aligned: Any,
    base_split: Any,
    *,
    methods: Sequence[str],
    seeds: Sequence[int],
    settings: Sequence[str] = ("identity", "instance"),
    method_settings: Mapping[str, Any] | None = None,
    backbones: Sequence[str] = ("dlib_resnet",),
    instances: int = 20,
    device: str = "cpu",
    recipes: Mapping[str, Any] | None = None,
    outputs_for: Callable[[Any], Any] | None = None,
    progress: ProgressFn = no_progress,
    should_stop: Callable[[], bool] | None = None,
) -> list[dict[str, Any]]:
    """Run the benchmark; one record per (backbone, setting, seed, model), ``model`` = original, gold or a method.

    ``method_settings`` are given to every method that has them (after the backbone's overrides). ``recipes``: per
    backbone, the :class:`~dlfd_core.train.TrainConfig` of the original and gold models (default: the backbone's
    default recipe).
    ``outputs_for(model)``: a cache of ``model``'s frozen-prefix outputs on every photo (a
    :class:`~dlfd_core.studio.KeyedOutputs`: ``collect``, ``prefix_outputs``, ``embeddings``), built once per
    backbone from its first original model; every model whose prefix matches is then evaluated, trained as a gold
    model and unlearned from the cached outputs (the same numbers, several times faster), the others by full passes.

    Each record: ``backbone``, ``setting``, ``seed``, ``model``, ``forget`` (who or what was forgotten),
    ``settings`` (the method's), ``metrics`` (the report's, plus ``unlearn_seconds``, ``forget_feature_moved`` and the
    per-photo attack's ``attack_auc`` and ``attack_auc_gap_to_gold``), ``judgement`` (the app's verdict against the
    gold model: ``forgotten``, ``detectable`` or ``inconclusive``), ``error`` (when a method failed; the others still
    run).
    """
    from .data import with_forget_identities, with_forget_instances
    from .evaluate.evaluate import collect_parts, report_from_outputs, split_parts
    from .experiment import forget
    from .train import train_on_split
    from .unlearn import create_method, method_class

    for name in methods:
        method_class(name)  # fail early on a typo
    for setting_name in settings:
        if setting_name not in ("identity", "instance"):
            raise DLFDError(f"unknown bench setting {setting_name!r}: use identity or instance")
    records: list[dict[str, Any]] = []
    jobs = [(b, s) for b in backbones for s in seeds]
    caches: dict[str, Any] = {}
    for job_index, (backbone, seed) in enumerate(jobs):
        job_progress = scaled(progress, job_index / len(jobs), (job_index + 1) / len(jobs))
        job_progress(0.0, f"{backbone} seed {seed}: training the original model")
        cache = caches.get(backbone)

        def train(split: Any, which: str, backbone: str = backbone, seed: int = seed) -> Any:
            fast = _fast_paths(caches.get(backbone), aligned, device)
            return train_on_split(
                aligned,
                split,
                which=which,
                backbone=backbone,
                config=(recipes or {}).get(backbone),
                seed=seed,
                device=device,
                should_stop=should_stop,
                embed=fast["embed"],
                prefix=fast["prefix"],
            ).model

        original = train(base_split, "original")
        if outputs_for is not None and backbone not in caches:
            cache = caches[backbone] = outputs_for(original)
        for set_index, setting_name in enumerate(settings):
            if setting_name == "identity":
                # seed i forgets the i-th person of one fixed random order, so seeds forget different people
                person = str(np.random.default_rng(0).permutation(list(base_split.known))[seed % len(base_split.known)])
                split = with_forget_identities(base_split, [person])
                what: Any = [person]
            elif setting_name == "instance":
                split = with_forget_instances(base_split, instances, seed=seed)
                what = len(split.forget_keys)
            else:
                raise DLFDError(f"unknown bench setting {setting_name!r}: use identity or instance")
            if cache is not None:

                def collect(model: Any, split: Any = split, cache: Any = cache) -> Any:
                    return cache.collect(model, aligned, split, device=device)

            else:
                parts = split_parts(aligned, split)

                def collect(model: Any, parts: Any = parts) -> Any:
                    return collect_parts(model, parts, device=device)

            gold_model = train(split, "gold")
            before = collect(original)
            gold = collect(gold_model)
            common = {"backbone": backbone, "setting": setting_name, "seed": seed, "forget": what}
            for label, outs in (("original", before), ("gold", gold)):
                report = report_from_outputs(outs, split, gold=gold, seed=seed)
                metrics = dict(report.metrics)
                metrics["forget_feature_moved"] = forget_feature_moved(before, outs)
                judged = _judged(outs, gold, split, seed)
                metrics.update(judged.pop("metrics"))
                records.append({**common, "model": label, "settings": {}, "metrics": metrics, **judged})
            applicable = [m for m in methods if setting_name in method_class(m).modes]
            for method_index, name in enumerate(applicable):
                fraction = (set_index + (method_index + 1) / (len(applicable) + 1)) / len(settings)
                job_progress(fraction, f"{backbone} seed {seed} {setting_name}: {name}")
                overrides = _settings_for(name, backbone, method_settings)
                record = {**common, "model": name, "settings": overrides}
                try:
                    outcome = forget(
                        aligned,
                        split,
                        original,
                        create_method(name, **overrides),
                        seed=seed,
                        device=device,
                        gold_model=gold_model,
                        before=before,
                        gold_outputs=gold,
                        collect=collect,
                        prefix=_fast_paths(cache, aligned, device)["prefix"],
                        report_reference=False,
                        should_stop=should_stop,
                    )
                except CancelledError:
                    raise
                except Exception as exc:  # one method failing must not lose the others' results
                    log.warning("%s failed on %s/%s seed %d: %r", name, backbone, setting_name, seed, exc)
                    record["error"] = f"{type(exc).__name__}: {exc}"
                    records.append(record)
                    continue
                metrics = dict(outcome.reports["after"].metrics)
                metrics["forget_feature_moved"] = forget_feature_moved(before, outcome.outputs["after"])
                judged = _judged(outcome.outputs["after"], gold, split, seed)
                metrics.update(judged.pop("metrics"))
                record.update(judged)
                metrics["unlearn_seconds"] = outcome.result.seconds
                if any("perturbed" in h for h in outcome.result.history):  # DLFD: how long it synthesised
                    metrics["perturbed_batches"] = sum(h.get("perturbed", 0.0) for h in outcome.result.history)
                record.update(settings=outcome.result.settings, metrics=metrics)
                records.append(record)
                log.info(
                    "%s %s seed %d %s: retain-test %.3f forget %.3f NoMUS %.3f (label-free %.3f) %.1f s",
                    backbone,
                    setting_name,
                    seed,
                    name,
                    metrics.get("retain_test_acc", math.nan),
                    metrics.get("forget_train_acc", math.nan),
                    metrics.get("nomus", math.nan),
                    metrics.get("nomus_label_free", math.nan),
                    outcome.result.seconds,
                )
    progress(1.0, "done")
    return records


def _judged(outputs: Mapping[str, Any], gold: Mapping[str, Any], split: Any, seed: int) -> dict[str, Any]:
    """The app's judgement against the gold model (:func:`~dlfd_core.evaluate.verdict.judge_against_gold`) for a
    record: its outcome, and the per-photo attack's AUC and gap to gold as metrics (NaN with too few photos)."""
    from .evaluate.verdict import judge_against_gold

    judgement = judge_against_gold(outputs, gold, split, seed=seed)
    attack = [c for c in judgement.comparisons if c.name == "membership attack AUC"]
    auc, gap = (attack[0].value, attack[0].difference) if attack else (math.nan, math.nan)
    return {"judgement": judgement.outcome, "metrics": {"attack_auc": auc, "attack_auc_gap_to_gold": gap}}


def _fast_paths(cache: Any, aligned: Any, device: str) -> dict[str, Any]:
    """The ``embed`` / ``prefix`` shortcuts of :func:`~dlfd_core.train.train_on_split` from a prefix cache."""
    if cache is None:
        return {"embed": None, "prefix": None}
    return {
        "embed": cache.embeddings,
        "prefix": lambda model, keys: cache.prefix_outputs(model, keys, aligned),
    }


def forget_feature_moved(before: Mapping[str, Any], after: Mapping[str, Any]) -> float:
    """How far the forgotten photos' embeddings moved from the original model's: the mean over ``forget_train`` of
    ``1 - cos(f_original, f_model)`` (0: not moved; NaN without forget photos or with embeddings of another size)."""
    a, b = before.get("forget_train"), after.get("forget_train")
    if a is None or b is None or not len(a) or a.features.shape != b.features.shape:
        return math.nan
    x = a.features / np.linalg.norm(a.features, axis=1, keepdims=True).clip(1e-12)
    y = b.features / np.linalg.norm(b.features, axis=1, keepdims=True).clip(1e-12)
    return float(np.mean(1.0 - np.sum(x * y, axis=1)))


def summarise(
    records: Sequence[Mapping[str, Any]], metrics: Sequence[str] = SUMMARY_METRICS
) -> dict[tuple[str, str], dict[str, dict[str, tuple[float, float, int]]]]:
    """``{(backbone, setting): {model: {metric: (mean, std, n)}}}`` over seeds (NaNs and failed runs left out).

    ``std`` is the sample standard deviation (ddof 1; 0 for a single seed).
    """
    groups: dict[tuple[str, str], dict[str, dict[str, list[float]]]] = {}
    for r in records:
        if "error" in r:
            continue
        per_model = groups.setdefault((r["backbone"], r["setting"]), {}).setdefault(r["model"], {})
        for name in metrics:
            value = r["metrics"].get(name, math.nan)
            if value is not None and not math.isnan(value):
                per_model.setdefault(name, []).append(float(value))
    out: dict[tuple[str, str], dict[str, dict[str, tuple[float, float, int]]]] = {}
    for key, models in groups.items():
        out[key] = {
            model: {
                name: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v))
                for name, v in values.items()
            }
            for model, values in models.items()
        }
    return out


def format_markdown(
    records: Sequence[Mapping[str, Any]],
    *,
    reference: str = "dlfd",
    header: str = "",
    metrics: Sequence[str] = SUMMARY_METRICS,
) -> str:
    """Markdown tables (one per backbone and setting) and, per setting, the reference method's NoMUS against each."""
    summary = summarise(records, metrics)
    lines = [header.rstrip(), ""] if header else []
    for (backbone, setting_name), models in summary.items():
        seeds = sorted({r["seed"] for r in records if r["backbone"] == backbone and r["setting"] == setting_name})
        noun = "seed" if len(seeds) == 1 else "seeds"
        lines.append(f"### {backbone}, {setting_name} forgetting ({len(seeds)} {noun}: {', '.join(map(str, seeds))})")
        lines.append("")
        lines.append("| model | " + " | ".join(metrics) + " |")
        lines.append("|---|" + "---|" * len(metrics))
        for model, values in models.items():
            cells = []
            for name in metrics:
                if name in values:
                    mean, std, count = values[name]
                    digits = 1 if name.endswith("seconds") else 3
                    # one seed has no spread: its value alone, not a misleading "± 0"
                    cells.append(f"{mean:.{digits}f} ± {std:.{digits}f}" if count > 1 else f"{mean:.{digits}f}")
                else:
                    cells.append("–")
            runs = max((values[name][2] for name in values), default=0)
            shown = model if runs == len(seeds) else f"{model} ({runs} {'seed' if runs == 1 else 'seeds'})"
            lines.append(f"| {shown} | " + " | ".join(cells) + " |")
        failed = [r for r in records if "error" in r and r["backbone"] == backbone and r["setting"] == setting_name]
        for r in failed:
            lines.append(f"\n{r['model']} failed on seed {r['seed']}: {r['error']}")
        lines.append("")
        lines.extend(_headline(records, backbone, setting_name))
        if reference in models:
            lines.extend(_comparison(models, reference))
            lines.append("")
            lines.extend(_significance(records, backbone, setting_name, reference))
    return "\n".join(lines).rstrip() + "\n"


STAR = "\\*"  # a Markdown-escaped asterisk

#: The metrics the significance table compares (the headline of a forgetting run).
SIGNIFICANCE_METRICS = (
    "retain_test_acc",
    "forget_acc_gap_to_gold",
    "attack_auc_gap_to_gold",
    "label_free_mia_acc",
    "forget_feature_moved",
    "unlearn_seconds",
)


def paired_differences(
    records: Sequence[Mapping[str, Any]], backbone: str, setting_name: str, reference: str, other: str, metric: str
) -> np.ndarray:
    """``other − reference`` per seed where both ran without error and the metric is defined (paired by seed)."""
    values: dict[str, dict[int, float]] = {reference: {}, other: {}}
    for r in records:
        if r["backbone"] != backbone or r["setting"] != setting_name or r["model"] not in values or "error" in r:
            continue
        value = r["metrics"].get(metric, math.nan)
        if value is not None and not math.isnan(value):
            values[r["model"]][r["seed"]] = float(value)
    seeds = sorted(set(values[reference]) & set(values[other]))
    return np.asarray([values[other][s] - values[reference][s] for s in seeds], dtype=np.float64)


def paired_t_test(differences: np.ndarray) -> float:
    """Two-sided p-value of the paired t-test (``scipy.stats.ttest_rel``) on per-seed differences; NaN with fewer than
    3 seeds or when every difference is the same (the test is undefined: no spread; the table says so instead)."""
    from scipy.stats import ttest_1samp

    d = np.asarray(differences, dtype=np.float64)
    if len(d) < 3 or np.all(d == d[0]):
        return math.nan
    return float(ttest_1samp(d, 0.0).pvalue)


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The ``level`` confidence interval of the mean of ``values`` over seeds (Student's t, ``n − 1`` degrees of
    freedom); NaNs with fewer than 2 values, the mean twice when they do not vary."""
    from scipy.stats import t

    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return math.nan, math.nan
    mean, sem = float(v.mean()), float(v.std(ddof=1)) / math.sqrt(len(v))
    if sem == 0:
        return mean, mean
    half = float(t.ppf(0.5 + level / 2, len(v) - 1)) * sem
    return mean - half, mean + half


def _headline(records: Sequence[Mapping[str, Any]], backbone: str, setting_name: str) -> list[str]:
    """Each model's headline metrics as the mean over seeds with its 95 % t-interval."""
    per_model: dict[str, dict[str, list[float]]] = {}
    verdicts: dict[str, list[str]] = {}
    for r in records:
        if r["backbone"] != backbone or r["setting"] != setting_name or "error" in r:
            continue
        values = per_model.setdefault(r["model"], {})
        if "judgement" in r:
            verdicts.setdefault(r["model"], []).append(str(r["judgement"]))
        for metric in SIGNIFICANCE_METRICS:
            value = r["metrics"].get(metric)
            if value is not None and not math.isnan(value):
                values.setdefault(metric, []).append(float(value))
    lines = [
        "Headline, mean over seeds [95 % interval of the mean, Student's t over seeds; one seed: no interval]; "
        "verdicts: the app's judgement against the gold model per seed (docs/app.md):",
        "",
        "| model | " + " | ".join(SIGNIFICANCE_METRICS) + " | verdicts |",
        "|---|" + "---|" * (len(SIGNIFICANCE_METRICS) + 1),
    ]
    for model, values in per_model.items():
        cells = []
        for metric in SIGNIFICANCE_METRICS:
            v = np.asarray(values.get(metric, []))
            fmt = ".1f" if metric.endswith("seconds") else ".3f"
            if len(v) == 0:
                cells.append("–")
                continue
            low, high = t_interval(v)
            cells.append(f"{v.mean():{fmt}}" + ("" if math.isnan(low) else f" [{low:{fmt}}, {high:{fmt}}]"))
        seen = verdicts.get(model, [])
        counts = ", ".join(f"{name} {seen.count(name)}" for name in dict.fromkeys(sorted(seen)))
        cells.append(f"{counts} of {len(seen)}" if seen else "–")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _significance(records: Sequence[Mapping[str, Any]], backbone: str, setting_name: str, reference: str) -> list[str]:
    """A table of each model's mean difference from ``reference`` over seeds, with the paired t-test's p-value;
    ``*`` marks p < 0.05 (no correction for the many comparisons: read it as a screen, not a proof)."""
    models = list(
        dict.fromkeys(r["model"] for r in records if r["backbone"] == backbone and r["setting"] == setting_name)
    )
    others = [m for m in models if m not in (reference, "original")]
    if not others:
        return []
    lines = [
        f"Difference from {reference}, mean over seeds (other − {reference}) [its 95 % t-interval], paired t-test "
        "p-value over seeds; "
        "\\* p < 0.05 (3 seeds or more), – not measured, = identical on every seed, (every seed) the same "
        "difference on every seed:",
        "",
        "| model | " + " | ".join(SIGNIFICANCE_METRICS) + " |",
        "|---|" + "---|" * len(SIGNIFICANCE_METRICS),
    ]
    for other in others:
        cells = []
        for metric in SIGNIFICANCE_METRICS:
            d = paired_differences(records, backbone, setting_name, reference, other, metric)
            if len(d) == 0:
                cells.append("–")
                continue
            p = paired_t_test(d)
            fmt = ".1f" if metric.endswith("seconds") else ".3f"
            if math.isnan(p):
                same = len(d) > 1 and bool(np.all(d == d[0]))
                cells.append("=" if same and d[0] == 0 else f"{d.mean():+{fmt}}" + (" (every seed)" if same else ""))
            else:
                mark = STAR if p < 0.05 else ""
                low, high = t_interval(d)
                cells.append(f"{d.mean():+{fmt}} [{low:+{fmt}}, {high:+{fmt}}] (p {p:.2g}){mark}")
        lines.append(f"| {other} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _comparison(models: Mapping[str, Mapping[str, tuple[float, float, int]]], reference: str) -> list[str]:
    out = []
    for key in ("nomus", "nomus_label_free"):
        if key not in models[reference]:
            continue
        mine = models[reference][key][0]
        others = {m: v[key][0] for m, v in models.items() if m not in (reference, "original", "gold") and key in v}
        better = [m for m, v in others.items() if v > mine + 1e-12]
        not_better = [m for m, v in others.items() if v <= mine + 1e-12]
        gold = f" (gold {models['gold'][key][0]:.3f})" if "gold" in models and key in models["gold"] else ""
        out.append(
            f"- {reference} mean {key} {mine:.3f}{gold}: at least as high as {', '.join(not_better) or 'none'}; "
            f"**lower than {', '.join(f'{m} ({others[m]:.3f})' for m in better) or 'none'}**."
        )
    return out
