"""dlfd_core: face recognition that can forget people.

The public API, importable from the package itself (each name loads its module on first use, so ``import
dlfd_core`` stays cheap)::

    import dlfd_core as dl

    faces = dl.bundle("orl")                      # a bundled dataset: faces, default split, shipped model
    dataset, aligned = faces.load()
    split = dl.with_forget_identities(dl.load_split(faces.split_path), ["s7"])
    model = dl.load_model(faces.model_path)
    outcome = dl.forget(aligned, split, model, dl.create_method("dlfd"), train_gold=True)
    table = dl.format_table(outcome.reports)      # before / after / gold, every metric with its direction
    judgement = dl.judge_against_gold(outcome.outputs["after"], outcome.outputs["gold"], split)

The layers, lowest first: :mod:`~dlfd_core.data` (faces, splits) and :mod:`~dlfd_core.faces` (detection,
alignment); :mod:`~dlfd_core.models` (backbones, the classifier, weights); :mod:`~dlfd_core.train`;
:mod:`~dlfd_core.evaluate` (outputs, metrics, attacks, the verdict); :mod:`~dlfd_core.unlearn` (the methods);
:mod:`~dlfd_core.experiment` (one run end to end), :mod:`~dlfd_core.bench`; :mod:`~dlfd_core.viz` (figures) and
:mod:`~dlfd_core.studio` (what the web app does). ``python -m dlfd_core --help`` lists the commands.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Each public name and the module that defines it.
_API: dict[str, str] = {
    # data and faces
    "bundle": "dlfd_core.bundled",
    "bundle_names": "dlfd_core.bundled",
    "load_folder": "dlfd_core.data",
    "load_lfw": "dlfd_core.data",
    "load_orl": "dlfd_core.data",
    "align_dataset": "dlfd_core.data",
    "make_split": "dlfd_core.data",
    "load_split": "dlfd_core.data",
    "save_split": "dlfd_core.data",
    "with_forget_identities": "dlfd_core.data",
    "with_forget_instances": "dlfd_core.data",
    "Split": "dlfd_core.data",
    "AlignedFaces": "dlfd_core.data",
    "FaceAligner": "dlfd_core.faces",
    # models and training
    "create_backbone": "dlfd_core.models",
    "backbone_names": "dlfd_core.models",
    "register_backbone": "dlfd_core.models",
    "load_model": "dlfd_core.models",
    "save_model": "dlfd_core.models",
    "TrainConfig": "dlfd_core.train",
    "train_on_split": "dlfd_core.train",
    # unlearning
    "create_method": "dlfd_core.unlearn",
    "method_names": "dlfd_core.unlearn",
    "register_method": "dlfd_core.unlearn",
    "Method": "dlfd_core.unlearn",
    "UnlearnData": "dlfd_core.unlearn",
    "forget": "dlfd_core.experiment",
    "ForgetOutcome": "dlfd_core.experiment",
    # evaluation
    "collect_all": "dlfd_core.evaluate.cache",
    "report_from_outputs": "dlfd_core.evaluate.evaluate",
    "judge_against_gold": "dlfd_core.evaluate.verdict",
    "membership_auc": "dlfd_core.evaluate.attacks",
    "METRICS": "dlfd_core.evaluate.report",
    "format_table": "dlfd_core.evaluate.report",
    "run_bench": "dlfd_core.bench",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'dlfd_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
