"""Plotly figures of one unlearning run and of a session's runs, computed from plain model outputs.

Every function takes the evaluation's outputs as plain mappings part name -> :class:`SplitOutputs` (parts among
``retain_train``, ``retain_test``, ``forget_train``, ``forget_test``, ``unseen``), so the figures can be drawn
without the app, e.g. from ``ForgetOutcome.outputs["before"]`` and ``["after"]``. All numbers a figure shows in
its titles, legends and annotations are computed here.

* :func:`feature_shift` / :func:`embedding_figure`: where the forgotten photos sit in the embedding, before and
  after unlearning (and in the gold model), on a 2-D PCA projection shared by all panels.
* :func:`attack_scores` / :func:`attack_auc` / :func:`attack_figure`: a threshold membership attack on the
  model's top softmax confidence, forgotten training photos against non-members.
* :func:`runs_figure`: the metrics of several runs side by side.

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
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score, roc_curve

from ..errors import DLFDError
from ..evaluate.metrics import softmax
from ..evaluate.report import METRICS

if TYPE_CHECKING:
    from ..evaluate.outputs import SplitOutputs

__all__ = [
    "FigureInputError",
    "attack_auc",
    "attack_figure",
    "attack_scores",
    "embedding_figure",
    "feature_shift",
    "runs_figure",
]

Parts = Mapping[str, "SplitOutputs"]

KNOWN_PARTS = ("retain_train", "retain_test", "forget_train", "forget_test", "unseen")
"""The part names an evaluation produces (:data:`dlfd_core.evaluate.evaluate.PARTS`)."""

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
    """Check that ``parts`` is a non-empty mapping of known part names to outputs-like objects."""
    if not isinstance(parts, Mapping):
        raise FigureInputError(
            f"{what} outputs must be a mapping part name -> SplitOutputs, got {type(parts).__name__}"
        )
    if not parts:
        raise FigureInputError(f"{what} outputs are empty: expected parts among {', '.join(KNOWN_PARTS)}")
    unknown = [name for name in parts if name not in KNOWN_PARTS]
    if unknown:
        raise FigureInputError(f"{what} outputs have unknown part(s) {unknown}; known parts: {', '.join(KNOWN_PARTS)}")
    for name, out in parts.items():
        if not all(hasattr(out, attr) for attr in ("logits", "features", "identities")):
            raise FigureInputError(f"{what} part {name!r} is not a SplitOutputs (got {type(out).__name__})")
    return parts


def _models(before: Any, after: Any, gold: Any) -> dict[str, Parts]:
    """The models to draw, label -> parts, in display order."""
    models = {"Original": _check_parts(before, "before"), "Unlearned": _check_parts(after, "after")}
    if gold is not None:
        models["Gold"] = _check_parts(gold, "gold")
    return models


def _present(parts: Parts, name: str) -> bool:
    return name in parts and len(parts[name].identities) > 0


def _unit_rows(features: np.ndarray, what: str) -> np.ndarray:
    """L2-normalised rows in float64; raises on NaN or infinite features."""
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2:
        raise FigureInputError(f"{what} features must be [N, D], got shape {array.shape}")
    if not np.isfinite(array).all():
        raise FigureInputError(f"{what} features contain NaN or infinite values; the model may have diverged")
    return array / np.maximum(np.linalg.norm(array, axis=1, keepdims=True), 1e-12)


# ---------------------------------------------------------------------------------------------------------------------
# feature shift


def _distance_to_retained(parts: Parts, what: str) -> float:
    """Mean cosine distance from each forget_train photo to the nearest retained person's centroid."""
    if not _present(parts, "forget_train"):
        return math.nan
    if not _present(parts, "retain_train"):
        raise FigureInputError(f"{what} outputs need a non-empty 'retain_train' part to place the retained people")
    retain = parts["retain_train"]
    retain_unit = _unit_rows(retain.features, f"{what} retain_train")
    forget_unit = _unit_rows(parts["forget_train"].features, f"{what} forget_train")
    if forget_unit.shape[1] != retain_unit.shape[1]:
        raise FigureInputError(
            f"{what}: forget_train features have {forget_unit.shape[1]} dimensions, retain_train {retain_unit.shape[1]}"
        )
    ids = np.asarray(retain.identities)
    people = np.unique(ids)
    centroids = np.stack([retain_unit[ids == person].mean(axis=0) for person in people])  # [P, D]
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    nearest = (forget_unit @ centroids.T).max(axis=1)  # [F] highest cosine similarity
    return float(np.mean(1.0 - nearest))


