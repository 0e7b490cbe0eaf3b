"""The contract every registered unlearning method keeps (one parametrised test per method and forget mode)."""

from __future__ import annotations

import copy

import pytest
import torch

from dlfd_core.errors import CancelledError, DLFDError, UnknownNameError
from dlfd_core.train import TrainConfig, rate_scale
from dlfd_core.unlearn import create_method, method_class, method_names
from tests.tiny import tiny_data, tiny_model

CASES = [(name, mode) for name in method_names() for mode in method_class(name).modes]


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tiny_model()


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_method_contract(name: str, mode: str, model: torch.nn.Module) -> None:
    data = tiny_data(mode)
    before = _state(model)
    method = create_method(name, epochs=1) if name != "retrain" else create_method(name)
    fractions: list[float] = []
    first = method.run(model, data, seed=3, progress=lambda f, m="": fractions.append(f))
    assert _equal(_state(model), before), "the caller's model changed"
    assert first.model is not model
    assert all(bool(torch.isfinite(p).all()) for p in first.model.parameters())
    assert not first.model.training
    assert fractions and fractions[-1] == 1.0
    assert all(b >= a for a, b in zip(fractions, fractions[1:], strict=False)), "progress went backwards"
    assert first.method == name and first.seed == 3 and first.seconds > 0
    assert first.settings == method.settings()
    second = method.run(model, data, seed=3)
    assert _equal(_state(first.model), _state(second.model)), "same seed, different result"
    assert [h.keys() for h in first.history] == [h.keys() for h in second.history]


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_cancellation_leaves_the_model_usable(name: str, mode: str, model: torch.nn.Module) -> None:
    data = tiny_data(mode)
    before = _state(model)
    polls = {"n": 0}

    def should_stop() -> bool:
        polls["n"] += 1
        return polls["n"] > 1  # let the run start, stop at its first step

    with pytest.raises(CancelledError):
        create_method(name).run(model, data, seed=0, should_stop=should_stop)
    assert _equal(_state(model), before)
    with torch.no_grad():
        assert torch.isfinite(model(data.retain_inputs)).all()
    # a later run still works, and exactly as on a model no run was ever cancelled on: the cancel left nothing behind
    later = method_class(name)().run(model, data, seed=0).model
    untouched = method_class(name)().run(tiny_model(), data, seed=0).model
    assert _equal(_state(later), _state(untouched))


def test_registry_errors() -> None:
    with pytest.raises(UnknownNameError, match="dlfd"):
        create_method("no_such_method")
    with pytest.raises(UnknownNameError, match="has no setting"):
        create_method("dlfd", not_a_setting=1)
    with pytest.raises(DLFDError, match="must lie in"):
        create_method("dlfd", steps=-1)
    with pytest.raises(DLFDError, match="must be one of"):
        create_method("dlfd", feature_space="pixels")
    with pytest.raises(DLFDError, match="true or false"):
        create_method("dlfd", reset_forget_classes="False")
    with pytest.raises(DLFDError, match="whole number"):
        create_method("dlfd", steps=2.5)
    with pytest.raises(DLFDError, match="finite"):
        create_method("dlfd", lr=float("nan"))


def test_every_method_documents_its_settings() -> None:
    for name in method_names():
        cls = method_class(name)
        doc = (cls.__dict__.get("__doc__") or "").strip()
        assert cls.title and cls.paper and doc and not doc.startswith(f"{cls.__name__}("), name
        for info in cls.fields_info():
            assert info["help"], f"{name}.{info['name']} has no help text"


def test_a_method_without_a_docstring_is_refused_at_registration() -> None:
    """A dataclass without a docstring gets its signature as ``__doc__``; the app would show it as the help."""
    from dataclasses import dataclass

    from dlfd_core.unlearn import register_method
    from dlfd_core.unlearn.finetune import FineTune

    @dataclass(frozen=True, kw_only=True)
    class Undocumented(FineTune):
        name = "undocumented_test_method"

    assert Undocumented.__doc__.startswith("Undocumented(")
    with pytest.raises(TypeError, match="needs a docstring"):
        register_method(Undocumented)
    assert "undocumented_test_method" not in method_names()


