"""dlib's ResNet face descriptor: equivalence with face-api, shapes, weights errors and trainability."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from dlfd_core.errors import WeightsError
from dlfd_core.models.dlib_resnet import DEFAULT_WEIGHTS, REBUILD_COMMAND, DlibResNet, dlib_resnet
from dlfd_core.models.registry import backbone_names, create_backbone

dlib_module = importlib.import_module("dlfd_core.models.dlib_resnet")
FIXTURE = Path(__file__).parent / "fixtures" / "faceapi_reference.npz"


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    """The face-api reference: crops [N, 150, 150, 3] uint8, descriptors [N, 128] float32, labels [N]."""
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def pretrained() -> DlibResNet:
    """The bundled pretrained network in eval mode."""
    return dlib_resnet(pretrained=True).eval()


def _batch(crops: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] in [0, 1]."""
    return torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0


def test_reproduces_faceapi_descriptors(reference: dict[str, np.ndarray], pretrained: DlibResNet) -> None:
    with torch.no_grad():
        ours = pretrained(_batch(reference["crops"])).numpy()
    theirs = reference["descriptors"]
    assert ours.shape == theirs.shape == (len(reference["crops"]), 128)
    max_diff = float(np.abs(ours - theirs).max())
    assert max_diff < 1e-4, f"max abs difference to face-api: {max_diff:.3g}"


def test_fixture_records_versions(reference: dict[str, np.ndarray]) -> None:
    note = json.loads(str(reference["note"]))
    assert note["versions"]["face-api"] == "1.7.15"
    assert note["versions"]["tfjs"] == "4.22.0"
    assert note["backend"] == "cpu"
    assert reference["crops"].dtype == np.uint8 and reference["crops"].shape[1:] == (150, 150, 3)


def test_same_person_closer_than_different_people(reference: dict[str, np.ndarray], pretrained: DlibResNet) -> None:
    with torch.no_grad():
        descriptors = pretrained(_batch(reference["crops"])).numpy()
    labels = reference["labels"]
    distances = np.linalg.norm(descriptors[:, None] - descriptors[None], axis=-1)
    same = labels[:, None] == labels[None]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    assert (same & off_diagonal).any() and (~same).any()
    assert distances[same & off_diagonal].max() < distances[~same].min()
    # dlib's own decision threshold (Euclidean distance 0.6) separates the pairs too.
    assert distances[same & off_diagonal].max() < 0.6


def test_shapes_and_attributes() -> None:
    model = dlib_resnet(pretrained=False)
    assert isinstance(model, DlibResNet)
    assert model.embedding_dim == 128 and model.input_size == 150
    with torch.no_grad():
        out = model(torch.rand(3, 3, 150, 150))
    assert out.shape == (3, 128) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError):
        model(torch.rand(2, 1, 150, 150))
    with pytest.raises(ValueError):
        model(torch.rand(3, 150, 150))
    with pytest.raises(ValueError):
        model(torch.rand(1, 3, 64, 64))


def test_output_is_not_normalised(pretrained: DlibResNet) -> None:
    with torch.no_grad():
        norms = pretrained(torch.rand(2, 3, 150, 150)).norm(dim=1)
    assert not torch.allclose(norms, torch.ones_like(norms))


def test_registered_backbone() -> None:
    assert "dlib_resnet" in backbone_names()
    model = create_backbone("dlib_resnet", pretrained=False)
    assert isinstance(model, DlibResNet)


def test_random_init_trains() -> None:
    torch.manual_seed(0)
    model = dlib_resnet(pretrained=False).train()
    params = dict(model.named_parameters())
    assert params and all(p.requires_grad for p in params.values())
    before = {name: p.detach().clone() for name, p in params.items()}
    x = torch.rand(2, 3, 150, 150)
    target = torch.randn(2, 128)
    loss = torch.nn.functional.mse_loss(model(x), target)
    loss.backward()
    for name, param in params.items():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    torch.optim.SGD(model.parameters(), lr=0.01).step()
    assert all(not torch.equal(before[name], p) for name, p in params.items())
    assert not any(isinstance(module, torch.nn.modules.batchnorm._BatchNorm) for module in model.modules())


def test_pretrained_weights_differ_from_random() -> None:
    torch.manual_seed(0)
    random = dlib_resnet(pretrained=False).state_dict()
    loaded = dlib_resnet(pretrained=True).state_dict()
    assert random.keys() == loaded.keys()
    assert not torch.equal(random["fc.weight"], loaded["fc.weight"])


def test_asset_metadata_records_source_and_licence() -> None:
    with safe_open(str(DEFAULT_WEIGHTS), framework="numpy") as handle:
        metadata = handle.metadata()
    assert metadata["source"] == "npm @vladmandic/face-api@1.7.15"
    assert len(metadata["source_tarball_sha256"]) == 64
    assert "CC0" in metadata["license"] and "MIT" in metadata["license"] and "Davis King" in metadata["license"]


def test_missing_weights_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(WeightsError, match="convert_dlib_resnet"):
        dlib_resnet(weights=tmp_path / "absent.safetensors")
    monkeypatch.setattr(dlib_module, "DEFAULT_WEIGHTS", tmp_path / "absent.safetensors")
    with pytest.raises(WeightsError, match="not found"):
        dlib_resnet(pretrained=True)


def test_corrupt_weights_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!" + bytes(64))
    with pytest.raises(WeightsError, match=REBUILD_COMMAND):
        dlib_resnet(weights=garbage)

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(DEFAULT_WEIGHTS.read_bytes()[:100_000])
    with pytest.raises(WeightsError):
        dlib_resnet(weights=truncated)

    flipped = tmp_path / "flipped.safetensors"
    shutil.copyfile(DEFAULT_WEIGHTS, flipped)
    data = bytearray(flipped.read_bytes())
    data[-1] ^= 0xFF
    flipped.write_bytes(bytes(data))
    monkeypatch.setattr(dlib_module, "DEFAULT_WEIGHTS", flipped)
    with pytest.raises(WeightsError, match="sha256"):
        dlib_resnet(pretrained=True)


def test_wrong_tensors_raise(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.safetensors"
    save_file({"fc": np.zeros((256, 64), dtype=np.float32)}, str(wrong))
    with pytest.raises(WeightsError, match="does not fit"):
        dlib_resnet(weights=wrong)


def test_folded_conv_layer_equals_convolution_then_scale() -> None:
    """The conv layer folds its per-channel scale and bias into the convolution; the result and every gradient
    are those of ``scale(conv(x))``."""
    from dlfd_core.models.dlib_resnet import _ConvLayer

    torch.manual_seed(0)
    layer = _ConvLayer(4, 6, 3, stride=2, padding=1)
    with torch.no_grad():
        layer.scale.weight.uniform_(0.5, 1.5)
        layer.scale.bias.normal_()
        layer.conv.bias.normal_()
    x = torch.randn(2, 4, 9, 9, requires_grad=True)
    folded = layer(x)
    reference = layer.scale(layer.conv(x))
    torch.testing.assert_close(folded, reference)
    params = [x, layer.conv.weight, layer.conv.bias, layer.scale.weight, layer.scale.bias]
    for a, b in zip(
        torch.autograd.grad(folded.square().sum(), params),
        torch.autograd.grad(reference.square().sum(), params),
        strict=True,
    ):
        torch.testing.assert_close(a, b)
