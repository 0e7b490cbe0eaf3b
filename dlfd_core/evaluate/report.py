"""Named metrics, their directions, and the report that carries one model's numbers.

Every number a report may hold is registered in :data:`METRICS` with a direction:

* ``"higher"`` / ``"lower"``: larger / smaller is better.
* ``"target"``: closer to a target value is better. The target is either fixed in the spec (0.5 for every
  membership-attack accuracy or AUC: an attack at chance, matching the forgetting score), or ``None`` when it is
  the gold (retrained) model's own value, which differs per experiment. For those, the target is stored per
  report in ``meta["targets"]`` (see :meth:`Report.with_targets_from`) or passed explicitly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from ..errors import UnknownNameError

__all__ = ["METRICS", "Direction", "MetricSpec", "Report", "format_table", "metric_names", "metric_spec", "percent"]

Direction = Literal["higher", "lower", "target"]


@dataclass(frozen=True)
class MetricSpec:
    """How to read one metric.

    Attributes:
        name: snake_case key used in reports and JSON.
        direction: ``"higher"``, ``"lower"`` or ``"target"`` (closer to ``target`` is better).
        target: the fixed target of a ``"target"`` metric, or ``None`` when the target is the gold model's value
            (decided per report). Always ``None`` for ``"higher"`` / ``"lower"``.
        description: one plain-language sentence.
        label: a short name for people (cards, tables, charts); the key when empty.
        reading: how to read it, in a few plain words for a result card ("higher is better"); empty when the metric
            is not shown on one.
    """

    name: str
    direction: Direction
    target: float | None
    description: str
    label: str = ""
    reading: str = ""

    @property
    def title(self) -> str:
        """:attr:`label`, or the key when the metric has none."""
        return self.label or self.name

    def __post_init__(self) -> None:
        if self.direction not in ("higher", "lower", "target"):
            raise ValueError(f"direction must be 'higher', 'lower' or 'target', got {self.direction!r}")
        if self.direction != "target" and self.target is not None:
            raise ValueError(f"metric {self.name!r}: only a 'target' metric can have a target")

    @property
    def arrow(self) -> str:
        """``↑``, ``↓``, ``→0.5`` (a fixed target) or ``→gold`` (the gold model's value)."""
        if self.direction == "higher":
            return "↑"
        if self.direction == "lower":
            return "↓"
        return "→gold" if self.target is None else f"→{self.target:g}"


_GOLD = "target: the gold (retrained) model's value"

_SPECS: tuple[MetricSpec, ...] = (
    # accuracy per split
    MetricSpec("retain_train_acc", "higher", None, "Accuracy on the retain set's training photos."),
    MetricSpec("retain_test_acc", "higher", None, "Accuracy on held-out photos of retained people (test accuracy)."),
    MetricSpec("forget_train_acc", "target", None, f"Accuracy on the photos to forget; {_GOLD}."),
    MetricSpec("forget_test_acc", "target", None, f"Accuracy on held-out photos of forgotten people; {_GOLD}."),
    # alignment with the gold model
    MetricSpec("forget_acc_gap_to_gold", "lower", None, "|forget accuracy - gold model's forget accuracy|."),
    MetricSpec("forget_easy_acc_gap_to_gold", "lower", None, "Accuracy gap to gold on the easy forget samples."),
    MetricSpec("forget_hard_acc_gap_to_gold", "lower", None, "Accuracy gap to gold on the hard forget samples."),
    MetricSpec("retain_test_acc_gap_to_gold", "lower", None, "|test accuracy - gold model's test accuracy|."),
    MetricSpec("js_to_gold", "lower", None, "Mean Jensen-Shannon divergence to the gold model's outputs on forget."),
    MetricSpec("activation_distance_to_gold", "lower", None, "Mean L2 distance to gold's softmax outputs on forget."),
    # membership inference (DLFD)
    MetricSpec("mia_acc", "target", 0.5, "Loss-based attack accuracy, all samples (DLFD code); 0.5 is chance."),
    MetricSpec("mia_balanced_acc", "target", 0.5, "Loss-based attack accuracy on equal-sized sides; 0.5 is chance."),
    MetricSpec("mia_auc", "target", 0.5, "ROC AUC of the loss-based attack; 0.5 is chance."),
    MetricSpec("mia_balanced_auc", "target", 0.5, "ROC AUC of the balanced loss-based attack; 0.5 is chance."),
    MetricSpec("forgetting_score", "lower", None, "DLFD forgetting score |MIA - 0.5|, balanced attack; 0 is best."),
    MetricSpec("nomus", "higher", None, "DLFD NoMUS: (test accuracy + 1 - 2 * forgetting score) / 2, balanced attack."),
    MetricSpec("forgetting_score_unbalanced", "lower", None, "Forgetting score from the paper's unbalanced attack."),
    MetricSpec("nomus_unbalanced", "higher", None, "NoMUS from the paper's unbalanced attack."),
    MetricSpec(
        "attack_auc",
        "target",
        None,
        "ROC AUC of the per-photo membership attack, forgotten training photos against non-members (offline LiRA "
        f"when reference statistics cover the photos, meta['attack']); 0.5 is chance; {_GOLD}.",
    ),
    MetricSpec("label_free_mia_acc", "target", 0.5, "Confidence/entropy attack accuracy (no labels); 0.5 is chance."),
    MetricSpec("label_free_mia_auc", "target", 0.5, "ROC AUC of the confidence/entropy attack; 0.5 is chance."),
    MetricSpec(
        "forgetting_score_label_free",
        "lower",
        None,
        "|label-free attack accuracy - 0.5|: the forgetting score from the attack that needs no labels.",
    ),
    MetricSpec(
        "nomus_label_free",
        "higher",
        None,
        "NoMUS from the label-free attack: the one that separates original from gold when a whole person is forgotten.",
    ),
    # identity leakage in the embedding
    MetricSpec("verification_auc", "higher", None, "Face-verification AUC over all pairs of test photos."),
    MetricSpec("forget_verification_auc", "target", None, f"Verification AUC, pairs with a forgotten person; {_GOLD}."),
    MetricSpec("forget_nn_identification", "target", None, f"1-NN identification rate of forgotten people; {_GOLD}."),
    MetricSpec("retain_nn_identification", "higher", None, "1-NN identification rate of retained people."),
    MetricSpec("unseen_verification_auc", "higher", None, "Verification AUC among people the model never saw."),
    MetricSpec("unseen_nn_identification", "higher", None, "Leave-one-out 1-NN identification of unseen people."),
    # correlation collapse
    MetricSpec("linear_probe_acc", "target", None, f"Linear probe on frozen features, forget people; {_GOLD}."),
    MetricSpec("retain_linear_probe_acc", "higher", None, "Linear probe on frozen features, retained people."),
)

_LABELS = {
    "retain_test_acc": "Accuracy on everyone else",
    "forget_train_acc": "Recognises the forgotten photos",
    "forget_test_acc": "Recognises their held-out photos",
    "attack_auc": "Membership attack (AUC)",
    "label_free_mia_acc": "Label-free attack accuracy",
    "forgetting_score_label_free": "Forgetting score",
    "nomus_label_free": "NoMUS",
    "forget_verification_auc": "Embedding leakage",
    "forget_acc_gap_to_gold": "Gap to gold (forgotten photos)",
}
#: How to read the metrics that the app's result cards show.
_READINGS = {
    "retain_test_acc": "held-out photos of the people kept; higher is better",
    "forget_train_acc": "closer to the gold model is better",
    "attack_auc": "how well an attack tells their photos from strangers'; 50% = chance, closer to gold is better",
    "forget_verification_auc": "can the face still be matched by features; compare with gold",
}
_SPECS = tuple(replace(spec, label=_LABELS.get(spec.name, ""), reading=_READINGS.get(spec.name, "")) for spec in _SPECS)

METRICS: Mapping[str, MetricSpec] = MappingProxyType({spec.name: spec for spec in _SPECS})
"""Every registered metric by name, in display order."""


def percent(value: float | None) -> str:
    """A share or an AUC as the page shows it: a whole percent, with one decimal within 1 % of 0 or 100 % (where a
    whole percent would hide what matters: a verification AUC of 99.8 % against 100 %); ``"n/a"`` when undefined.
    The cards, the verdict's text, the runs table and the attack figure's legend all use it."""
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.1%}" if 0 < value < 0.01 or 0.99 < value < 1 else f"{value:.0%}"


