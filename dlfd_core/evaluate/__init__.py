"""Evaluation of unlearning: model outputs per split, pure metric functions, and the report type.

Collect each split's outputs once with :func:`collect_outputs`, compute metrics from the resulting
:class:`SplitOutputs`, and gather them in a :class:`Report` whose metric names and directions are registered
in :data:`METRICS`.
"""

from __future__ import annotations

from .metrics import (
    MIAResult,
    accuracy,
    accuracy_gap,
    activation_distance,
    forgetting_score,
    js_divergence,
    linear_probe_accuracy,
    log_softmax,
    loo_nn_identification,
    mia_label_free,
    mia_logistic,
    nn_identification,
    nomus,
    per_sample_cross_entropy,
    softmax,
    verification_auc,
    verification_auc_for,
)
from .outputs import FeatureModel, SplitOutputs, collect_outputs
from .report import METRICS, MetricSpec, Report, format_table, metric_names, metric_spec

__all__ = [
    "METRICS",
    "FeatureModel",
    "MIAResult",
    "MetricSpec",
    "Report",
    "SplitOutputs",
    "accuracy",
    "accuracy_gap",
    "activation_distance",
    "collect_outputs",
    "forgetting_score",
    "format_table",
    "js_divergence",
    "linear_probe_accuracy",
    "log_softmax",
    "loo_nn_identification",
    "metric_names",
    "metric_spec",
    "mia_label_free",
    "mia_logistic",
    "nn_identification",
    "nomus",
    "per_sample_cross_entropy",
    "softmax",
    "verification_auc",
    "verification_auc_for",
]
