"""Hostile command lines and files: each gives exactly one ``error: ...`` line on stderr and exit code 2, never a
traceback, and leaves no output file (nor a partial temporary file) behind.

Every case fails before any face is aligned or any model is trained, so each runs in well under 2 s (the slowest
load the bundled model, about 0.7 s). The hostile files are written by hand into ``tmp_path``: a split JSON is the
bundled split with one field spoiled; a model file is a hand-made safetensors file (8-byte little-endian header
length, JSON header, tensor bytes).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from dlfd_core.cli import DEFAULT_MODEL, DEFAULT_SPLIT, _repo_path, main
from dlfd_core.models.classifier import FORMAT_NAME, MAX_NUM_CLASSES

MODEL = _repo_path(DEFAULT_MODEL)
SPLIT = _repo_path(DEFAULT_SPLIT)
REPO = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module", autouse=True)
def _imported() -> None:
    """Import what the commands import once, so that no single case pays for it."""
    import dlfd_core.data  # noqa: F401
    import dlfd_core.models  # noqa: F401
    import dlfd_core.unlearn  # noqa: F401


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def _run_hostile(capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], expected: list[str]) -> str:
    """Run ``main(argv)``; assert exit 2, one ``error:`` line holding every expected word, no traceback, no new file."""
    before = _files(tmp_path)
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "internal error" not in err, err  # a specific message, not the safety net
    for word in expected:
        assert word in err, (word, err)
    assert _files(tmp_path) == before, "an output or temporary file was left behind"
    return err


def _bundled_split() -> dict[str, Any]:
    return json.loads(Path(SPLIT).read_text(encoding="utf-8"))


def _write_safetensors(path: Path, metadata: dict[str, str] | None, tensors: dict[str, torch.Tensor]) -> Path:
    """A safetensors file written by hand (so that its header can say anything)."""
    header: dict[str, Any] = {} if metadata is None else {"__metadata__": metadata}
    data = b""
    for name, tensor in tensors.items():
        raw = tensor.contiguous().numpy().tobytes()
        dtype = {torch.float32: "F32", torch.int64: "I64"}[tensor.dtype]
        header[name] = {"dtype": dtype, "shape": list(tensor.shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def _config(**changes: Any) -> dict[str, Any]:
    """The bundled model's config with ``changes``."""
    config = {
        "format": FORMAT_NAME,
        "format_version": 1,
        "backbone": "dlib_resnet",
        "backbone_kwargs": {},
        "num_classes": 30,
        "head": {"hidden": [], "dropout": 0.5},
        "embedding_dim": 128,
        "input_size": 150,
        "pretrained": True,
    }
    config.update(changes)
    return config


def _model_file(path: Path, config: Any, tensors: dict[str, torch.Tensor] | None = None) -> Path:
    metadata = {
        "format": FORMAT_NAME,
        "delta": "pretrained",
        "config": config if isinstance(config, str) else json.dumps(config),
        "metadata": "{}",
        "sha256": "0" * 64,
    }
    return _write_safetensors(path, metadata, tensors or {})


# --------------------------------------------------------------------------------------------------- split JSON

_DEEP = "[" * 100_000 + "]" * 100_000


def _spoil(**changes: Any) -> Callable[[dict[str, Any]], Any]:
    def spoil(data: dict[str, Any]) -> Any:
        data.update(changes)
        return data

    return spoil


def _image_in_train_and_test(data: dict[str, Any]) -> dict[str, Any]:
    data["test"]["s1"] = [*data["test"]["s1"], data["train"]["s1"][0]]
    return data


def _unknown_identity(data: dict[str, Any]) -> dict[str, Any]:
    data["unseen"] = [*data["unseen"], "s99"]
    return data


def _train_not_a_list(data: dict[str, Any]) -> dict[str, Any]:
    data["train"]["s1"] = 7
    return data


