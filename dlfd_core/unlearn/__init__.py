"""Machine-unlearning methods behind one interface (see :mod:`dlfd_core.unlearn.base`) and a registry by name.

>>> from dlfd_core.unlearn import create_method, UnlearnData
>>> data = UnlearnData.from_split(aligned, split, input_size=model.input_size)
>>> result = create_method("dlfd").run(model, data, seed=0)
"""

from .base import (
    Method,
    RunContext,
    UnlearnData,
    UnlearnResult,
    check_seed,
    coerce_settings,
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
    "check_seed",
    "coerce_settings",
    "create_method",
    "method_class",
    "method_names",
    "register_method",
    "reset_classes",
    "setting",
]

# One module per method (or family); importing registers them, in the order the UI and tables list them.
from . import (  # noqa: E402, F401, I001  (registration order, not alphabetical)
    dlfd,
    tmu,
    retrain,
    finetune,
    neggrad,
    k_layers,
    unsir,
    bad_teacher,
    scrub,
    salun,
    random_label,
    l1_sparse,
)
