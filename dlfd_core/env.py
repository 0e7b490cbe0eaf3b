"""A record of the software and hardware a result was produced on (saved with every report and benchmark)."""

from __future__ import annotations

import os
import platform
import time
from typing import Any


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
