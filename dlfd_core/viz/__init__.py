"""Plotly figures of unlearning runs, computed from the evaluation's outputs (see :mod:`.figures`).

The web app shows these figures as they are; every number they display is computed here.
"""

from __future__ import annotations

from .figures import (
    FigureInputError,
    attack_auc,
    attack_figure,
    attack_scores,
    embedding_figure,
    feature_shift,
    runs_figure,
)

__all__ = [
    "FigureInputError",
    "attack_auc",
    "attack_figure",
    "attack_scores",
    "embedding_figure",
    "feature_shift",
    "runs_figure",
]