# (case id, how to spoil the bundled split: a function of its dict, or the raw file text; expected words)
SPLIT_CASES: list[tuple[str, Any, list[str]]] = [
    ("seed-inf", lambda d: json.dumps(d).replace('"seed": 0', '"seed": 1e999'), ["seed must be", "got inf"]),
    ("seed-negative", _spoil(seed=-1), ["seed must be an integer from 0 to 4294967295", "got -1"]),
    ("seed-float", _spoil(seed=2.5), ["seed must be an integer", "got 2.5"]),
    ("seed-huge", _spoil(seed=10**40), ["seed must be an integer", "got 1000000000"]),
    ("seed-text", _spoil(seed="0"), ["seed must be an integer", "got '0'"]),
    ("seed-bool", _spoil(seed=True), ["seed must be an integer", "got True"]),
    ("forget-seed-negative", _spoil(forget_seed=-5), ["forget_seed must be an integer", "got -5"]),
    ("nested-100000", _DEEP, ["nested too deeply"]),
    ("nan", '{"format": "dlfd-split", "seed": NaN}', ["NaN is not a number JSON allows"]),
    ("not-json", "{not json", ["Cannot read split file", "Expecting property name"]),
    ("duplicate-json-key", '{"format": "dlfd-split", "seed": 0, "seed": 1}', ["the key 'seed' appears twice"]),
    ("top-level-list", "[1, 2, 3]", ["is not a dlfd split file"]),
    ("wrong-version", _spoil(version=99), ["split format version 99"]),
    ("missing-field", lambda d: {k: v for k, v in d.items() if k != "train"}, ["lacks the fields train"]),
    ("known-is-text", _spoil(known="s1"), ["known must be a list of names", "got 's1'"]),
    ("identity-not-text", _spoil(unseen=[2, 3]), ["each entry of unseen must be non-empty text", "got 2"]),
    ("train-not-a-list", _train_not_a_list, ["train['s1'] must be a list of names", "got 7"]),
    ("train-and-test", _image_in_train_and_test, ["appears more than once (train and test)"]),
    ("known-and-unseen", _spoil(unseen=["s1"]), ["s1 are both known and unseen"]),
    ("unknown-forget-mode", _spoil(forget_mode="everything"), ["unknown forget mode 'everything'"]),
    ("unknown-identity", _unknown_identity, ["unseen identities s99 are not in dataset 'orl'"]),
    ("other-dataset", _spoil(dataset="lfw"), ["made for dataset 'lfw', not 'orl'"]),
]


@pytest.mark.parametrize(("spoil", "expected"), [c[1:] for c in SPLIT_CASES], ids=[c[0] for c in SPLIT_CASES])
def test_hostile_split_file(capsys, tmp_path: Path, spoil: Any, expected: list[str]) -> None:
    path = tmp_path / "split.json"
    data = spoil if isinstance(spoil, str) else spoil(_bundled_split())
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    out = tmp_path / "out" / "eval.json"
    _run_hostile(capsys, tmp_path, ["evaluate", "--split", str(path), "--json", str(out)], [str(path), *expected])


def test_missing_split_file(capsys, tmp_path: Path) -> None:
    missing = tmp_path / "absent.json"
    _run_hostile(capsys, tmp_path, ["evaluate", "--split", str(missing)], [f"Split file {missing} does not exist"])


# --------------------------------------------------------------------------------------------------- model files


def _head(shape_in: int = 128, classes: int = 30) -> dict[str, torch.Tensor]:
    return {"head.weight": torch.zeros(classes, shape_in), "head.bias": torch.zeros(classes)}


