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