def test_mode_restrictions_are_enforced(model: torch.nn.Module) -> None:
    assert any(len(method_class(n).modes) == 1 for n in method_names()), "some methods are identity-only"
    for name in method_names():
        for mode in {"identity", "instance"} - set(method_class(name).modes):
            with pytest.raises(DLFDError, match="supports"):
                create_method(name).run(model, tiny_data(mode))


#: Methods whose result is not the input model at a zero learning rate, by design, with the reason. Every other
#: method must return exactly the input weights (what an update step does at rate 0), and each one listed here must
#: really change them (so the list cannot hide a method that stopped working).
CHANGES_AT_ZERO_LR = {
    "retrain": "trains a new model with the original recipe's rates, not the method's",
    "class_reset": "re-draws the forgotten people's rows of the head before any training",
    "eu_k": "re-initialises the last k layers before training them",
}


@pytest.mark.parametrize("name", method_names())
def test_a_zero_learning_rate_returns_the_input_weights(name: str, model: torch.nn.Module) -> None:
    cls = method_class(name)
    mode = "instance" if "instance" in cls.modes else "identity"
    known = {f["name"] for f in cls.fields_info()}
    zero = {k: 0.0 for k in ("lr", "head_lr", "weight_decay") if k in known}
    out = create_method(name, epochs=1, **zero).run(model, tiny_data(mode), seed=0).model
    learned = {k: v for k, v in _state(model).items() if "running" not in k and "num_batches" not in k}
    after = {k: v for k, v in _state(out).items() if k in learned}
    if name in CHANGES_AT_ZERO_LR:
        assert not _equal(learned, after), f"{name} no longer changes the weights: {CHANGES_AT_ZERO_LR[name]}?"
    else:
        assert _equal(learned, after), f"{name} changed the weights at learning rate 0 ({mode} forgetting)"


@pytest.mark.parametrize("name", [n for n in method_names() if n != "retrain"])
def test_sgd_rates_follow_the_models_own_recipe(name: str, model: torch.nn.Module) -> None:
    """A model trained at half the default backbone rate and a quarter of the head rate runs a method's default SGD
    rates at those fractions: the same weights as the unscaled model run with the rates scaled by hand. Adam rates,
    and rates the caller sets, stay as set."""
    cls = method_class(name)
    mode = "instance" if "instance" in cls.modes else "identity"
    data = tiny_data(mode)
    default = TrainConfig()
    slower = _with_recipe(model, lr=default.lr * 0.5, head_lr=default.head_lr * 0.25)
    method = create_method(name, epochs=1)
    scaled = method.run(slower, data, seed=1)
    if cls.optimizer == "sgd":
        by_hand = create_method(name, epochs=1, lr=method.lr * 0.5, head_lr=method.head_lr * 0.25)
        assert scaled.rate_scale == (0.5, 0.25)
    else:
        by_hand = method
    assert _equal(_state(scaled.model), _state(by_hand.run(model, data, seed=1).model))
    assert method.run(model, data, seed=1).rate_scale == (1.0, 1.0)
    assert by_hand.run(slower, data, seed=1).rate_scale == (1.0, 1.0)  # rates the caller set are used as set


def test_a_model_without_a_recipe_on_record_runs_the_rates_as_set(model: torch.nn.Module) -> None:
    assert rate_scale(model) == (1.0, 1.0)
    assert rate_scale(_with_recipe(model, lr=1e-3, head_lr=5e-3)) == (2.0, 1.0)


def _with_recipe(model: torch.nn.Module, **rates: float) -> torch.nn.Module:
    """A copy of ``model`` that says it was trained with the default recipe at ``rates``."""
    out = copy.deepcopy(model)
    out.metadata["train_config"] = TrainConfig(**rates).to_dict()
    return out