MODEL_CASES: list[tuple[str, Callable[[Path], Path], list[str]]] = [
    (
        "unknown-backbone-kwarg",
        lambda p: _model_file(p, _config(backbone_kwargs={"depth": 200})),
        ["backbone 'dlib_resnet' has no argument 'depth'", "backbone_kwargs it takes: none"],
    ),
    (
        "weights-path-in-kwargs",
        lambda p: _model_file(p, _config(backbone_kwargs={"weights": "/etc/passwd"})),
        ["backbone_kwargs 'weights' names a file to load", "may not make the loader open another path"],
    ),
    (
        "resnet18-weights-kwarg",
        lambda p: _model_file(p, _config(backbone="resnet18", backbone_kwargs={"weights": "x.pt"})),
        ["backbone 'resnet18' has no argument 'weights'", "input_size, stem"],
    ),
    (
        "num-classes-10**12",
        lambda p: _model_file(p, _config(num_classes=10**12)),
        [f"num_classes must be an integer from 2 to {MAX_NUM_CLASSES}", "got 1000000000000"],
    ),
    ("num-classes-float", lambda p: _model_file(p, _config(num_classes=2.5)), ["num_classes", "got 2.5"]),
    ("num-classes-negative", lambda p: _model_file(p, _config(num_classes=-3)), ["num_classes", "got -3"]),
    ("num-classes-zero", lambda p: _model_file(p, _config(num_classes=0)), ["num_classes", "got 0"]),
    ("num-classes-text", lambda p: _model_file(p, _config(num_classes="30")), ["num_classes", "got '30'"]),
    (
        "head-too-wide",
        lambda p: _model_file(p, _config(head={"hidden": [10**9], "dropout": 0.5})),
        ["head hidden widths must be at most 8 integers from 1 to 65536"],
    ),
    (
        "input-size-huge",
        lambda p: _model_file(p, _config(backbone="resnet18", backbone_kwargs={"input_size": 10**9})),
        ["backbone_kwargs input_size must be an integer from 1 to 1024", "got 1000000000"],
    ),
    ("unknown-backbone", lambda p: _model_file(p, _config(backbone="vgg99")), ["unknown backbone 'vgg99'"]),
    ("config-not-json", lambda p: _model_file(p, "{nope"), ["its model config is not valid JSON"]),
    (
        "config-nested-deep",
        lambda p: _model_file(p, "[" * 100_000 + "]" * 100_000),
        ["its model config is nested too deeply"],
    ),
    (
        "header-not-json",
        lambda p: (p.write_bytes(struct.pack("<Q", 9) + b"not json!"), p)[1],
        ["its safetensors header is not valid JSON"],
    ),
    (
        "header-longer-than-file",
        lambda p: (p.write_bytes(struct.pack("<Q", 10**9) + b"{}"), p)[1],
        ["is not a safetensors file (or is truncated)", "header claims 1000000000 bytes"],
    ),
    (
        "not-safetensors",
        lambda p: (p.write_text("hello, I am a text file\n"), p)[1],
        ["is not a safetensors file"],
    ),
    ("too-short", lambda p: (p.write_bytes(b"\x01\x02"), p)[1], ["is not a safetensors file: it has only 2 bytes"]),
    (
        "pickle-checkpoint",
        lambda p: (torch.save({"head.weight": torch.zeros(2, 2)}, p), p)[1],
        ["is a pickle / torch.save checkpoint", "never unpickles"],
    ),
    (
        "plain-safetensors",
        lambda p: _write_safetensors(p, None, {"w": torch.zeros(2)}),
        [f"is not a dlfd_core model file (no {FORMAT_NAME} header)"],
    ),
    (
        "tensor-shape-mismatch",
        lambda p: _model_file(p, _config(), _head(shape_in=64)),
        ["does not fit its own config", "'head.weight' has shape [30, 64], the architecture needs [30, 128]"],
    ),
    (
        "unexpected-tensor",
        lambda p: _model_file(p, _config(), {**_head(), "evil": torch.zeros(1)}),
        ["does not fit its own config", "unexpected tensors ['evil']"],
    ),
    (
        "missing-head",
        lambda p: _model_file(p, _config(), {}),
        ["does not fit its own config", "missing tensors ['head.bias', 'head.weight']"],
    ),
    (
        "checksum",
        lambda p: _model_file(p, _config(), _head()),
        ["is corrupted: its tensor checksum does not match"],
    ),
    ("a-folder", lambda p: (p.mkdir(), p)[1], ["is not a file; give a .safetensors model file"]),
    ("missing", lambda p: p, ["model file not found"]),
]


