"""DLFD: the OT term is live (unlike the released code), Sinkhorn is right, the schedule and monitor behave."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from dlfd_core.unlearn import create_method
from dlfd_core.unlearn.dlfd import perturb
from dlfd_core.unlearn.ot import cost_matrix, ot_distance, sinkhorn_plan
from tests.tiny import tiny_data, tiny_model


def test_sinkhorn_plan_has_uniform_marginals() -> None:
    g = torch.Generator().manual_seed(0)
    cost = cost_matrix(torch.randn(7, 5, generator=g), torch.randn(4, 5, generator=g))
    plan = sinkhorn_plan(cost, 0.05, max_iter=5000, tol=1e-10)
    torch.testing.assert_close(plan.sum(1), torch.full((7,), 1 / 7), atol=1e-5, rtol=0)
    torch.testing.assert_close(plan.sum(0), torch.full((4,), 1 / 4), atol=1e-5, rtol=0)


def test_small_epsilon_ot_matches_the_exact_assignment() -> None:
    """With n = m and uniform weights, exact OT is the optimal assignment (scipy) divided by n."""
    rng = np.random.default_rng(1)
    a, b = torch.tensor(rng.normal(size=(6, 3))), torch.tensor(rng.normal(size=(6, 3)))
    cost = cost_matrix(a, b, "sqeuclidean").numpy()
    rows, cols = linear_sum_assignment(cost)
    exact = cost[rows, cols].sum() / 6
    value = float(ot_distance(a, b, epsilon=1e-3, cost="sqeuclidean", max_iter=5000))
    assert value == pytest.approx(exact, rel=1e-3)


def test_ot_gradient_matches_finite_differences() -> None:
    """The detached-plan gradient is the gradient of the entropic OT value (envelope theorem)."""
    g = torch.Generator().manual_seed(2)
    a = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 4, generator=g, dtype=torch.float64)
    eps = 0.5

    def value(x: torch.Tensor) -> float:
        c = cost_matrix(x, b, "sqeuclidean").double()
        plan = sinkhorn_plan(c, eps, max_iter=5000, tol=1e-12).double()
        return float((plan * c).sum() + eps * (plan * (plan.log() - np.log(1 / 15))).sum())

    cost = cost_matrix(a, b, "sqeuclidean").double()
    plan = sinkhorn_plan(cost, eps, max_iter=5000, tol=1e-12).double()
    (grad,) = torch.autograd.grad((plan * cost).sum(), a)
    h = 1e-6
    direction = torch.randn(5, 4, generator=g, dtype=torch.float64)
    numeric = (value(a.detach() + h * direction) - value(a.detach() - h * direction)) / (2 * h)
    assert float((grad * direction).sum()) == pytest.approx(numeric, rel=1e-4)


def _perturb_inputs():
    model = tiny_model()
    data = tiny_data("identity")
    x, y = data.retain_inputs[:8], data.retain_labels[:8]
    with torch.no_grad():
        target = model.features(data.forget_inputs)
    return model, x, y, target


def test_ot_term_has_a_nonzero_gradient_with_respect_to_the_perturbation() -> None:
    model, x, y, target = _perturb_inputs()
    delta = torch.zeros_like(x, requires_grad=True)
    ot = ot_distance(model.features(x + delta), target, epsilon=0.05)
    (grad,) = torch.autograd.grad(ot, delta)
    assert float(grad.abs().sum()) > 0


def _run_perturb(model, x, y, target, **kw) -> torch.Tensor:
    settings = dict(
        steps=3,
        step_size=2 / 255,
        ot_weight=3.0,
        ce_weight=0.0,
        feature_space="features",
        ot_on="perturbed",
        epsilon=0.05,
        cost="cosine",
        autocast=lambda: torch.autocast("cpu", enabled=False),
    )
    settings.update(kw)
    return perturb(model, x, y, target, **settings)


def test_perturbation_depends_on_the_ot_weight_and_raises_the_ot_distance() -> None:
    model, x, y, target = _perturb_inputs()
    default = _run_perturb(model, x, y, target)
    no_ot = _run_perturb(model, x, y, target, ot_weight=0.0)
    assert not torch.equal(default, no_ot)
    assert torch.equal(no_ot, x), "with OT weight 0 and CE weight 0 nothing should move"
    with torch.no_grad():
        assert ot_distance(model.features(default), target) > ot_distance(model.features(x), target)
    assert float((default - x).abs().max()) <= 3 * 2 / 255 + 1e-6
    assert default.min() >= 0 and default.max() <= 1


def test_released_variant_is_inert_at_zero_ce_weight() -> None:
    """The released code's OT (on the clean batch) moves nothing; only its CE term would."""
    model, x, y, target = _perturb_inputs()
    assert torch.equal(_run_perturb(model, x, y, target, ot_on="clean"), x)
    assert not torch.equal(_run_perturb(model, x, y, target, ot_on="clean", ce_weight=1.0), x)


def test_dlfd_default_differs_from_ot_weight_zero_and_from_released() -> None:
    model, data = tiny_model(), tiny_data("instance")
    runs = {
        key: create_method(name, **kw, monitor_samples=0).run(model, data, seed=0).model.state_dict()
        for key, name, kw in (("dlfd", "dlfd", {}), ("no_ot", "dlfd", {"ot_weight": 0.0}), ("rel", "dlfd_inert_ot", {}))
    }
    for other in ("no_ot", "rel"):
        assert any(not torch.equal(runs["dlfd"][k], runs[other][k]) for k in runs["dlfd"]), other


