"""A method's stopping rule never sees the photos the evaluation scores.

DLFD's dynamic forgetting (and the released DLFD's checkpoint choice) stops or selects on a membership score. Its
non-members are validation data: the validation people's photos (identity mode) or the holdout photos (instance
mode). These tests fail if any photo a method monitors is also one the evaluation scores.
"""

from __future__ import annotations

import pytest
import torch

import dlfd_core.unlearn.dlfd as dlfd_module
from dlfd_core.data import load_split, with_forget_identities, with_forget_instances
from dlfd_core.data.transforms import crops_to_tensor
from dlfd_core.evaluate.evaluate import split_parts
from dlfd_core.paths import ASSETS_DIR
from dlfd_core.unlearn import UnlearnData, create_method
from tests.tiny import SIZE, tiny_model


def _requests(split):
    return {
        "identity": with_forget_identities(split, [split.known[4]]),
        "instance": with_forget_instances(split, 12, seed=0),
    }


@pytest.mark.parametrize("mode", ["identity", "instance"])
def test_validation_photos_are_never_evaluated(orl_aligned, mode: str) -> None:
    split = _requests(load_split(ASSETS_DIR / "splits" / "orl_seed0.json"))[mode]
    evaluated = {key for keys in split.part_keys(orl_aligned).values() for key in keys}
    validation = split.validation_keys(orl_aligned)
    assert validation["nonmembers"] and validation["holdout"]
    for role, keys in validation.items():
        assert evaluated.isdisjoint(keys), f"{role} photos are also evaluated"
    # and the rule the evaluation applies is the one the split states
    assert set(split.evaluation_nonmember_keys(orl_aligned)) <= evaluated


@pytest.mark.parametrize("method", ["dlfd", "dlfd_paper", "dlfd_released"])
@pytest.mark.parametrize("mode", ["identity", "instance"])
def test_dlfd_monitors_only_validation_photos(orl_aligned, monkeypatch, mode: str, method: str) -> None:
    """Run DLFD on ORL (a tiny model, all layers trainable so that its inputs are the photos themselves) and catch
    every photo its monitor scores: besides the method's own training data (the forget and retain sets), each must be
    a validation photo, and none may be one the evaluation scores."""
    split = _requests(load_split(ASSETS_DIR / "splits" / "orl_seed0.json"))[mode]
    data = UnlearnData.from_split(orl_aligned, split, input_size=SIZE)
    seen: list[torch.Tensor] = []
    for name in ("confidence_auc", "loss_attack_score"):
        original = getattr(dlfd_module, name)

        def spy(*args, _original=original, **kwargs):
            seen.extend(a for a in args if isinstance(a, torch.Tensor) and a.ndim == 4)
            return _original(*args, **kwargs)

        monkeypatch.setattr(dlfd_module, name, spy)
    create_method(method, trainable="all", epochs=1, batch_size=64, stop_threshold=0.0).run(
        tiny_model(num_classes=split.num_classes), data, seed=0
    )
    assert seen, "the monitor never ran"
    monitored = torch.cat(seen).flatten(1)
    evaluated = torch.cat(
        [crops_to_tensor(part.crops, SIZE) for part in split_parts(orl_aligned, split).values()]
    ).flatten(1)
    training = torch.cat([data.forget_inputs, data.retain_inputs]).flatten(1)
    validation = torch.cat([data.nonmember_inputs, data.holdout_inputs]).flatten(1)
    outside = [row for row in monitored if not (training == row).all(1).any()]
    assert outside, "the monitor scored no photo outside the training data"
    for row in outside:
        assert (validation == row).all(1).any(), "a monitored photo is neither training nor validation data"
        assert not (evaluated == row).all(1).any(), "a monitored photo is also scored by the evaluation"