@pytest.mark.parametrize(("make", "expected"), [c[1:] for c in MODEL_CASES], ids=[c[0] for c in MODEL_CASES])
def test_hostile_model_file(capsys, tmp_path: Path, make: Callable[[Path], Path], expected: list[str]) -> None:
    path = make(tmp_path / "model.safetensors")
    _run_hostile(capsys, tmp_path, ["evaluate", "--model", str(path)], [str(path), *expected])


def test_weights_path_in_a_model_file_is_never_opened(capsys, tmp_path: Path, monkeypatch) -> None:
    import dlfd_core.models.dlib_resnet as dlib_resnet

    bait = tmp_path / "bait.safetensors"
    path = _model_file(tmp_path / "model.safetensors", _config(backbone_kwargs={"weights": str(bait)}))
    loaded: list[Any] = []
    real_load = dlib_resnet.load_weights
    monkeypatch.setattr(dlib_resnet, "load_weights", lambda model, file, **kw: (loaded.append(file), real_load)[1])
    argv = ["forget", "--model", str(path), "--forget-identities", "s7"]
    _run_hostile(capsys, tmp_path, argv, ["backbone_kwargs 'weights' names a file to load"])
    assert loaded == []


def test_gold_model_with_huge_head_is_refused(capsys, tmp_path: Path) -> None:
    gold = _model_file(tmp_path / "gold.safetensors", _config(num_classes=10**12))
    argv = ["forget", "--forget-identities", "s7", "--gold", str(gold), "--out", str(tmp_path / "u.safetensors")]
    _run_hostile(capsys, tmp_path, argv, [str(gold), "num_classes must be an integer from 2 to 100000"])


def test_model_with_other_class_count_is_refused(capsys, tmp_path: Path) -> None:
    path = _model_file(tmp_path / "five.safetensors", _config(num_classes=5), _head(classes=5))
    expected = [f"--model {path} has 5 classes, but the split has 30 known identities"]
    _run_hostile(capsys, tmp_path, ["evaluate", "--model", str(path)], expected)


# --------------------------------------------------------------------------------------------------- arguments

