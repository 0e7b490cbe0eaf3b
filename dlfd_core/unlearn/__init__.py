"""Machine-unlearning methods behind one interface (see :mod:`dlfd_core.unlearn.base`) and a registry by name.

>>> from dlfd_core.unlearn import create_method, UnlearnData
>>> data = UnlearnData.from_split(aligned, split, input_size=model.input_size)
>>> result = create_method("dlfd").run(model, data, seed=0)
"""

import importlib
import pkgutil

from .base import (
    Method,
    RunContext,
    UnlearnData,
    UnlearnResult,
    create_method,
    method_class,
    method_names,
    register_method,
    reset_classes,
    setting,
)

__all__ = [
    "Method",
    "RunContext",
    "UnlearnData",
    "UnlearnResult",
    "create_method",
    "method_class",
    "method_names",
    "register_method",
    "reset_classes",
    "setting",
]

# Every module of this package except the shared ones defines and registers one or more methods.
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
    if _info.name not in {"base", "ot"}:
        importlib.import_module(f"{__name__}.{_info.name}")
