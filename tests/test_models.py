"""Backbones, the registry, the facenet-compatible InceptionResnetV1, and FaceClassifier save / load."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from dlfd_core.errors import DLFDError, UnknownNameError, WeightsError
from dlfd_core.models import (
    FaceClassifier,
    backbone_names,
    create_backbone,
    create_model,
    load_model,
    register_backbone,
    save_model,
)
from dlfd_core.models.classifier import ModelConfigError, build_from_config, model_config, read_model_metadata
from dlfd_core.models.inception_resnet_v1 import InceptionResnetV1, load_facenet_checkpoint

# Smallest sensible settings per backbone for the contract test (the default input size otherwise).
_SMALL_KWARGS: dict[str, dict[str, Any]] = {"resnet18": {"input_size": 32}}
# InceptionResnetV1 is slow on the CPU at 160²: use a smaller batch there.
_BATCH: dict[str, int] = {"inception_resnet_v1": 2}

_FACENET_PARAMS_WITHOUT_LOGITS = 23_482_624  # facenet-pytorch's InceptionResnetV1(pretrained=None)


# --------------------------------------------------------------------------- facenet-pytorch reference


@pytest.fixture(scope="module")
def facenet_reference() -> types.ModuleType:
    """facenet-pytorch's own ``models/inception_resnet_v1.py``, loaded without the package ``__init__``.

    The package ``__init__`` imports MTCNN, which needs torchvision (not usable here), so empty package modules
    stand in for ``facenet_pytorch``, ``facenet_pytorch.models`` and ``facenet_pytorch.models.utils`` while the
    one file is imported; they are removed from ``sys.modules`` again afterwards.
    """
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("facenet-pytorch is not installed (reference only: pip install --no-deps facenet-pytorch==2.6.0)")
    root = Path(next(iter(spec.submodule_search_locations)))
    if not (root / "models" / "inception_resnet_v1.py").is_file():
        pytest.skip(f"facenet-pytorch at {root} has no models/inception_resnet_v1.py")
    packages = {
        "facenet_pytorch": root,
        "facenet_pytorch.models": root / "models",
        "facenet_pytorch.models.utils": root / "models" / "utils",
    }
    before = set(sys.modules)
    saved = {name: sys.modules.get(name) for name in packages}
    try:
        for name, folder in packages.items():
            stub = types.ModuleType(name)
            stub.__path__ = [str(folder)]
            sys.modules[name] = stub
        module = importlib.import_module("facenet_pytorch.models.inception_resnet_v1")
    except ImportError as exc:
        pytest.skip(f"facenet-pytorch's inception_resnet_v1.py cannot be imported here: {exc}")
    finally:
        for name in set(sys.modules) - before:
            if name.startswith("facenet_pytorch"):
                del sys.modules[name]
        for name, previous in saved.items():
            if previous is not None:
                sys.modules[name] = previous
    return module


def _randomise_batchnorm(model: nn.Module, generator: torch.Generator) -> None:
    """Give every BatchNorm non-trivial affine parameters and running statistics (default init is the identity)."""
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                n = layer.num_features
                layer.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                layer.bias.copy_(torch.randn(n, generator=generator) * 0.1)
                layer.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                layer.running_var.copy_(torch.rand(n, generator=generator) + 0.5)


def test_inception_matches_facenet_pytorch(facenet_reference: types.ModuleType, tmp_path: Path) -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    reference = facenet_reference.InceptionResnetV1(pretrained=None, classify=True, num_classes=7)
    _randomise_batchnorm(reference, generator)
    reference.eval()
    reference_state = reference.state_dict()
    checkpoint = tmp_path / "reference.pt"
    torch.save(reference_state, checkpoint)

    ours = InceptionResnetV1().eval()
    ignored = load_facenet_checkpoint(ours, checkpoint)
    assert ignored == ["logits.bias", "logits.weight"]

    # Same keys and shapes apart from the classifier.
    ours_state = ours.state_dict()
    reference_shapes = {k: tuple(v.shape) for k, v in reference_state.items() if not k.startswith("logits.")}
    assert {k: tuple(v.shape) for k, v in ours_state.items()} == reference_shapes
    assert sum(p.numel() for p in ours.parameters()) == _FACENET_PARAMS_WITHOUT_LOGITS

    x = torch.rand(2, 3, 160, 160, generator=generator)  # [2, 3, 160, 160] in [0, 1]
    reference.classify = False  # embedding mode: L2-normalised 512-d output
    with torch.no_grad():
        expected = reference((x * 255.0 - 127.5) / 128.0)  # facenet-pytorch expects standardised input
        got = ours(x)
    assert got.shape == (2, 512)
    max_diff = (got - expected).abs().max().item()
    assert max_diff < 1e-5, max_diff
    assert torch.allclose(got.norm(dim=1), torch.ones(2), atol=1e-5)


def test_load_facenet_checkpoint_safetensors_and_mismatches(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    source = InceptionResnetV1()
    _randomise_batchnorm(source, torch.Generator().manual_seed(2))
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    state["logits.weight"] = torch.zeros(3, 512)
    state["logits.bias"] = torch.zeros(3)

    good = tmp_path / "good.safetensors"
    save_file(state, str(good))
    target = InceptionResnetV1()
    assert load_facenet_checkpoint(target, good) == ["logits.bias", "logits.weight"]
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in target.state_dict().items())

    missing = dict(state)
    del missing["last_linear.weight"]
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(WeightsError, match="missing key.*last_linear.weight"):
        load_facenet_checkpoint(target, tmp_path / "missing.pt")

    reshaped = dict(state)
    reshaped["last_bn.weight"] = torch.ones(256)
    torch.save(reshaped, tmp_path / "reshaped.pt")
    with pytest.raises(WeightsError, match="shape mismatch.*last_bn.weight"):
        load_facenet_checkpoint(target, tmp_path / "reshaped.pt")

    extra = dict(state)
    extra["head.weight"] = torch.ones(2)
    torch.save(extra, tmp_path / "extra.pt")
    with pytest.raises(WeightsError, match="unexpected key.*head.weight"):
        load_facenet_checkpoint(target, tmp_path / "extra.pt")

    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        load_facenet_checkpoint(target, tmp_path / "garbage.pt")


def test_inception_pretrained_needs_a_weights_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="20180402-114759-vggface2.pt"):
        create_backbone("inception_resnet_v1", pretrained=True)
    with pytest.raises(WeightsError, match="not found"):
        create_backbone("inception_resnet_v1", pretrained=True, weights=tmp_path / "absent.pt")


# --------------------------------------------------------------------------- backbone contract


@pytest.mark.parametrize("name", backbone_names())
def test_backbone_contract(name: str) -> None:
    torch.manual_seed(0)
    model = create_backbone(name, pretrained=False, **_SMALL_KWARGS.get(name, {}))
    dim, size = model.embedding_dim, model.input_size
    assert isinstance(dim, int) and dim > 0
    assert isinstance(size, int) and size > 0
    batch = _BATCH.get(name, 4)
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(3))  # [B, 3, S, S]

    model.train()
    out = model(x)  # [B, D]
    assert out.shape == (batch, dim)
    assert torch.isfinite(out).all()
    projection = torch.randn(dim, generator=torch.Generator().manual_seed(4))
    (out * projection).sum().backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{name}: no gradient reaches {param_name}"
        assert torch.isfinite(param.grad).all(), f"{name}: non-finite gradient in {param_name}"
        assert param.grad.abs().sum() > 0, f"{name}: zero gradient for {param_name}"

    model.eval()
    with torch.no_grad():
        first, second = model(x), model(x)
    assert torch.isfinite(first).all()
    assert torch.equal(first, second)


def test_resnet18_options() -> None:
    cifar = create_backbone("resnet18", pretrained=False, input_size=32, stem="cifar").eval()
    with torch.no_grad():
        assert cifar(torch.rand(1, 3, 32, 32)).shape == (1, 512)
    assert create_backbone("resnet18", pretrained=False).input_size == 64
    with pytest.raises(UnknownNameError, match="standard"):
        create_backbone("resnet18", pretrained=False, stem="tiny")
    with pytest.raises(ValueError, match="input_size"):
        create_backbone("resnet18", pretrained=False, input_size=8)
    with pytest.raises(WeightsError, match="from scratch"):
        create_backbone("resnet18", pretrained=True)


# --------------------------------------------------------------------------- registry


def test_registry_names_and_errors() -> None:
    names = backbone_names()
    assert {"dlib_resnet", "inception_resnet_v1", "resnet18"} <= set(names)
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("resnet18")(lambda **_: nn.Identity())
    assert backbone_names() == names
    with pytest.raises(UnknownNameError) as info:
        create_backbone("no_such_backbone", pretrained=False)
    for name in names:
        assert name in str(info.value)
    with pytest.raises(UnknownNameError):
        create_model("no_such_backbone", 3, pretrained=False)


# --------------------------------------------------------------------------- FaceClassifier


def _small_model(**kwargs: Any) -> FaceClassifier:
    torch.manual_seed(0)
    return create_model("resnet18", 5, pretrained=False, input_size=32, **kwargs)


def test_face_classifier_shapes_and_heads() -> None:
    model = _small_model().eval()
    assert (model.num_classes, model.embedding_dim, model.input_size, model.backbone_name) == (5, 512, 32, "resnet18")
    assert isinstance(model.head, nn.Linear) and model.output_layer is model.head
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert model.features(x).shape == (3, 512)
        assert model(x).shape == (3, 5)

    mlp = _small_model(head_hidden=(256, 128))
    linears = [m for m in mlp.head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 256), (256, 128), (128, 5)]
    assert any(isinstance(m, nn.Dropout) and m.p == 0.5 for m in mlp.head.modules())
    assert mlp.output_layer is linears[-1]


@pytest.mark.parametrize("bad", [1, 0, -3, 2.5, True])
def test_num_classes_is_validated(bad: Any) -> None:
    with pytest.raises(ModelConfigError) as info:
        create_model("resnet18", bad, pretrained=False)
    assert isinstance(info.value, ValueError) and isinstance(info.value, DLFDError)
    with pytest.raises(ModelConfigError, match="num_classes"):
        create_model("resnet18", pretrained=False)


def test_config_round_trip_is_json() -> None:
    model = _small_model(head_hidden=(16,), head_dropout=0.25)
    config = json.loads(json.dumps(model_config(model)))
    rebuilt = build_from_config(config)
    assert model_config(rebuilt) == config
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    with pytest.raises(ModelConfigError):
        build_from_config({"format": "something else"})


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = _small_model(head_hidden=(16, 8))
    # One training step so BatchNorm statistics differ from their initial values.
    model.train()
    model(torch.rand(4, 3, 32, 32)).sum().backward()
    model.eval()
    path = save_model(model, tmp_path / "sub" / "model.safetensors", metadata={"method": "test", "seed": 7})
    assert path.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.safetensors"]

    loaded = load_model(path)
    assert not loaded.training
    assert loaded.metadata == {"method": "test", "seed": 7}
    assert read_model_metadata(path) == {"method": "test", "seed": 7}
    assert model_config(loaded) == model_config(model)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
        assert torch.equal(loaded.features(x), model.features(x))


def test_corrupted_files_raise_weights_error(tmp_path: Path) -> None:
    model = _small_model()
    path = save_model(model, tmp_path / "model.safetensors", metadata={})
    data = path.read_bytes()

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError):
        load_model(truncated)

    flipped = bytearray(data)
    flipped[-100] ^= 0xFF  # inside the tensor data: only the checksum can notice
    bitrot = tmp_path / "bitrot.safetensors"
    bitrot.write_bytes(bytes(flipped))
    with pytest.raises(WeightsError, match="corrupted"):
        load_model(bitrot)

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError):
        load_model(garbage)

    with pytest.raises(WeightsError, match="not found"):
        load_model(tmp_path / "absent.safetensors")


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _small_model()
    path = save_model(model, tmp_path / "model.safetensors", metadata={"version": 1})
    original = path.read_bytes()

    with pytest.raises(ModelConfigError):
        save_model(model, path, metadata={"bad": object()})

    def failing_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        save_model(model, path, metadata={"version": 2})
    monkeypatch.undo()

    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    assert path.read_bytes() == original