# (case id, argv, expected words)
ARGUMENT_CASES: list[tuple[str, list[str], list[str]]] = [
    ("split-seed-negative", ["split", "--seed", "-1"], ["argument --seed", "from 0 to 4294967295", "got '-1'"]),
    ("split-seed-too-big", ["split", "--seed", "4294967296"], ["argument --seed", "got '4294967296'"]),
    ("split-seed-float", ["split", "--seed", "1e999"], ["argument --seed", "got '1e999'"]),
    ("split-seed-text", ["split", "--seed", "abc"], ["argument --seed", "got 'abc'"]),
    ("split-num-unseen", ["split", "--num-unseen", "-2"], ["argument --num-unseen", "from 0 to"]),
    ("split-unknown-identity", ["split", "--forget-identities", "s99"], ["'s99' is not a known identity"]),
    ("split-too-many-instances", ["split", "--forget-instances", "5000"], ["Can forget between 1 and", "got 5000"]),
    ("forget-seed", ["forget", "--forget-identities", "s7", "--forget-seed", "-3"], ["argument --forget-seed"]),
    ("forget-run-seed", ["forget", "--forget-identities", "s7", "--seed", "9" * 50], ["argument --seed"]),
    ("train-epochs-zero", ["train", "--epochs", "0"], ["argument --epochs", "from 1 to 10000", "got '0'"]),
    ("train-unknown-backbone", ["train", "--backbone", "vgg"], ["unknown --backbone 'vgg'"]),
    ("device-banana", ["forget", "--forget-identities", "s7", "--device", "banana"], ["--device 'banana'"]),
    ("bench-device-banana", ["bench", "--device", "banana"], ["--device 'banana' is not a device"]),
    ("set-epochs-abc", ["forget", "--forget-identities", "s7", "--set", "epochs=abc"], ["epochs", "whole number"]),
    ("set-unknown", ["forget", "--forget-identities", "s7", "--set", "unknown=1"], ["dlfd has no setting unknown"]),
    ("set-lr-nan", ["forget", "--forget-identities", "s7", "--set", "lr=nan"], ["--set lr=nan", "finite number"]),
    ("set-lr-NaN", ["forget", "--forget-identities", "s7", "--set", "lr=NaN"], ["--set lr=NaN", "finite number"]),
    ("set-lr-inf", ["forget", "--forget-identities", "s7", "--set", "lr=inf"], ["--set lr=inf", "finite number"]),
    ("set-lr-1e999", ["forget", "--forget-identities", "s7", "--set", "lr=1e999"], ["--set lr=1e999", "finite"]),
    ("set-no-equals", ["forget", "--forget-identities", "s7", "--set", "steps"], ["must look like name=value"]),
    ("set-twice", ["forget", "--forget-identities", "s7", "--set", "lr=0.1", "lr=0.2"], ["--set lr is given twice"]),
    ("unknown-method", ["forget", "--forget-identities", "s7", "--method", "nope"], ["unknown unlearning method"]),
    ("forget-nothing", ["forget"], ["say what to forget"]),
    ("forget-identities-empty", ["forget", "--forget-identities", ""], ["--forget-identities", "names no identity"]),
    ("forget-identities-comma", ["forget", "--forget-identities", " , "], ["names no identity"]),
    ("forget-identities-unknown", ["forget", "--forget-identities", "s7,s99"], ["'s99' is not a known identity"]),
    ("forget-identities-unseen", ["forget", "--forget-identities", "s2"], ["'s2'", "an unseen identity"]),
    ("forget-identities-validation", ["forget", "--forget-identities", "s3"], ["'s3'", "a validation identity"]),
    ("forget-identities-twice", ["forget", "--forget-identities", "s7,s7"], ["listed twice", "s7"]),
    ("forget-instances-zero", ["forget", "--forget-instances", "0"], ["argument --forget-instances", "got '0'"]),
    ("forget-instances-negative", ["forget", "--forget-instances", "-4"], ["argument --forget-instances"]),
    ("forget-instances-too-many", ["forget", "--forget-instances", "151"], ["between 1 and 150", "got 151"]),
    ("mode-not-supported", ["forget", "--method", "class_reset", "--forget-instances", "5"], ["identity forgetting"]),
    ("split-holdout-negative", ["split", "--holdout-per-identity", "-1"], ["argument --holdout-per-identity"]),
    ("bench-seeds-zero", ["bench", "--seeds", "0"], ["argument --seeds", "seeds 0..N-1", "got '0'"]),
    ("bench-seeds-backwards", ["bench", "--seeds", "4-1"], ["argument --seeds", "a range A-B", "got '4-1'"]),
    ("bench-seeds-repeated", ["bench", "--seeds", "1,1"], ["argument --seeds", "a list A,B,C", "got '1,1'"]),
    ("bench-seeds-words", ["bench", "--seeds", "two"], ["argument --seeds", "got 'two'"]),
    ("bench-instances-zero", ["bench", "--instances", "0"], ["argument --instances"]),
    ("bench-unknown-method", ["bench", "--methods", "dlfd,nope"], ["unknown unlearning method 'nope'"]),
    ("bench-unknown-backbone", ["bench", "--backbones", "vgg"], ["unknown --backbones entry 'vgg'"]),
    ("bench-unknown-setting", ["bench", "--settings", "both"], ["unknown bench setting 'both'"]),
    ("bench-set-unknown", ["bench", "--methods", "dlfd", "--set", "zzz=1"], ["--set zzz: none of the chosen"]),
    ("bench-set-lr-inf", ["bench", "--set", "lr=inf"], ["--set lr=inf", "finite number"]),
    ("unknown-option", ["evaluate", "--frobnicate"], ["unrecognized arguments: --frobnicate"]),
    ("no-command", [], ["the following arguments are required: command"]),
    ("unknown-command", ["explode"], ["invalid choice: 'explode'"]),
    ("revision-without-hub", ["data", "--revision", "main"], ["--revision only applies to --hub"]),
]


