"""Plotly figures of unlearning runs, drawn from the evaluation's outputs (see :mod:`.figures`).

The web app shows these figures as they are. They only draw: every number they display comes from
:mod:`dlfd_core.evaluate` (the attack from :mod:`~dlfd_core.evaluate.attacks`, the feature shift from
:mod:`~dlfd_core.evaluate.shift`).
"""

from __future__ import annotations

from .figures import FigureInputError, attack_figure, embedding_figure, runs_figure

__all__ = ["FigureInputError", "attack_figure", "embedding_figure", "runs_figure"]
