"""Plotly figures of one unlearning run and of a session's runs, computed from plain model outputs.

Every function takes the evaluation's outputs as plain mappings part name -> :class:`SplitOutputs` (parts among
``retain_train``, ``retain_test``, ``forget_train``, ``forget_test``, ``unseen``), so the figures can be drawn
without the app, e.g. from ``ForgetOutcome.outputs["before"]`` and ``["after"]``. All numbers a figure shows in
its titles, legends and annotations are computed here.

* :func:`embedding_figure`: where the forgotten photos sit in the embedding, before and after unlearning (and in
  the gold model), on a 2-D PCA projection shared by all panels, with
  :func:`~dlfd_core.evaluate.shift.feature_shift` in words.
* :func:`attack_figure`: the label-free membership attack of the verdict
  (:func:`~dlfd_core.evaluate.attacks.membership_scores`), forgotten training photos against non-members.
* :func:`runs_figure`: the metrics of several runs side by side.

This module only draws: every number it shows comes from :mod:`dlfd_core.evaluate`.

Figures are plain ``plotly.graph_objects.Figure`` objects (``plotly_white`` template); nothing here touches
the network. Randomness (the subsampling of points) only comes from an explicit ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from scipy.special import expit
from sklearn.decomposition import PCA
from sklearn.metrics import roc_curve

from ..errors import DLFDError
from ..evaluate.attacks import LIRA_ATTACK, PhotoScores, _pair_auc, membership_scores
from ..evaluate.metrics import unit_rows
from ..evaluate.outputs import check_parts
from ..evaluate.report import METRICS, percent
from ..evaluate.shift import distance_to_retained, feature_shift
from ..evaluate.verdict import MIN_PHOTOS

if TYPE_CHECKING:
    from ..evaluate.outputs import SplitOutputs

__all__ = [
    "FigureInputError",
    "attack_figure",
    "embedding_figure",
    "runs_figure",
]

Parts = Mapping[str, "SplitOutputs"]

TEMPLATE = "plotly_white"

# Roles of the points in the embedding view: part names, legend name, colour, marker size.
_ROLES: tuple[tuple[str, tuple[str, ...], str, str, int], ...] = (
    ("retained", ("retain_train", "retain_test"), "Retained people", "#9e9e9e", 5),
    ("unseen", ("unseen",), "Unseen people", "#1f77b4", 6),
    ("forgotten", ("forget_train", "forget_test"), "Forgotten photos", "#d62728", 10),
)
_PART_WORDS = {
    "retain_train": "retained person, training photo",
    "retain_test": "retained person, held-out photo",
    "forget_train": "photo to forget (was in training)",
    "forget_test": "forgotten person, held-out photo",
    "unseen": "unseen person (never trained on)",
}
_FORGET_COLOUR, _NONMEMBER_COLOUR, _RETAIN_COLOUR = "#d62728", "#1f77b4", "#7f7f7f"
_MODEL_COLOURS = {"Original": "#2a3f5f", "Unlearned": "#ff7f0e", "Gold": "#2ca02c"}
_RUN_COLOURS = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880")


class FigureInputError(DLFDError, ValueError):
    """The outputs or rows given to a figure function cannot be drawn (missing parts, mismatched sizes, ...)."""


# ---------------------------------------------------------------------------------------------------------------------
# input checks


def _check_parts(parts: Any, what: str) -> Parts:
    """:func:`~dlfd_core.evaluate.outputs.check_parts`, its errors as :class:`FigureInputError`."""
    try:
        return check_parts(parts, what)
    except DLFDError as error:
        raise FigureInputError(str(error)) from None


#: A figure's model label -> the key of that model's outputs and reports (``before`` / ``after`` / ``gold``).
_MODEL_KEYS = {"Original": "before", "Unlearned": "after", "Gold": "gold"}


def _models(before: Any, after: Any, gold: Any) -> dict[str, Parts]:
    """The models to draw, label -> parts, in display order."""
    models = {"Original": _check_parts(before, "before"), "Unlearned": _check_parts(after, "after")}
    if gold is not None:
        models["Gold"] = _check_parts(gold, "gold")
    return models


def _present(parts: Parts, name: str) -> bool:
    return name in parts and len(parts[name].identities) > 0


def _unit_rows(features: np.ndarray, what: str) -> np.ndarray:
    """:func:`~dlfd_core.evaluate.metrics.unit_rows`, its errors as :class:`FigureInputError`."""
    try:
        return unit_rows(features, f"{what} features")
    except (ValueError, DLFDError) as error:
        raise FigureInputError(str(error)) from None


# ---------------------------------------------------------------------------------------------------------------------
# feature shift


def _shift_words(models: Mapping[str, Parts]) -> str:
    """The feature-shift numbers of the embedding figure in plain words."""
    before, after = models["Original"], models["Unlearned"]
    if not (_present(before, "forget_train") and _present(after, "forget_train")):
        return "No photos to forget in this split, so there is no shift to report."
    if not (_present(before, "retain_train") and _present(after, "retain_train")):
        return "No retained training photos in these outputs, so the shift cannot be measured."
    shift = _figure_input(feature_shift, before, after)
    gold = ""
    if "Gold" in models and _present(models["Gold"], "forget_train") and _present(models["Gold"], "retain_train"):
        gold = f"; gold model: {_figure_input(distance_to_retained, models['Gold'], 'gold'):.3f}"
    moved = "" if math.isnan(shift["moved"]) else f"Each moved {shift['moved']:.3f} from where it was. "
    return (
        f"Distance of the forgotten photos to the nearest retained person: {shift['before']:.3f} before → "
        f"{shift['after']:.3f} after unlearning ({shift['change']:+.3f}{gold}).<br>"
        f"{moved}(Cosine distance: 0 = same direction, 1 = unrelated.)"
    )


# ---------------------------------------------------------------------------------------------------------------------
# embedding view


def _panel_points(parts: Parts, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Normalised features, role, part and identity of every sample of one model, parts in a fixed order."""
    features, roles, part_names, identities = [], [], [], []
    for role, names, *_ in _ROLES:
        for name in names:
            if name in parts and len(parts[name].identities):
                out = parts[name]
                features.append(_unit_rows(out.features, f"{what} {name}"))
                roles += [role] * len(out.identities)
                part_names += [name] * len(out.identities)
                identities += list(out.identities)
    dims = {f.shape[1] for f in features}
    if len(dims) > 1:
        raise FigureInputError(f"{what} parts have features of different sizes {sorted(dims)}")
    if not features:
        raise FigureInputError(f"{what} outputs hold no samples to draw")
    return np.concatenate(features), np.asarray(roles), np.asarray(part_names), identities


