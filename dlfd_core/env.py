"""A record of the software and hardware a result was produced on (saved with every report and benchmark)."""

from __future__ import annotations

import os
import platform
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def resolve_device(requested: Any = None, *, what: str = "device") -> torch.device:
    """Where work runs: the one rule every entry point uses (the app, the studio, the CLI, a job in a worker).

    Args:
        requested: ``None`` or ``"auto"``: CUDA when a GPU is visible, the CPU otherwise; else a device name or a
            :class:`torch.device` (``cpu``, ``cuda``, ``cuda:N``, ``mps``), checked to exist here.
        what: how the request is named in an error (the CLI says ``--device``).

    Raises:
        DLFDError: an unknown device name, or one this machine does not have.
    """
    import torch

    from .errors import DLFDError

    if requested is None or requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, ValueError, TypeError):
        raise DLFDError(f"{what} {requested!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise DLFDError(f"{what} {requested} asks for CUDA, but CUDA is not available here ({why}); use cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DLFDError(f"{what} {requested}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
        return device
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise DLFDError(f"{what} {requested}: Apple MPS is not available here; use cpu")
        return device
    raise DLFDError(f"{what} {requested!r} is not supported; use cpu, cuda or cuda:N")


def environment() -> dict[str, Any]:
    """Python, torch and numpy versions, CPU, thread count, GPU (if any) and the date."""
    import numpy
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d"),
    }


def warm_up() -> None:
    """Pay one-time library costs before anything is timed or waited for: torch's optimiser machinery (its first
    optimiser imports torch._dynamo, about 2 s on the 2-core CPU here) and the scikit-learn parts the evaluation
    uses. The app calls this in a background thread at start-up; ``forget`` calls it before its timed run."""
    import sklearn.decomposition  # noqa: F401  (the embedding projection)
    import sklearn.linear_model  # noqa: F401  (the membership attacks)
    import sklearn.metrics  # noqa: F401
    import sklearn.model_selection  # noqa: F401
    import torch

    weight = torch.nn.Parameter(torch.zeros(1))
    for optimizer in (torch.optim.SGD([weight], lr=0.0), torch.optim.Adam([weight], lr=0.0)):
        weight.grad = torch.zeros(1)
        optimizer.step()