def metric_names() -> list[str]:
    """Registered metric names in display order."""
    return list(METRICS)


def metric_spec(name: str) -> MetricSpec:
    """The spec of a registered metric.

    Raises:
        UnknownNameError: ``name`` is not registered.
    """
    try:
        return METRICS[name]
    except KeyError:
        raise UnknownNameError(f"unknown metric {name!r}; known metrics: {', '.join(METRICS)}") from None


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise ValueError(f"metric {name!r} must be a number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Report:
    """One model's metrics and the context they were measured in.

    Attributes:
        metrics: registered metric name -> value (NaN for "not measurable").
        meta: free-form JSON-compatible context (method, settings, seed, versions, ...). The key ``"targets"``,
            if present, maps ``"target"`` metrics whose spec has no fixed target to this report's target value.
    """

    metrics: Mapping[str, float]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        values = {}
        for name, value in self.metrics.items():
            metric_spec(name)
            values[name] = _as_float(name, value)
        ordered = {name: values[name] for name in METRICS if name in values}
        object.__setattr__(self, "metrics", MappingProxyType(ordered))
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))
        for name in self.targets:
            metric_spec(name)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as plain dicts (the read-only views do not pickle): reports cross process boundaries (ZeroGPU)."""
        return (type(self), (dict(self.metrics), dict(self.meta)))

    @property
    def targets(self) -> Mapping[str, float]:
        """This report's targets for ``"target"`` metrics without a fixed target (``meta["targets"]``)."""
        return MappingProxyType({k: float(v) for k, v in dict(self.meta.get("targets", {})).items()})

    def to_json(self) -> dict[str, Any]:
        """``{"metrics": {name: float | None}, "meta": {...}}``; NaN is written as ``None`` (JSON null)."""
        return {
            "metrics": {k: (None if math.isnan(v) else v) for k, v in self.metrics.items()},
            "meta": _plain(self.meta),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Report:
        """Inverse of :meth:`to_json` (``None`` becomes NaN).

        Raises:
            UnknownNameError: a metric name is not registered.
            ValueError: the mapping lacks ``"metrics"`` or a value is not a number.
        """
        if "metrics" not in data:
            raise ValueError("a report needs a 'metrics' mapping")
        metrics = {k: (math.nan if v is None else v) for k, v in dict(data["metrics"]).items()}
        return cls(metrics=metrics, meta=dict(data.get("meta", {})))

    @staticmethod
    def direction(name: str) -> Direction:
        """``"higher"``, ``"lower"`` or ``"target"`` for a registered metric."""
        return metric_spec(name).direction

    def target(self, name: str) -> float | None:
        """The target of a ``"target"`` metric: the spec's fixed one, else this report's, else ``None``."""
        spec = metric_spec(name)
        if spec.direction != "target":
            return None
        return spec.target if spec.target is not None else self.targets.get(name)

    def better(self, name: str, a: float, b: float, *, target: float | None = None) -> bool:
        """Whether value ``a`` of metric ``name`` is strictly better than ``b``.

        Args:
            name: a registered metric.
            a: candidate value.
            b: value to compare with.
            target: for a ``"target"`` metric, overrides the spec's and the report's target.

        Raises:
            ValueError: a ``"target"`` metric has no target anywhere (set ``meta["targets"]`` or pass one).
        """
        spec = metric_spec(name)
        if math.isnan(a):
            return False
        if math.isnan(b):
            return True
        if spec.direction == "higher":
            return a > b
        if spec.direction == "lower":
            return a < b
        goal = target if target is not None else self.target(name)
        if goal is None:
            raise ValueError(f"metric {name!r} is judged against the gold model's value; no target is known")
        return abs(a - goal) < abs(b - goal)

    def interval(self, name: str) -> tuple[float, float] | None:
        """The 95 % interval over photos of a metric (``meta["intervals"]``), or ``None`` when it has none."""
        found = dict(self.meta.get("intervals", {})).get(name)
        return None if found is None else (float(found[0]), float(found[1]))

    def with_targets_from(self, gold: Report) -> Report:
        """A copy whose ``meta["targets"]`` takes the gold report's values for metrics without a fixed target."""
        targets = dict(self.targets)
        for name, value in gold.metrics.items():
            spec = METRICS[name]
            if spec.direction == "target" and spec.target is None and not math.isnan(value):
                targets[name] = value
        return Report(metrics=self.metrics, meta={**self.meta, "targets": targets})


def _plain(value: Any) -> Any:
    """Mappings and sequences turned into dicts and lists, recursively (for JSON)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _format_value(value: float | None, interval: tuple[float, float] | None = None) -> str:
    if value is None:
        return "—"
    if math.isnan(value):
        return "n/a"
    return f"{value:.4f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval is not None else "")


def format_table(reports: Mapping[str, Report], *, metrics: Iterable[str] | None = None) -> str:
    """An aligned plain-text table: one row per metric, one column per report.

    Args:
        reports: column title -> report, e.g. ``{"before": ..., "after": ..., "gold": ...}``.
        metrics: rows to show (registered names); by default every metric present in any report, in
            registry order.

    Returns:
        The table; the second column shows each metric's direction (``↑``, ``↓``, ``→0.5``, ``→gold``).
        Missing values show as ``—``, NaN as ``n/a``; a value with a 95 % interval (:meth:`Report.interval`) is
        followed by it in brackets.
    """
    if metrics is None:
        present = {name for report in reports.values() for name in report.metrics}
        names = [name for name in METRICS if name in present]
    else:
        names = list(metrics)
        for name in names:
            metric_spec(name)
    header = ["metric", "dir", *reports]
    rows = [
        [name, METRICS[name].arrow, *(_format_value(r.metrics.get(name), r.interval(name)) for r in reports.values())]
        for name in names
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        left = [cells[0].ljust(widths[0]), cells[1].ljust(widths[1])]
        right = [cell.rjust(width) for cell, width in zip(cells[2:], widths[2:], strict=True)]
        return "  ".join(left + right).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])
