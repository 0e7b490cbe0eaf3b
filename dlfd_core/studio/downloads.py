"""A run's downloads, written into its session's folder: the report (JSON and Markdown) and the unlearned model."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..data import Split
from ..env import environment
from ..evaluate.report import format_table
from ..evaluate.verdict import Judgement
from ..models import save_model
from ..paths import atomic_write, sha256_file
from .records import RunRecord
from .session import Session


def report_json(record: RunRecord, session: Session, split: Split) -> dict[str, Any]:
    """The run's report: settings, seed, versions, hardware, the split, metrics before / after / gold, timings."""
    return {
        "tool": "DLFD Studio",
        "run": record.number,
        "forgotten": list(record.identities),
        "split": split.describe(),
        "original_model": {
            "file": session.workspace.model_path.name if session.uses_bundled_model else None,
            "sha256": sha256_file(session.workspace.model_path) if session.uses_bundled_model else None,
            "enrolled": session.enrolment.name if session.enrolment is not None else None,
        },
        "environment": record.outcome.environment or environment(),
        "total_seconds": record.seconds,
        "verdict": record.verdict,
        "judgement": _judgement_json(record.judgement),
        **record.outcome.to_json(),
    }


def _judgement_json(judgement: Judgement | None) -> dict[str, Any] | None:
    if judgement is None:
        return None
    return {
        "outcome": judgement.outcome,
        "reason": judgement.reason,
        "margin": judgement.margin,
        "forgotten_photos": judgement.members,
        "nonmember_photos": judgement.nonmembers,
        "comparisons": [
            {"name": c.name, "unlearned": c.value, "gold": c.gold, "difference_interval_95": list(c.interval)}
            for c in judgement.comparisons
        ],
    }


def report_markdown(data: Mapping[str, Any], record: RunRecord) -> str:
    """The report as Markdown (the same content as :func:`report_json`)."""
    env = data["environment"]
    settings = ", ".join(f"`{k}={v}`" for k, v in data["settings"].items())
    table = format_table(record.outcome.reports)
    return "\n".join(
        [
            f"# DLFD Studio run {data['run']}: forgetting {', '.join(data['forgotten'])}",
            "",
            record.verdict,
            "",
            f"- Method: **{data['method']}**; settings: {settings}; seed {data['seed']}; device {data['device']}",
            f"- {data['split']}",
            f"- Original model: {json.dumps(data['original_model'])}",
            f"- Environment: Python {env['python']}, torch {env['torch']}, numpy {env['numpy']}, "
            f"{env['cpus']} CPUs ({env['threads']} threads), GPU {env['cuda'] or 'none'}, {env['date']}",
            "- Timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in data["timings"].items()),
            "",
            "```",
            table,
            "```",
            "",
        ]
    )


def write_downloads(record: RunRecord, session: Session, split: Split) -> dict[str, Path]:
    """Write the report (JSON, Markdown) and the unlearned model (safetensors) into the session's folder."""
    session.check_open()
    folder = session.folder / f"run{record.number:02d}"
    folder.mkdir(exist_ok=True)  # never re-creates a deleted session folder
    stem = f"dlfd_studio_run{record.number:02d}_{record.outcome.result.method}"
    data = report_json(record, session, split)
    files = {
        "report_json": folder / f"{stem}.json",
        "report_md": folder / f"{stem}.md",
        "model": folder / f"{stem}.safetensors",
    }
    with atomic_write(files["report_json"], "w") as handle:
        json.dump(data, handle, indent=2)
    with atomic_write(files["report_md"], "w") as handle:
        handle.write(report_markdown(data, record))
    model = record.outcome.result.model
    metadata = {
        "method": data["method"],
        "settings": data["settings"],
        "seed": data["seed"],
        "forgotten": data["forgotten"],
    }
    save_model(
        model,
        files["model"],
        metadata=metadata,
        delta=bool(getattr(model, "pretrained", False)),
    )
    return files