@pytest.mark.parametrize(("argv", "expected"), [c[1:] for c in ARGUMENT_CASES], ids=[c[0] for c in ARGUMENT_CASES])
def test_hostile_arguments(capsys, tmp_path: Path, argv: list[str], expected: list[str]) -> None:
    outputs = {
        "split": ["--out", str(tmp_path / "s.json")],
        "train": ["--out", str(tmp_path / "m.safetensors")],
        "forget": ["--no-gold", "--json", str(tmp_path / "f.json"), "--out", str(tmp_path / "u.safetensors")],
        "bench": ["--json", str(tmp_path / "b.json"), "--markdown", str(tmp_path / "b.md")],
        "evaluate": ["--json", str(tmp_path / "e.json")],
    }
    extra = outputs.get(argv[0], []) if argv else []
    _run_hostile(capsys, tmp_path, [*argv, *extra], expected)


def test_device_cuda_without_cuda(capsys, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        argv = ["forget", "--forget-identities", "s7", "--device", f"cuda:{torch.cuda.device_count()}"]
        _run_hostile(capsys, tmp_path, argv, ["CUDA device(s)"])
    else:
        argv = ["forget", "--forget-identities", "s7", "--device", "cuda", "--json", str(tmp_path / "f.json")]
        _run_hostile(capsys, tmp_path, argv, ["--device cuda asks for CUDA, but CUDA is not available here"])


# --------------------------------------------------------------------------------------------------- datasets


def test_folder_that_does_not_exist(capsys, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    _run_hostile(capsys, tmp_path, ["data", "--folder", str(missing)], [f"Dataset folder {missing} does not exist"])


def test_folder_without_images(capsys, tmp_path: Path) -> None:
    (tmp_path / "people" / "alice").mkdir(parents=True)
    (tmp_path / "people" / "alice" / "notes.txt").write_text("no images here")
    argv = ["forget", "--folder", str(tmp_path / "people"), "--forget-identities", "alice", "--no-gold"]
    _run_hostile(capsys, tmp_path, argv, ["No identities found in", "people"])


def test_folder_that_is_a_file(capsys, tmp_path: Path) -> None:
    file = tmp_path / "faces.zip"
    file.write_bytes(b"PK")
    _run_hostile(capsys, tmp_path, ["data", "--folder", str(file)], ["is a file, not a folder"])


def test_hub_offline_fails_at_once(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    err = _run_hostile(
        capsys, tmp_path, ["data", "--hub", "nobody-here/no-such-faces"], ["'nobody-here/no-such-faces'"]
    )
    assert "not in the local cache" in err or "Could not download" in err


# --------------------------------------------------------------------------------------------------- outputs


def test_output_folder_is_a_file(capsys, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("I am a file")
    out = tmp_path / "afile" / "sub" / "split.json"
    _run_hostile(capsys, tmp_path, ["split", "--out", str(out)], ["--out", "because", "afile is a file, not a folder"])


def test_output_is_a_folder(capsys, tmp_path: Path) -> None:
    _run_hostile(capsys, tmp_path, ["split", "--out", str(tmp_path)], ["--out", "is a folder; give a file path"])


def test_json_output_under_a_file(capsys, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("I am a file")
    out = tmp_path / "afile" / "x.json"
    _run_hostile(capsys, tmp_path, ["evaluate", "--json", str(out)], ["--json", "is a file, not a folder"])


def test_missing_output_folders_are_created(capsys, tmp_path: Path) -> None:
    """The documented rule: a missing parent folder is created, and only the finished file appears in it."""
    out = tmp_path / "new" / "deeper" / "split.json"
    assert main(["split", "--seed", "3", "--out", str(out)]) == 0
    assert "error" not in capsys.readouterr().err
    assert _files(tmp_path) == {"new", "new/deeper", "new/deeper/split.json"}
    assert json.loads(out.read_text())["seed"] == 3
    assert "missing parent folders are created" in " ".join(_help(capsys, ["split", "--help"]).split())


def test_failed_write_leaves_no_partial_file(capsys, tmp_path: Path, monkeypatch) -> None:
    def failing_replace(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    out = tmp_path / "new" / "split.json"
    before = _files(tmp_path)
    assert main(["split", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: cannot write --out {out}: No space left on device\n"
    assert _files(tmp_path) - before <= {"new"} and not out.exists()
    assert not list(tmp_path.rglob("*.tmp"))


def _help(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    return capsys.readouterr().out


# --------------------------------------------------------------------------------------------------- bench --render

RENDER_CASES: list[tuple[str, str | None, list[str]]] = [
    ("missing", None, ["--render", "no such file"]),
    ("not-json", "{oops", ["--render", "is not JSON"]),
    ("nested", "[" * 100_000 + "]" * 100_000, ["--render", "nested too deeply"]),
    ("wrong-shape", json.dumps({"records": []}), ["is not a saved bench --json file"]),
    (
        "bad-records",
        json.dumps({"command": "x", "environment": {}, "seconds": 1, "records": [1]}),
        ["has malformed bench records"],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in RENDER_CASES], ids=[c[0] for c in RENDER_CASES])
def test_hostile_bench_render(capsys, tmp_path: Path, text: str | None, expected: list[str]) -> None:
    path = tmp_path / "bench.json"
    if text is not None:
        path.write_text(text)
    _run_hostile(capsys, tmp_path, ["bench", "--render", str(path), "--markdown", str(tmp_path / "t.md")], expected)


# --------------------------------------------------------------------------------------------------- a real process


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["evaluate", "--split", "{deep}"], "nested too deeply"),
        (["forget", "--forget-identities", "s7", "--device", "banana"], "is not a device"),
        (["split", "--seed", "-1", "--out", "{tmp}/s.json"], "argument --seed"),
    ],
    ids=["deep-split", "device", "seed"],
)
def test_real_process_prints_one_line(tmp_path: Path, argv: list[str], expected: str) -> None:
    """Through ``python -m dlfd_core`` with its real logging set-up: still one line and exit code 2."""
    deep = tmp_path / "deep.json"
    deep.write_text(_DEEP)
    args = [a.replace("{deep}", str(deep)).replace("{tmp}", str(tmp_path)) for a in argv]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "dlfd_core", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert expected in result.stderr
    assert _files(tmp_path) == {"deep.json"}


def _saved_bench(path: Path, seed: int, models: Sequence[str]) -> str:
    """A small saved bench file: one identity run per model at ``seed``."""
    records = [
        {
            "backbone": "dlib_resnet",
            "setting": "identity",
            "seed": seed,
            "model": model,
            "forget": ["s1"],
            "settings": {},
            "metrics": {"retain_test_acc": 0.5 + 0.1 * seed + 0.01 * index},
        }
        for index, model in enumerate(models)
    ]
    env = {"processor": "x", "cpus": 1, "threads": 1, "cuda": None, "torch": "t", "date": "d"}
    path.write_text(json.dumps({"command": f"run {seed}", "environment": env, "seconds": 60, "records": records}))
    return str(path)


def test_render_reads_several_files_as_one_run(capsys, tmp_path: Path) -> None:
    first = _saved_bench(tmp_path / "a.json", 0, ["original", "gold", "dlfd"])
    second = _saved_bench(tmp_path / "b.json", 1, ["original", "gold", "dlfd"])
    assert main(["bench", "--render", first, second]) == 0
    out = capsys.readouterr().out
    assert "2 seeds: 0, 1" in out and "run 0 + run 1" in out
    assert "| dlfd | 0.570 ± 0.071 |" in out  # (0.52 + 0.62) / 2, sample std of the two


def test_render_keeps_a_shared_original_once_and_refuses_a_method_run_twice(capsys, tmp_path: Path) -> None:
    first = _saved_bench(tmp_path / "a.json", 0, ["original", "gold", "dlfd"])
    other_method = _saved_bench(tmp_path / "b.json", 0, ["original", "gold", "dlfd_paper"])
    assert main(["bench", "--render", first, other_method]) == 0
    assert "| dlfd_paper |" in capsys.readouterr().out
    _run_hostile(capsys, tmp_path, ["bench", "--render", first, first], ["both hold the run", "dlfd"])
