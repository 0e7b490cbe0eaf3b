"""The benchmark's summary and the forget / bench commands."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dlfd_core.bench import _settings_for, forgotten_people, format_markdown, run_bench, setting_mode, summarise
from dlfd_core.cli import main, parse_settings
from dlfd_core.data import load_split
from dlfd_core.errors import DLFDError
from dlfd_core.evaluate.cache import collect_all
from dlfd_core.paths import ASSETS_DIR
from dlfd_core.train import TrainConfig


def _record(model: str, seed: int, nomus: float, **extra: float) -> dict:
    metrics = {"nomus": nomus, "retain_test_acc": 1.0, "unlearn_seconds": 2.0 + seed, **extra}
    return {"backbone": "b", "setting": "identity", "seed": seed, "model": model, "settings": {}, "metrics": metrics}


def test_summary_is_mean_and_sample_std_over_seeds_skipping_nan_and_failures() -> None:
    records = [
        _record("dlfd", 0, 0.8),
        _record("dlfd", 1, 0.6),
        _record("finetune", 0, 0.9, nomus_label_free=math.nan),
        _record("finetune", 1, 0.7, nomus_label_free=0.5),
        {**_record("scrub", 0, 0.1), "error": "diverged"},
    ]
    summary = summarise(records)[("b", "identity")]
    mean, std, n = summary["dlfd"]["nomus"]
    assert (mean, n) == (pytest.approx(0.7), 2) and std == pytest.approx(np.std([0.8, 0.6], ddof=1))
    assert summary["finetune"]["nomus_label_free"] == (0.5, 0.0, 1)
    assert "scrub" not in summary
    table = format_markdown(records, header="H")
    assert "| dlfd | " in table and "0.700 ± 0.141" in table
    assert "scrub failed on seed 0: diverged" in table
    assert "**lower than finetune (0.800)**" in table


def test_resnet18_overrides_skip_adam_rates_and_retrain() -> None:
    assert _settings_for("dlfd", "resnet18") == {"lr": 0.01, "head_lr": 0.01, "trainable": "all"}
    assert _settings_for("bad_teacher", "resnet18") == {"trainable": "all"}
    assert _settings_for("retrain", "resnet18") == {}
    assert _settings_for("dlfd", "dlib_resnet") == {}


def test_settings_name_a_mode_and_how_many_people_each_seed_forgets() -> None:
    from dlfd_core.errors import DLFDError

    assert setting_mode("identity") == ("identity", 1) and setting_mode("identity5") == ("identity", 5)
    assert setting_mode("instance") == ("instance", 0)
    for bad in ("identity0", "identities", "instance5", "both"):
        with pytest.raises(DLFDError, match="unknown bench setting"):
            setting_mode(bad)
    known = [f"p{i}" for i in range(12)]
    # one person: seed i forgets the i-th of one fixed order; five: consecutive groups of that order, wrapping round
    order = [forgotten_people(known, seed)[0] for seed in range(12)]
    assert sorted(order) == sorted(known)
    assert forgotten_people(known, 0, 5) == order[:5] and forgotten_people(known, 1, 5) == order[5:10]
    assert forgotten_people(known, 2, 5) == order[10:] + order[:3]


def test_parse_settings() -> None:
    assert parse_settings(["steps=3", "feature-space=logits", "amp=false"]) == {
        "steps": 3,
        "feature_space": "logits",
        "amp": False,
    }
    with pytest.raises(DLFDError):
        parse_settings(["steps"])


@pytest.mark.slow
def test_forget_command_writes_before_after_json(tmp_path, orl_aligned, capsys) -> None:
    out = tmp_path / "r.json"
    code = main(["forget", "--method", "class_reset", "--forget-identities", "s7", "--no-gold", "--json", str(out)])
    assert code == 0
    payload = json.loads(out.read_text())
    assert payload["method"] == "class_reset" and payload["split"]["forget_identities"] == ["s7"]
    assert payload["before"]["metrics"]["forget_train_acc"] == 1.0
    assert payload["after"]["metrics"]["forget_train_acc"] == 0.0
    assert payload["after"]["metrics"]["retain_test_acc"] == payload["before"]["metrics"]["retain_test_acc"]
    assert "unlearn_seconds" in payload["timings"]
    assert main(["forget", "--method", "nope", "--forget-identities", "s7"]) == 2
    assert "unknown unlearning method" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_from_cached_prefix_outputs_gives_the_full_pass_numbers(orl_aligned) -> None:
    """The bench's fast path (frozen-prefix outputs computed once, every model evaluated, unlearned and retrained as
    a gold model from them) must give the same numbers as full forward passes."""
    split = load_split(ASSETS_DIR / "splits" / "orl_seed0.json")
    kw = dict(
        methods=["class_reset", "finetune"],
        seeds=[1],
        settings=["identity"],
        backbones=["dlib_resnet"],
        recipes={"dlib_resnet": TrainConfig(epochs=1, augment=None)},
        method_settings={"epochs": 1},
    )
    slow = run_bench(orl_aligned, split, **kw)
    fast = run_bench(
        orl_aligned, split, outputs_for=lambda model: collect_all(model, orl_aligned, split, device="cpu"), **kw
    )
    assert [r["model"] for r in slow] == [r["model"] for r in fast] == ["original", "gold", "class_reset", "finetune"]
    # every record carries the app's judgement against the gold model; gold against itself is the identity case
    assert [r["judgement"] for r in slow] == [r["judgement"] for r in fast]
    assert slow[1]["judgement"] == "forgotten" and slow[1]["metrics"]["attack_auc_gap_to_gold"] == 0.0
    assert slow[0]["judgement"] == "detectable"  # the original model still recognises the person
    for a, b in zip(slow, fast, strict=True):
        assert a["metrics"].keys() == b["metrics"].keys()
        for name, value in a["metrics"].items():
            if name != "unlearn_seconds":
                assert b["metrics"][name] == pytest.approx(value, abs=2e-3, nan_ok=True), (a["model"], name)


def test_paired_differences_and_t_test_over_seeds() -> None:
    from scipy.stats import ttest_rel

    from dlfd_core.bench import paired_differences, paired_t_test

    dlfd = [0.80, 0.60, 0.70, 0.75]
    other = [0.70, 0.55, 0.50, 0.74]
    records = [_record("dlfd", s, 0.5, retain_test_acc=v) for s, v in enumerate(dlfd)]
    records += [_record("other", s, 0.5, retain_test_acc=v) for s, v in enumerate(other)]
    records.append(_record("other", 9, 0.5, retain_test_acc=0.1))  # no dlfd run on seed 9: not paired, left out
    d = paired_differences(records, "b", "identity", "dlfd", "other", "retain_test_acc")
    np.testing.assert_allclose(d, np.subtract(other, dlfd))
    assert paired_t_test(d) == pytest.approx(ttest_rel(other, dlfd).pvalue)
    assert math.isnan(paired_t_test(np.zeros(4))) and math.isnan(paired_t_test(np.full(3, 0.1)))
    assert math.isnan(paired_t_test(np.array([0.3, 0.1])))  # two seeds: no test
    table = format_markdown(records)
    from dlfd_core.bench import t_interval

    low, high = t_interval(d)
    assert f"| other | {np.mean(d):+.3f} [{low:+.3f}, {high:+.3f}] (p {ttest_rel(other, dlfd).pvalue:.2g})" in table


def test_t_interval_matches_a_hand_computation() -> None:
    from dlfd_core.bench import t_interval

    # mean 2, sample std 1, standard error 1/sqrt(3); Student's t at 97.5 % with 2 degrees of freedom is 4.3027
    low, high = t_interval(np.array([1.0, 2.0, 3.0]))
    assert low == pytest.approx(2 - 4.3027 / 3**0.5, abs=1e-3) and high == pytest.approx(2 + 4.3027 / 3**0.5, abs=1e-3)
    assert t_interval(np.array([0.5, 0.5])) == (0.5, 0.5)
    assert all(math.isnan(v) for v in t_interval(np.array([0.5])))


def test_a_diverged_model_is_recorded_as_not_judged_and_the_bench_goes_on():
    """Non-finite outputs cannot be judged against the gold model: the record says so instead of ending the cell."""
    from types import SimpleNamespace

    from dlfd_core.bench import _judged
    from dlfd_core.evaluate.outputs import SplitOutputs

    def part(value: float, n: int = 8) -> SplitOutputs:
        logits = np.full((n, 3), value, np.float32)
        logits[:, 0] += 1.0
        return SplitOutputs(logits, np.zeros(n, int), np.zeros(n), np.zeros((n, 2)), ("p",) * n)

    gold = {"forget_train": part(0.0), "unseen": part(0.0)}
    diverged = {"forget_train": part(np.nan), "unseen": part(np.nan)}
    record = _judged(diverged, gold, SimpleNamespace(forget_mode="identity"), seed=0)
    assert record["judgement"] == "not judged" and math.isnan(record["metrics"]["attack_auc"])
    assert _judged(gold, gold, SimpleNamespace(forget_mode="identity"), seed=0)["judgement"] == "forgotten"


def test_the_absolute_attack_gap_does_not_let_an_overshoot_cancel_a_shortfall() -> None:
    """A model ±0.2 from gold on alternate seeds has a signed mean gap of 0 but is 0.2 from gold on every seed."""
    from dlfd_core.bench import metric_value, paired_differences

    gaps = {"dlfd": [0.05, 0.05, 0.05, 0.05], "other": [0.2, -0.2, 0.2, -0.2]}
    records = [_record(m, s, 0.5) for m, values in gaps.items() for s in range(4)]
    for r in records:
        r["metrics"]["attack_auc_gap_to_gold"] = gaps[r["model"]][r["seed"]]
    assert metric_value(records[4], "attack_auc_abs_gap_to_gold") == pytest.approx(0.2)
    assert math.isnan(metric_value(_record("x", 0, 0.5), "attack_auc_abs_gap_to_gold"))  # no attack: not measured
    signed = paired_differences(records, "b", "identity", "dlfd", "other", "attack_auc_gap_to_gold")
    absolute = paired_differences(records, "b", "identity", "dlfd", "other", "attack_auc_abs_gap_to_gold")
    np.testing.assert_allclose(signed, [0.15, -0.25, 0.15, -0.25])
    np.testing.assert_allclose(absolute, [0.15, 0.15, 0.15, 0.15])
    table = format_markdown(records)
    assert "attack_auc_abs_gap_to_gold" in table and "+0.150 (every seed)" in table
