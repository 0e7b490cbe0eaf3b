"""scripts/gpu_check.py: its CUDA-vs-CPU comparison and its refusal without a GPU (the GPU run itself needs a GPU)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_flags_differences_beyond_the_tolerance_and_one_sided_nans(gpu_check) -> None:
    cpu = {"retain_test_acc": 0.99, "forget_train_acc": 0.0, "label_free_mia_acc": 0.75}
    close = {"retain_test_acc": 0.985, "forget_train_acc": 0.0, "label_free_mia_acc": 0.76}
    assert gpu_check._compare("x", close, cpu, 0.03) == []
    far = {**close, "retain_test_acc": 0.9, "forget_train_acc": math.nan}
    problems = gpu_check._compare("x", far, cpu, 0.03)
    assert len(problems) == 2 and all(p.startswith("MISMATCH x ") for p in problems)
    assert any("retain_test_acc: cuda 0.9000 vs cpu 0.9900" in p for p in problems)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_says_so_and_exits_2(gpu_check, capsys) -> None:
    assert gpu_check.main([]) == 2
    assert "no CUDA device" in capsys.readouterr().out