def feature_shift(before: Mapping[str, SplitOutputs], after: Mapping[str, SplitOutputs]) -> dict[str, float]:
    """How far the forgotten photos' embeddings moved, relative to the retained people.

    All features are L2-normalised first; a cosine distance is ``1 - cos`` (0: same direction, 1: orthogonal).
    For each model, the retained people are placed by their centroids: the mean of each identity's normalised
    ``retain_train`` features, normalised again. Then:

    * ``before`` / ``after``: mean over the ``forget_train`` photos of the cosine distance to the *nearest*
      retained-person centroid, under the original / unlearned model. Larger means the forgotten photos sit
      further from everyone the model still knows (in instance forgetting the nearest centroid is usually the
      photo's own person, whose other photos are retained).
    * ``change``: ``after - before``; positive when unlearning pushed the forgotten photos away.
    * ``moved``: mean over the ``forget_train`` photos of ``1 - cos(f_before_i, f_after_i)``, how far each photo
      moved from its own original position (the two parts must list the same photos in the same order). NaN when
      the two models' embeddings have different sizes.

    Args:
        before: the original model's outputs, part name -> SplitOutputs.
        after: the unlearned model's outputs on the same split.

    Returns:
        ``{"before", "after", "change", "moved"}``; all NaN when either model has no (or an empty)
        ``forget_train`` part.

    Raises:
        FigureInputError: (a ``ValueError``) ``retain_train`` is missing while ``forget_train`` is present, the
            ``forget_train`` parts differ in size, or features are not finite.
    """
    before = _check_parts(before, "before")
    after = _check_parts(after, "after")
    nan = {"before": math.nan, "after": math.nan, "change": math.nan, "moved": math.nan}
    if not (_present(before, "forget_train") and _present(after, "forget_train")):
        return nan
    n_before, n_after = len(before["forget_train"].identities), len(after["forget_train"].identities)
    if n_before != n_after:
        raise FigureInputError(
            f"forget_train has {n_before} photos before and {n_after} after; both must hold the same photos"
        )
    dist_before = _distance_to_retained(before, "before")
    dist_after = _distance_to_retained(after, "after")
    f_before = _unit_rows(before["forget_train"].features, "before forget_train")
    f_after = _unit_rows(after["forget_train"].features, "after forget_train")
    moved = float(np.mean(1.0 - np.sum(f_before * f_after, axis=1))) if f_before.shape == f_after.shape else math.nan
    return {"before": dist_before, "after": dist_after, "change": dist_after - dist_before, "moved": moved}


def _shift_words(models: Mapping[str, Parts]) -> str:
    """The feature-shift numbers of the embedding figure in plain words."""
    before, after = models["Original"], models["Unlearned"]
    if not (_present(before, "forget_train") and _present(after, "forget_train")):
        return "No photos to forget in this split, so there is no shift to report."
    if not (_present(before, "retain_train") and _present(after, "retain_train")):
        return "No retained training photos in these outputs, so the shift cannot be measured."
    shift = feature_shift(before, after)
    gold = ""
    if "Gold" in models and _present(models["Gold"], "forget_train") and _present(models["Gold"], "retain_train"):
        gold = f"; gold model: {_distance_to_retained(models['Gold'], 'gold'):.3f}"
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


def _confidence(parts: Parts, name: str) -> np.ndarray:
    logits = np.asarray(parts[name].logits, dtype=np.float64)
    if logits.ndim != 2:
        raise FigureInputError(f"{name} logits must be [N, C], got shape {logits.shape}")
    if not np.isfinite(logits).all():
        raise FigureInputError(f"{name} logits contain NaN or infinite values; the model may have diverged")
    if logits.shape[0] == 0:
        return np.zeros(0)
    return softmax(logits).max(axis=1)


def _nonmember_parts(parts: Parts) -> tuple[str, ...]:
    if _present(parts, "unseen"):
        return ("unseen",)
    return tuple(name for name in ("retain_test", "forget_test") if _present(parts, name))


def attack_scores(parts: Mapping[str, SplitOutputs]) -> dict[str, np.ndarray]:
    """Membership score of each sample: the model's maximum softmax confidence (higher looks more like training).

    Args:
        parts: one model's outputs, part name -> SplitOutputs.

    Returns:
        ``{"forget", "nonmember", "retain"}`` float64 arrays: ``forget_train``; the non-members, ``unseen`` when
        that part is present and non-empty, else ``retain_test`` + ``forget_test``; ``retain_train``. A side with
        no samples is an empty array.

    Raises:
        FigureInputError: (a ``ValueError``) empty or unknown parts, or non-finite logits.
    """
    parts = _check_parts(parts, "model")

    def scores(names: Sequence[str]) -> np.ndarray:
        chunks = [_confidence(parts, name) for name in names if _present(parts, name)]
        return np.concatenate(chunks) if chunks else np.zeros(0)

    return {
        "forget": scores(("forget_train",)),
        "nonmember": scores(_nonmember_parts(parts)),
        "retain": scores(("retain_train",)),
    }