def _subsample(roles: np.ndarray, max_points: int, seed: int) -> np.ndarray:
    """Sorted positions of at most ``max_points`` samples, all forgotten ones kept (even beyond the limit)."""
    forgotten = np.flatnonzero(roles == "forgotten")
    others = np.flatnonzero(roles != "forgotten")
    budget = max(max_points - forgotten.size, 0)
    if others.size > budget:
        others = np.random.default_rng(seed).choice(others, size=budget, replace=False)
    return np.sort(np.concatenate([forgotten, others]))


def embedding_figure(
    before: Mapping[str, SplitOutputs],
    after: Mapping[str, SplitOutputs],
    *,
    gold: Mapping[str, SplitOutputs] | None = None,
    max_points: int = 600,
    seed: int = 0,
) -> go.Figure:
    """Where the forgotten photos sit in each model's embedding, on one shared 2-D projection.

    The L2-normalised features of every part of every model are pooled and one PCA is fitted on them, so all
    panels share the same axes. One panel per model ("Original", "Unlearned", "Gold" when given); points are
    retained people (grey, small: retain_train + retain_test), forgotten photos (red, large: forget_train +
    forget_test) and unseen people (blue). The subtitle gives :func:`feature_shift` in words.

    Args:
        before: the original model's outputs, part name -> SplitOutputs.
        after: the unlearned model's outputs on the same split.
        gold: the gold (retrained) model's outputs, optional.
        max_points: most points per panel; retained and unseen points are subsampled with ``seed`` (the same
            positions in every panel of equal size), forgotten photos are always all drawn, even beyond the limit.
        seed: seed of the subsampling.

    Returns:
        A figure with one scatter trace per role present in each panel.

    Raises:
        FigureInputError: (a ``ValueError``) empty or unknown parts, features of different sizes across models,
            non-finite features, or ``max_points < 1``.
    """
    if isinstance(max_points, bool) or not isinstance(max_points, (int, np.integer)) or max_points < 1:
        raise FigureInputError(f"max_points must be a positive integer, got {max_points!r}")
    models = _models(before, after, gold)
    panels = {label: _panel_points(parts, label) for label, parts in models.items()}
    dims = {label: points[0].shape[1] for label, points in panels.items()}
    if len(set(dims.values())) > 1:
        raise FigureInputError(f"the models' embeddings differ in size ({dims}); one projection cannot show them all")

    pooled = np.concatenate([points[0] for points in panels.values()])
    # samples without any spread (one sample, or all equal) have nothing to project: draw them at the origin
    spread = pooled.shape[0] > 1 and float(pooled.var(axis=0).sum()) > 1e-12
    n_components = min(2, pooled.shape[1]) if spread else 0
    pca = PCA(n_components=n_components, svd_solver="full").fit(pooled) if n_components else None
    ratios = pca.explained_variance_ratio_ if pca is not None else np.zeros(0)
    explained = list(ratios) + [0.0] * (2 - n_components)

    fig = make_subplots(
        rows=1,
        cols=len(panels),
        subplot_titles=list(panels),
        horizontal_spacing=0.04,
    )
    for col, (label, (unit, roles, part_names, identities)) in enumerate(panels.items(), start=1):
        keep = _subsample(roles, int(max_points), seed)
        xy = np.zeros((keep.size, 2))
        if pca is not None:
            xy[:, :n_components] = pca.transform(unit[keep])
        for role, _, legend, colour, size in _ROLES:
            mask = roles[keep] == role
            if not mask.any():
                continue
            rows = keep[mask]
            hover = [f"{identities[i]}<br>{_PART_WORDS[part_names[i]]}" for i in rows]
            fig.add_trace(
                go.Scatter(
                    x=xy[mask, 0],
                    y=xy[mask, 1],
                    mode="markers",
                    name=legend,
                    legendgroup=role,
                    showlegend=col == 1,
                    marker={
                        "color": colour,
                        "size": size,
                        "opacity": 0.9 if role == "forgotten" else 0.6,
                        "line": {"width": 0.5, "color": "white"},
                    },
                    text=hover,
                    hovertemplate="%{text}<extra>" + label + "</extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text=f"direction 1 ({explained[0]:.0%} of spread)", row=1, col=col)
    fig.update_yaxes(title_text=f"direction 2 ({explained[1]:.0%} of spread)", row=1, col=1)
    for col in range(2, len(panels) + 1):  # one projection: zooming one panel zooms them all
        fig.update_xaxes(matches="x", row=1, col=col)
        fig.update_yaxes(matches="y", showticklabels=False, row=1, col=col)
    fig.update_layout(
        template=TEMPLATE,
        height=480,
        title={
            "text": "Where the forgotten photos sit among everyone else (face embeddings, 2-D view)",
            "subtitle": {"text": _shift_words(models)},
        },
        margin={"t": 125},
        hovermode="closest",
    )
    return fig


# ---------------------------------------------------------------------------------------------------------------------
# membership attack


def _nonmember_words(parts: Parts, forget_mode: str) -> str:
    return "unseen people" if forget_mode == "identity" and _present(parts, "unseen") else "held-out photos"


def _figure_input(function: Any, *args: Any) -> Any:
    """``function(*args)`` of :mod:`dlfd_core.evaluate`, its input errors as :class:`FigureInputError`."""
    try:
        return function(*args)
    except (ValueError, DLFDError) as error:
        raise FigureInputError(str(error)) from None


def attack_figure(
    before: Mapping[str, SplitOutputs],
    after: Mapping[str, SplitOutputs],
    *,
    forget_mode: str,
    gold: Mapping[str, SplitOutputs] | None = None,
    attack: Mapping[str, PhotoScores] | None = None,
) -> go.Figure:
    """Membership-attack view: could an attacker tell that the forgotten photos were trained on?

    Row 1, one panel per model: overlaid histograms (as fractions of each group) of the top-class probability for
    the forgotten training photos (red), the non-members (blue) and the retained training photos (grey). Row 2:
    the ROC curve of forgotten photos against non-members per model, with
    :func:`~dlfd_core.evaluate.attacks.membership_auc` in the legend, and the chance diagonal. The attack's score
    is :func:`~dlfd_core.evaluate.attacks.membership_scores` (logit-scaled, a monotone function of the probability
    drawn, so the ROC and the AUC are the same on either scale): the verdict's attack.

    Args:
        before: the original model's outputs, part name -> SplitOutputs.
        after: the unlearned model's outputs on the same split.
        forget_mode: the split's forget mode (``identity``: the non-members are unseen people; ``instance``:
            held-out photos).
        gold: the gold (retrained) model's outputs, optional.
        attack: per model (``"before"``, ``"after"``, ``"gold"``) the per-photo scores the verdict judged by
            (:func:`~dlfd_core.evaluate.attacks.photo_scores`; offline LiRA with reference statistics): the ROC row
            and its AUC are then that attack's, the numbers on the result cards. A model without an entry gets
            :func:`~dlfd_core.evaluate.attacks.membership_scores`.

    Returns:
        A 2-row figure: per model up to three histogram traces, then one ROC trace (when both sides have
        samples) and one chance line.

    Raises:
        FigureInputError: (a ``ValueError``) empty or unknown parts, or non-finite logits.
    """
    models = _models(before, after, gold)
    labels = list(models)
    fig = make_subplots(
        rows=2,
        cols=len(labels),
        subplot_titles=[f"{label}: top-confidence scores" for label in labels]
        + [f"{label}: attack ROC" for label in labels],
        vertical_spacing=0.2,
        horizontal_spacing=0.06,
    )
    nonmember_words = _nonmember_words(models["Original"], forget_mode)
    for col, (label, parts) in enumerate(models.items(), start=1):
        scores = _figure_input(membership_scores, parts, forget_mode)
        groups = (
            ("forget", "Forgotten photos (trained on)", _FORGET_COLOUR),
            ("nonmember", f"Non-members ({_nonmember_words(parts, forget_mode)})", _NONMEMBER_COLOUR),
            ("retain", "Retained photos (trained on)", _RETAIN_COLOUR),
        )
        for rank, (key, name, colour) in enumerate(groups, start=1):
            if scores[key].size == 0:
                continue
            fig.add_trace(
                go.Histogram(
                    # the top-class probability; exact 1.0 would fall past the last bin edge
                    x=np.clip(expit(scores[key]), 0.0, 1.0 - 1e-9),
                    name=name,
                    legendgroup=key,
                    legendrank=rank,
                    showlegend=col == 1,
                    marker_color=colour,
                    opacity=0.55,
                    histnorm="probability",
                    xbins={"start": 0.0, "end": 1.0, "size": 0.05},
                    hovertemplate="confidence %{x}<br>fraction %{y:.2f}<extra>" + name + "</extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(range=[0, 1], row=1, col=col)

        judged = (attack or {}).get(_MODEL_KEYS[label])
        member, other = (
            (judged.forget, judged.nonmember) if judged is not None else (scores["forget"], scores["nonmember"])
        )
        if min(member.size, other.size) < MIN_PHOTOS:  # the verdict's and the card's rule: no AUC from so few
            fig.add_annotation(
                text=f"fewer than {MIN_PHOTOS} photos on a side:<br>not enough for an attack",
                x=0.5,
                y=0.5,
                showarrow=False,
                row=2,
                col=col,
            )
        else:
            auc = _pair_auc(member, other)
            truth = np.concatenate([np.ones(member.size), np.zeros(other.size)])
            fpr, tpr, _ = roc_curve(truth, np.concatenate([member, other]))
            fig.add_trace(
                go.Scatter(
                    x=fpr,
                    y=tpr,
                    mode="lines",
                    name=f"{label}: AUC {percent(auc)}"
                    + (" (LiRA)" if judged is not None and judged.attack == LIRA_ATTACK else ""),
                    legendrank=10 + col,
                    line={"width": 2.5, "color": _MODEL_COLOURS[label]},
                    hovertemplate="false positives %{x:.2f}<br>true positives %{y:.2f}<extra></extra>",
                ),
                row=2,
                col=col,
            )
        fig.add_trace(
            go.Scatter(
                x=[0, 1],
                y=[0, 1],
                mode="lines",
                name="Chance (AUC 50%)",
                legendgroup="chance",
                legendrank=100,
                showlegend=col == 1,
                line={"dash": "dash", "color": "#bdbdbd", "width": 1},
                hoverinfo="skip",
            ),
            row=2,
            col=col,
        )
        fig.update_xaxes(title_text="false positive rate", range=[0, 1], row=2, col=col)
        fig.update_yaxes(range=[0, 1.02], row=2, col=col)
    fig.update_yaxes(title_text="fraction of group", row=1, col=1)
    fig.update_yaxes(title_text="true positive rate", row=2, col=1)
    fig.update_layout(
        template=TEMPLATE,
        height=520,
        barmode="overlay",
        title={
            "text": "Could an attacker tell that the forgotten photos were used in training?",
            "subtitle": {
                "text": "Histograms: each photo's top-class probability (higher looks more like a training photo).<br>"
                f"Attack: forgotten photos vs {nonmember_words}; AUC 50% = indistinguishable, 100% = fully exposed"
                + (
                    " (LiRA: each photo against models that never saw its person)."
                    if any(a.attack == LIRA_ATTACK for a in (attack or {}).values())
                    else "."
                )
            },
        },
        margin={"t": 125},
    )
    return fig


# ---------------------------------------------------------------------------------------------------------------------
# runs of a session


def _number(value: Any) -> float | None:
    """A finite float from a plain or numpy number, else ``None`` (missing, NaN, text, bool)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _metric_label(metric: str) -> str:
    if metric == "unlearn_seconds":
        return "Unlearning time (seconds)"
    spec = METRICS.get(metric)
    return f"{spec.title} {spec.arrow}" if spec is not None else metric


def _empty_figure(title: str, message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 16})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(template=TEMPLATE, height=420, title={"text": title})
    return fig


def runs_figure(
    rows: Sequence[Mapping[str, Any]],
    metrics: Sequence[str] = (*(name for name, spec in METRICS.items() if spec.reading), "unlearn_seconds"),
) -> go.Figure:
    """The runs of a session side by side: grouped bars, one group per metric, one bar per run.

    Metrics whose name contains ``seconds`` are drawn in a panel of their own, so that the 0–1 metrics stay
    readable. A missing, NaN or non-numeric value leaves its bar out.

    Args:
        rows: one mapping per run: ``row["run"]`` is its label (``"run <i>"`` when absent), ``row[metric]`` its
            values.
        metrics: the metric names to show, in order (by default the cards' metrics and the unlearning time).

    Returns:
        One bar trace per run and panel; a figure with a "No runs yet" annotation when ``rows`` is empty, or a
        "no values" annotation when none of the metrics has a value.

    Raises:
        FigureInputError: (a ``ValueError``) ``metrics`` is empty or a string, or a row is not a mapping.
    """
    if isinstance(metrics, str) or not isinstance(metrics, Sequence) or not metrics:
        raise FigureInputError(f"metrics must be a non-empty list of metric names, got {metrics!r}")
    if isinstance(rows, (str, Mapping)) or not isinstance(rows, Sequence):
        raise FigureInputError(f"rows must be a list of mappings (one per run), got {type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise FigureInputError(f"run {i + 1} must be a mapping metric -> value, got {type(row).__name__}")
    title = "How the runs of this session compare"
    if not rows:
        return _empty_figure(title, "No runs yet: run an unlearning method to compare it here.")

    groups = [
        ("score", [m for m in metrics if "seconds" not in m], "value (0–1)", "%{y:.3f}"),
        ("time", [m for m in metrics if "seconds" in m], "seconds", "%{y:.1f} s"),
    ]
    groups = [group for group in groups if group[1]]
    values = [{m: _number(row.get(m)) for m in metrics} for row in rows]
    if all(v is None for run in values for v in run.values()):
        return _empty_figure(title, "No values to show for these metrics yet.")

    widths = [len(group[1]) for group in groups]
    fig = make_subplots(
        rows=1,
        cols=len(groups),
        column_widths=[w / sum(widths) for w in widths],
        horizontal_spacing=0.1,
    )
    for col, (_, names, axis_title, text) in enumerate(groups, start=1):
        for i, (row, run_values) in enumerate(zip(rows, values, strict=True)):
            label = str(row.get("run", f"run {i + 1}"))
            shown = [m for m in names if run_values[m] is not None]
            fig.add_trace(
                go.Bar(
                    x=[_metric_label(m) for m in shown],
                    y=[run_values[m] for m in shown],
                    name=label,
                    legendgroup=f"run-{i}",
                    showlegend=col == 1,
                    marker_color=_RUN_COLOURS[i % len(_RUN_COLOURS)],
                    texttemplate=text,
                    textposition="outside",
                    hovertext=[METRICS[m].description if m in METRICS else m for m in shown],
                    hovertemplate="%{hovertext}<br>" + text + "<extra>" + label + "</extra>",
                ),
                row=1,
                col=col,
            )
        # metrics in the order asked for, not in the order the runs happen to have values
        fig.update_xaxes(categoryorder="array", categoryarray=[_metric_label(m) for m in names], row=1, col=col)
        fig.update_yaxes(title_text=axis_title, rangemode="tozero", row=1, col=col)
    fig.update_layout(
        template=TEMPLATE,
        height=460,
        barmode="group",
        title={
            "text": title,
            "subtitle": {
                "text": "↑ higher is better, ↓ lower is better, →gold: closest to the retrained gold model is best"
            },
        },
        margin={"t": 100},
        legend={"title": {"text": "run"}},
    )
    return fig
