"""The benchmark's cells: a local process pool and a local Ray instance give the records of a run here, and a cell
cache makes an interrupted run resume without recomputing what finished."""

from __future__ import annotations

import math

import pytest

from dlfd_core import bench
from dlfd_core.bench import BenchSource, format_markdown, run_bench
from dlfd_core.data import load_split
from dlfd_core.errors import DLFDError
from dlfd_core.paths import ASSETS_DIR
from dlfd_core.train import TrainConfig

pytestmark = pytest.mark.slow

GRID = dict(
    methods=["class_reset"],
    seeds=[0, 1],
    settings=["identity"],
    backbones=["dlib_resnet"],
    recipes={"dlib_resnet": TrainConfig(epochs=1, augment=None)},
)
TIMES = ("unlearn_seconds",)


def _comparable(records: list[dict]) -> list[dict]:
    """The records without wall times (the only thing that differs between two runs of the same cells)."""
    out = []
    for r in records:
        metrics = {k: v for k, v in r["metrics"].items() if k not in TIMES}
        out.append(
            {**r, "metrics": metrics, "forget": list(r["forget"]) if isinstance(r["forget"], list) else r["forget"]}
        )
    return out


def _table(records: list[dict]) -> str:
    """The tables without wall times (the headline and significance tables show seconds too)."""
    return format_markdown(_comparable(records), metrics=[m for m in bench.SUMMARY_METRICS if m not in TIMES])


def _close(a: list[dict], b: list[dict]) -> None:
    """Equal up to float32 rounding. Processes with other thread counts reorder the reductions of an epoch of training,
    which leaves relative differences of about 1e-5 in distances between activations (measured: 2.7e-5 once, on a
    loaded machine); a wrong seed, split or model moves them by orders of magnitude more."""
    assert len(a) == len(b)
    for x, y in zip(_comparable(a), _comparable(b), strict=True):
        assert {k: v for k, v in x.items() if k != "metrics"} == {k: v for k, v in y.items() if k != "metrics"}
        assert x["metrics"].keys() == y["metrics"].keys()
        for name, value in x["metrics"].items():
            expected = pytest.approx(value, rel=1e-4, abs=1e-6, nan_ok=True)
            assert y["metrics"][name] == expected, (x["model"], name, value)


@pytest.fixture(scope="module")
def orl_split(orl_aligned):
    return load_split(ASSETS_DIR / "splits" / "orl_seed0.json")


@pytest.fixture(scope="module")
def pooled(orl_aligned, orl_split):
    return run_bench(orl_aligned, orl_split, workers=2, source=BenchSource(bundle="orl"), **GRID)


def test_a_ray_instance_gives_the_pools_table(orl_aligned, orl_split, pooled) -> None:
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'dlfd-core[ray]')")
    on_ray = run_bench(orl_aligned, orl_split, workers=2, ray_address="local", source=BenchSource(bundle="orl"), **GRID)
    _close(on_ray, pooled)  # the same worker set-up: the same numbers up to float rounding
    assert _table(on_ray) == _table(pooled)
    assert [r["model"] for r in pooled] == ["original", "gold", "class_reset"] * 2
    assert [r["seed"] for r in pooled] == [0, 0, 0, 1, 1, 1]


def test_the_pool_gives_the_records_of_a_run_here(orl_aligned, orl_split, pooled) -> None:
    from dlfd_core.evaluate.cache import collect_all

    here = run_bench(
        orl_aligned,
        orl_split,
        outputs_for=lambda model: collect_all(model, orl_aligned, orl_split, device="cpu"),
        **GRID,
    )
    _close(here, pooled)  # other processes, other thread counts: equal up to float rounding


def test_a_cell_cache_resumes_an_interrupted_run(orl_aligned, orl_split, tmp_path, monkeypatch) -> None:
    from dlfd_core.evaluate.cache import collect_all

    grid = {**GRID, "outputs_for": lambda model: collect_all(model, orl_aligned, orl_split, device="cpu", cache=True)}
    calls: list[int] = []
    real = bench.run_cell

    def counted(cell, *args, **kwargs):
        calls.append(cell.seed)
        if cell.seed == 1 and len(calls) == 2:
            raise KeyboardInterrupt  # the run is stopped while its second cell is computed
        return real(cell, *args, **kwargs)

    monkeypatch.setattr(bench, "run_cell", counted)
    with pytest.raises(KeyboardInterrupt):
        run_bench(orl_aligned, orl_split, cache_dir=tmp_path, **grid)
    assert calls == [0, 1] and len(list(tmp_path.glob("cell-*.json"))) == 1  # the finished cell was kept
    resumed = run_bench(orl_aligned, orl_split, cache_dir=tmp_path, **grid)
    assert calls == [0, 1, 1]  # only the missing cell ran again
    again = run_bench(orl_aligned, orl_split, cache_dir=tmp_path, **grid)
    assert calls == [0, 1, 1] and again == resumed  # everything read back
    other = run_bench(orl_aligned, orl_split, cache_dir=tmp_path, **{**grid, "seeds": [0], "instances": 7})
    assert calls[-1] == 0 and not math.isnan(other[0]["metrics"]["retain_test_acc"])  # other settings: another key


def test_other_processes_need_a_source(orl_aligned, orl_split) -> None:
    with pytest.raises(DLFDError, match="needs a BenchSource"):
        run_bench(orl_aligned, orl_split, workers=2, **GRID)
    with pytest.raises(DLFDError, match="exactly one"):
        BenchSource()