def test_ce_weight_rises_linearly_and_monitor_stops_perturbing() -> None:
    model, data = tiny_model(), tiny_data("identity")
    result = create_method("dlfd", batch_size=4, stop_threshold=1.0, ce_weight_start=0.0).run(model, data, seed=0)
    weights = [h["ce_weight"] for h in result.history]
    np.testing.assert_allclose(weights, np.linspace(0.0, 1.0, len(weights)))
    perturbed = [h["perturbed"] for h in result.history]
    assert perturbed[0] == 1.0 and not any(perturbed[1:]), "threshold 1.0: the first score is below it"
    never = create_method("dlfd", batch_size=4, stop_threshold=0.0, ce_weight_start=0.0).run(model, data, seed=0)
    assert all(h["perturbed"] == 1.0 for h in never.history)


def test_identity_mode_resets_the_forgotten_rows_only() -> None:
    model, data = tiny_model(), tiny_data("identity")
    result = create_method("class_reset").run(model, data, seed=0).model
    assert not torch.equal(result.output_layer.weight[0], model.output_layer.weight[0])
    torch.testing.assert_close(result.output_layer.weight[1:], model.output_layer.weight[1:], rtol=0, atol=0)
    bound = 1 / np.sqrt(model.output_layer.in_features)
    assert float(result.output_layer.weight[0].detach().abs().max()) <= bound


def test_paper_preset_rechecks_the_stop_after_every_batch() -> None:
    model, data = tiny_model(), tiny_data("identity")
    result = create_method("dlfd_paper", batch_size=2, steps=2).run(model, data, seed=0)
    history = result.history
    assert all("forgetting_score" in h for h in history), "re-checking measures after every batch"
    for before, after in zip(history, history[1:], strict=False):
        assert after["perturbed"] == float(before["forgetting_score"] >= 0.15)


def test_released_synthesis_clamps_in_normalised_units_and_its_ot_is_inert() -> None:
    from dlfd_core.unlearn.dlfd import IMAGENET_MEAN, IMAGENET_STD, released_perturb

    model, x, y, _ = _perturb_inputs()
    forget = tiny_data("identity").forget_inputs[: len(x)]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    kw = dict(steps=3, step=0.4, ot_weight=3.0, epsilon=0.01, autocast=lambda: torch.autocast("cpu", enabled=False))
    inert = released_perturb(model, x, y, forget, ce_weight=0.0, **kw)
    # no CE weight: only the (clean-batch) OT term is left, which does not depend on δ: just the clamp
    torch.testing.assert_close(inert, x.clamp(mean, mean + std), rtol=0, atol=1e-6)
    moved = released_perturb(model, x, y, forget, ce_weight=1.0, **kw)
    assert not torch.allclose(moved, inert)
    assert bool(((moved >= mean - 1e-6) & (moved <= mean + std + 1e-6)).all())
    assert float((moved - inert).abs().amax()) <= 3 * 0.4 * max(IMAGENET_STD) + 1e-6


def test_released_keeps_its_best_checkpoint_and_no_row_reset() -> None:
    model, data = tiny_model(), tiny_data("identity")
    result = create_method("dlfd_released", batch_size=4, steps=1, save_threshold=0.5).run(model, data, seed=0)
    history = result.history
    assert all({"validation_acc", "forgetting_score", "mia", "mia_regression_acc"} <= set(h) for h in history)
    saved = [h["validation_acc"] for h in history if h["forgetting_score"] <= 0.5]
    with torch.no_grad():
        kept = float((result.model(data.holdout_inputs).argmax(1) == data.holdout_labels).float().mean())
    assert kept == pytest.approx(max(saved))
    untouched = create_method("dlfd_released", lr=0.0, head_lr=0.0, weight_decay=0.0, steps=1).run(model, data, seed=0)
    torch.testing.assert_close(untouched.model.output_layer.weight, model.output_layer.weight, rtol=0, atol=0)


def test_released_check_can_reach_its_thresholds_when_the_sides_differ_in_size() -> None:
    """Forget photos that *are* the validation photos cannot be told apart: the balanced check scores under the
    released stop threshold (0.15). Unbalanced (the same 30 photos against them twice over, 60), the attack is stuck
    at the majority rate 60 / 90: a forgetting score of 1/6, which could never stop."""
    from dlfd_core.evaluate.metrics import forgetting_score, mia_logistic
    from dlfd_core.unlearn.base import RunContext
    from dlfd_core.unlearn.dlfd import _losses, loss_attack_score

    model = tiny_model()
    g = torch.Generator().manual_seed(5)
    x, y = torch.rand(30, 3, 16, 16, generator=g), torch.randint(0, 4, (30,), generator=g)
    ctx = RunContext(
        create_method("dlfd_released"), device=torch.device("cpu"), seed=0, progress=lambda *a: None, should_stop=None
    )
    assert loss_attack_score(model, x, y, x, y, ctx)[1] < 0.15
    losses = _losses(model, x, y, ctx)
    unbalanced = mia_logistic(losses, np.r_[losses, losses], balanced=False)
    assert forgetting_score(unbalanced.accuracy) >= 0.15


def test_default_perturbs_the_first_batch_only_with_or_without_a_monitor() -> None:
    model, data = tiny_model(), tiny_data("identity")
    for d in (data, dataclasses.replace(data, nonmember_inputs=None)):
        history = create_method("dlfd", batch_size=4).run(model, d, seed=0).history
        assert [h["perturbed"] for h in history] == [1.0] + [0.0] * (len(history) - 1)