def _auc(scores: Mapping[str, np.ndarray]) -> float:
    member, nonmember = scores["forget"], scores["nonmember"]
    if member.size == 0 or nonmember.size == 0:
        return math.nan
    truth = np.concatenate([np.ones(member.size), np.zeros(nonmember.size)])
    return float(roc_auc_score(truth, np.concatenate([member, nonmember])))


def attack_auc(parts: Mapping[str, SplitOutputs]) -> float:
    """ROC AUC of the confidence threshold attack, forgotten training photos against all non-members.

    Unlike the evaluation's label-free attack (a cross-validated classifier on confidence and entropy over a
    balanced subsample), this ranks every sample by its :func:`attack_scores` score alone and uses all
    non-members, so it is steadier on a handful of forgotten photos. 0.5 means the forgotten photos look like
    photos the model never trained on; 1.0 means each of them is more confident than every non-member.

    Args:
        parts: one model's outputs, part name -> SplitOutputs.

    Returns:
        The AUC, or NaN when the forget or the non-member side is empty.
    """
    return _auc(attack_scores(parts))


def _nonmember_words(parts: Parts) -> str:
    return "unseen people" if _present(parts, "unseen") else "held-out photos"


def attack_figure(
    before: Mapping[str, SplitOutputs],
    after: Mapping[str, SplitOutputs],
    *,
    gold: Mapping[str, SplitOutputs] | None = None,
) -> go.Figure:
    """Membership-attack view: could an attacker tell that the forgotten photos were trained on?

    Row 1, one panel per model: overlaid histograms (as fractions of each group) of :func:`attack_scores` for
    the forgotten training photos (red), the non-members (blue) and the retained training photos (grey). Row 2:
    the ROC curve of forgotten photos against non-members per model, with :func:`attack_auc` in the legend, and
    the chance diagonal.

    Args:
        before: the original model's outputs, part name -> SplitOutputs.
        after: the unlearned model's outputs on the same split.
        gold: the gold (retrained) model's outputs, optional.

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
    nonmember_words = _nonmember_words(models["Original"])
    for col, (label, parts) in enumerate(models.items(), start=1):
        scores = attack_scores(parts)
        groups = (
            ("forget", "Forgotten photos (trained on)", _FORGET_COLOUR),
            ("nonmember", f"Non-members ({_nonmember_words(parts)})", _NONMEMBER_COLOUR),
            ("retain", "Retained photos (trained on)", _RETAIN_COLOUR),
        )
        for rank, (key, name, colour) in enumerate(groups, start=1):
            if scores[key].size == 0:
                continue
            fig.add_trace(
                go.Histogram(
                    # exact 1.0 confidences would fall past the last bin edge
                    x=np.clip(scores[key], 0.0, 1.0 - 1e-9),
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

        auc = _auc(scores)
        if math.isnan(auc):
            fig.add_annotation(
                text="not enough samples<br>for an attack",
                x=0.5,
                y=0.5,
                showarrow=False,
                row=2,
                col=col,
            )
        else:
            truth = np.concatenate([np.ones(scores["forget"].size), np.zeros(scores["nonmember"].size)])
            fpr, tpr, _ = roc_curve(truth, np.concatenate([scores["forget"], scores["nonmember"]]))
            fig.add_trace(
                go.Scatter(
                    x=fpr,
                    y=tpr,
                    mode="lines",
                    name=f"{label}: AUC {auc:.3f}",
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
                name="Chance (AUC 0.5)",
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
                "text": "Score: the model's top softmax confidence (higher looks more like a training photo).<br>"
                f"Attack: forgotten photos vs {nonmember_words}; AUC 0.5 = indistinguishable, 1.0 = fully exposed."
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
    metrics: Sequence[str] = ("retain_test_acc", "forget_train_acc", "nomus_label_free", "unlearn_seconds"),
) -> go.Figure:
    """The runs of a session side by side: grouped bars, one group per metric, one bar per run.

    Metrics whose name contains ``seconds`` are drawn in a panel of their own, so that the 0–1 metrics stay
    readable. A missing, NaN or non-numeric value leaves its bar out.

    Args:
        rows: one mapping per run: ``row["run"]`` is its label (``"run <i>"`` when absent), ``row[metric]`` its
            values.
        metrics: the metric names to show, in order.

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
