"""The common interface of every unlearning method: its data, its settings, one run, one result.

A method is a frozen dataclass whose fields are its hyper-parameters (typed, with the paper's defaults scaled to
this project's models, each with a ``help`` text the app and CLI show). :meth:`Method.run` works on a deep copy of
the caller's model, so the caller's model is never changed, and returns an :class:`UnlearnResult`.

Subclasses implement :meth:`Method._unlearn` and use the :class:`RunContext` it receives for everything that
every method needs in the same way: seeded batching, the optimiser over the trainable set, mixed precision on
CUDA, progress reporting and cooperative cancellation (polled at every step).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import numbers
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, overload

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_seed as _check_seed
from ..checks import read_flag, read_number, read_whole, shown
from ..errors import CancelledError, DLFDError, UnknownNameError
from ..progress import ProgressFn, no_progress
from ..registry import Registry

log = logging.getLogger(__name__)

__all__ = [
    "Method",
    "SuffixView",
    "frozen_prefix",
    "RunContext",
    "UnlearnData",
    "UnlearnResult",
    "check_seed",
    "coerce_settings",
    "create_method",
    "method_class",
    "method_names",
    "register_method",
    "reset_classes",
    "setting",
]


def setting(default: Any, help: str, **limits: Any) -> Any:  # noqa: A002 - mirrors argparse's name
    """A method's hyper-parameter: a dataclass field with a help text and optional ``min``/``max``/``choices``.

    Every number setting has both ``min`` and ``max`` (generous but finite: a form or a command line must not be
    able to start a run of 10**9 epochs). ``display`` is an optional human form of the default for forms and
    tables (e.g. ``"1/255 ≈ 0.00392"``); without it :meth:`Method.fields_info` formats the default itself.
    """
    return field(default=default, metadata={"help": help, **limits})


def check_seed(seed: Any) -> int:
    """``seed`` as an ``int`` in ``[0, 2**32 - 1]`` (see :func:`dlfd_core.checks.check_seed`).

    Raises:
        DLFDError: not a whole number (bools, text, 2.5, NaN and infinities are refused too), or out of range.
    """
    return _check_seed(seed, "the seed")


def _display(value: Any) -> str:
    """A setting's value as a person reads it: floats to 4 significant digits, booleans as true / false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@dataclass(frozen=True, eq=False)
class UnlearnData:
    """What an unlearning method may use: model inputs as ``float32 [N, 3, S, S]`` in ``[0, 1]`` plus class labels.

    Attributes:
        retain_inputs, retain_labels: the training photos the model keeps.
        forget_inputs, forget_labels: the training photos to forget.
        num_classes: the model's number of classes.
        forget_mode: ``"identity"`` (whole people) or ``"instance"`` (some photos of people who stay).
        forget_classes: classes left with no retain photo (the forgotten people, identity mode).
        holdout_inputs, holdout_labels: photos of known people that the original model never saw (TMU's twin
            problem; may be empty).
        nonmember_inputs: photos that were never training data, for methods that watch a membership signal
            (validation data, never scored by the evaluation, see :meth:`~dlfd_core.data.Split.validation_keys`):
            the validation people's photos in identity mode, the holdout photos in instance mode (may be empty).
        prefix: the frozen backbone prefix's outputs for each of those sets (``"retain"``, ``"forget"``,
            ``"holdout"``, ``"nonmember"``), when the caller has them cached; see :meth:`Method.run`.
    """

    retain_inputs: torch.Tensor
    retain_labels: torch.Tensor
    forget_inputs: torch.Tensor
    forget_labels: torch.Tensor
    num_classes: int
    forget_mode: str
    forget_classes: tuple[int, ...] = ()
    holdout_inputs: torch.Tensor | None = None
    holdout_labels: torch.Tensor | None = None
    nonmember_inputs: torch.Tensor | None = None
    prefix: Mapping[str, torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if self.forget_mode not in {"identity", "instance"}:
            raise DLFDError(f"forget_mode must be 'identity' or 'instance', got {self.forget_mode!r}")
        for name in ("retain", "forget"):
            x, y = getattr(self, f"{name}_inputs"), getattr(self, f"{name}_labels")
            if x.ndim != 4 or len(x) != len(y):
                raise DLFDError(f"{name} inputs must be [N, 3, S, S] with one label each")
        if len(self.forget_inputs) == 0:
            raise DLFDError("nothing to forget: the forget set is empty")
        if len(self.retain_inputs) == 0:
            raise DLFDError("the retain set is empty: at least one photo must be kept")

    @property
    def has_holdout(self) -> bool:
        return self.holdout_inputs is not None and len(self.holdout_inputs) > 0

    _PARTS: ClassVar[tuple[str, ...]] = ("retain", "forget", "holdout", "nonmember")

    def with_prefix(
        self, model: nn.Module, device: torch.device | str = "cpu", parts: Sequence[str] = _PARTS
    ) -> UnlearnData:
        """This data with the frozen-prefix outputs under ``model`` of the sets ``parts`` (those already cached, of
        any set, are kept)."""
        from ..models.stages import run_prefix

        cached = dict(self.prefix or {})
        for part in parts:
            inputs = getattr(self, f"{part}_inputs")
            if inputs is not None and part not in cached:
                cached[part] = run_prefix(model, inputs, device)
        return dataclasses.replace(self, prefix=cached)

    def on_prefix(self) -> UnlearnData:
        """This data with the prefix outputs *as* the inputs (for a :class:`SuffixView` of the model); a set without
        prefix outputs is left out (``None``)."""
        assert self.prefix is not None and {"retain", "forget"} <= set(self.prefix)
        inputs = {f"{part}_inputs": self.prefix.get(part) for part in self._PARTS}
        labels = {} if "holdout" in self.prefix else {"holdout_labels": None}
        return dataclasses.replace(self, prefix=None, **inputs, **labels)

    @classmethod
    def from_split(
        cls,
        aligned: Any,
        split: Any,
        *,
        input_size: int,
        prefix: Callable[[Sequence[str]], torch.Tensor | None] | None = None,
    ) -> UnlearnData:
        """The data of a split with a forget request, resized to the model's ``input_size``.

        ``prefix(keys)``: the frozen prefix's cached outputs for those photos, or ``None`` (kept in :attr:`prefix`
        only when every set has them)."""
        from ..data.splits import aligned_for
        from ..data.transforms import crops_to_tensor

        if split.forget_mode == "none":
            raise DLFDError("choose identities or photos to forget first")

        def part(keys: Sequence[str], allow_unseen: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
            crops, labels = aligned_for(aligned, split, keys, allow_unseen=allow_unseen)
            return crops_to_tensor(crops, input_size), torch.as_tensor(labels, dtype=torch.long)

        retain_x, retain_y = part(split.retain_train_keys)
        forget_x, forget_y = part(split.forget_train_keys)
        holdout = part(split.retain_holdout_keys) if split.retain_holdout_keys else (None, None)
        keys = split.validation_keys(aligned)["nonmembers"]
        nonmember = part(keys, allow_unseen=True)[0] if keys else None
        retained = set(retain_y.tolist())
        forget_classes = tuple(sorted({c for c in forget_y.tolist() if c not in retained}))
        cached: dict[str, torch.Tensor] | None = None
        if prefix is not None:
            sets = {
                "retain": split.retain_train_keys,
                "forget": split.forget_train_keys,
                "holdout": split.retain_holdout_keys or None,
                "nonmember": keys or None,
            }
            found = {name: prefix(list(k)) for name, k in sets.items() if k}
            cached = found if all(v is not None for v in found.values()) else None
        return cls(
            retain_inputs=retain_x,
            retain_labels=retain_y,
            forget_inputs=forget_x,
            forget_labels=forget_y,
            num_classes=split.num_classes,
            forget_mode=split.forget_mode,
            forget_classes=forget_classes,
            holdout_inputs=holdout[0],
            holdout_labels=holdout[1],
            nonmember_inputs=nonmember,
            prefix=cached,
        )


@dataclass(frozen=True)
class UnlearnResult:
    """What :meth:`Method.run` returns.

    Attributes:
        model: the unlearned model (a new object, in eval mode, on the run's device).
        method: the method's registry name.
        settings: every hyper-parameter of the run.
        seed: the run's seed.
        history: one dict per logged step (``step`` plus the method's own values, e.g. ``loss``).
        seconds: wall time of the run.
        device: where it ran.
        rate_scale: the factors on the SGD rates in ``settings`` that the run used, (backbone, head): the model's
            training recipe against its backbone's default (:func:`~dlfd_core.train.rate_scale`).
    """

    model: nn.Module
    method: str
    settings: dict[str, Any]
    seed: int
    history: tuple[dict[str, float], ...]
    seconds: float
    device: str
    rate_scale: tuple[float, float] = (1.0, 1.0)


class RunContext:
    """Per-run services for a method: device, seeded randomness, batching, optimiser, progress, cancellation."""

    def __init__(
        self,
        method: Method,
        *,
        device: torch.device,
        seed: int,
        progress: ProgressFn,
        should_stop: Callable[[], bool] | None,
        rate_scale: tuple[float, float] = (1.0, 1.0),
    ) -> None:
        self.method = method
        self.device = device
        self.seed = seed
        #: (backbone, head) factors on the method's SGD rates: the model's recipe against its backbone's default
        #: (:func:`~dlfd_core.train.rate_scale`) for a rate left at the method's default, 1 for a rate the caller set;
        #: a method whose rates are Adam's runs them as set (Adam's steps do not grow with the rates of SGD's recipe)
        defaults = {f.name: f.default for f in dataclasses.fields(method)}
        sgd = method.optimizer == "sgd"
        self.rate_scale = (
            rate_scale[0] if sgd and getattr(method, "lr", None) == defaults.get("lr") else 1.0,
            rate_scale[1] if sgd and getattr(method, "head_lr", None) == defaults.get("head_lr") else 1.0,
        )
        self.generator = torch.Generator().manual_seed(seed)
        self._progress = progress
        self._should_stop = should_stop
        self.total_steps = 1
        self.steps_done = 0
        self.history: list[dict[str, float]] = []
        self.started = time.perf_counter()

    # -- progress and cancellation ------------------------------------------------------------------------------
    def plan(self, total_steps: int) -> None:
        """Declare how many :meth:`step` calls the run will make (for the progress fraction)."""
        self.total_steps = max(1, int(total_steps))

    def check(self) -> None:
        """Raise :class:`CancelledError` when the caller asked to stop."""
        if self._should_stop is not None and self._should_stop():
            raise CancelledError(f"{self.method.name} was cancelled; the original model is unchanged")

    def step(self, message: str = "", **values: float) -> None:
        """One unit of work done: record ``values`` in the history (with ``elapsed``, the seconds since the run
        started), report progress, poll for cancellation."""
        self.steps_done += 1
        if values:
            elapsed = time.perf_counter() - self.started
            self.history.append(
                {"step": float(self.steps_done), **{k: float(v) for k, v in values.items()}, "elapsed": elapsed}
            )
        self._progress(min(self.steps_done / self.total_steps, 0.999), message)
        self.check()

    def progress_fn(self) -> ProgressFn:
        """The run's progress callback, for code that reports a plain fraction (e.g. ``train_classifier``).

        Fractions are capped below 1.0: :meth:`Method.run` reports 1.0 itself when the method has finished.
        """

        def report(fraction: float, message: str = "") -> None:
            self._progress(min(max(float(fraction), 0.0), 0.999), message)

        return report

    def should_stop_fn(self) -> Callable[[], bool]:
        """The run's cancellation poll, for code that takes a plain ``should_stop`` callable."""
        should_stop = self._should_stop
        return should_stop if should_stop is not None else (lambda: False)

    # -- randomness and data -------------------------------------------------------------------------------------
    def permutation(self, n: int) -> torch.Tensor:
        return torch.randperm(n, generator=self.generator)

    def index_batches(self, n: int, batch_size: int, *, shuffle: bool = True) -> Iterator[torch.Tensor]:
        """One pass over ``range(n)`` in batches of indices, in a seeded order (what :meth:`batches` draws)."""
        order = self.permutation(n) if shuffle else torch.arange(n)
        for first in range(0, len(order), batch_size):
            yield order[first : first + batch_size]

    def batches(
        self, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int, *, shuffle: bool = True
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass over ``(inputs, labels)`` in batches on the run's device, in a seeded order."""
        for index in self.index_batches(len(inputs), batch_size, shuffle=shuffle):
            yield self.to_device(inputs[index]), self.to_device(labels[index])

    def cycle_indices(self, n: int, batch_size: int) -> Iterator[torch.Tensor]:
        """Batches of indices into ``range(n)`` forever, reshuffled at each pass (what :meth:`cycle` draws)."""
        while True:
            yield from self.index_batches(n, batch_size)

    def cycle(
        self, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of ``(inputs, labels)`` forever, reshuffled at each pass (to pair a small set with a large one)."""
        while True:
            yield from self.batches(inputs, labels, batch_size)

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(self.device, non_blocking=True)

    def random_labels(self, labels: torch.Tensor, num_classes: int, exclude: Sequence[int] = ()) -> torch.Tensor:
        """A uniformly random class per sample, never the sample's own class nor any class in ``exclude``."""
        allowed = torch.ones(len(labels), num_classes, dtype=torch.bool)
        allowed[torch.arange(len(labels)), labels.cpu()] = False
        if exclude:
            allowed[:, list(exclude)] = False
        if not bool(allowed.any(1).all()):
            raise DLFDError("no other class to relabel to")
        weights = allowed.float()
        return torch.multinomial(weights, 1, generator=self.generator).squeeze(1).to(labels.device)

    # -- optimisation --------------------------------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bfloat16 autocast on CUDA when the method's ``amp`` is on; a no-op on the CPU."""
        if self.device.type == "cuda" and getattr(self.method, "amp", False):
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def sgd(
        self,
        model: nn.Module,
        *,
        lr: float | None = None,
        head_lr: float | None = None,
        momentum: float | None = None,
        weight_decay: float | None = None,
        trainable: str | None = None,
    ) -> torch.optim.SGD:
        """SGD over the trainable set, the head at ``head_lr`` and the backbone at ``lr`` (the method's by default),
        each times :attr:`rate_scale`, the model's recipe against the default one."""
        m = self.method
        lr = (m.lr if lr is None else lr) * self.rate_scale[0]
        head_lr = (m.head_lr if head_lr is None else head_lr) * self.rate_scale[1]
        groups = self._groups(model, trainable, lr, head_lr)
        return torch.optim.SGD(
            groups,
            momentum=m.momentum if momentum is None else momentum,
            weight_decay=m.weight_decay if weight_decay is None else weight_decay,
        )

    def adam(
        self, model: nn.Module, *, lr: float | None = None, head_lr: float | None = None, weight_decay: float = 0.0
    ) -> torch.optim.Adam:
        """Adam over the trainable set, the head at ``head_lr`` and the backbone at ``lr`` (the method's by default)."""
        return torch.optim.Adam(self._groups(model, None, lr, head_lr), weight_decay=weight_decay)

    def _groups(
        self, model: nn.Module, trainable: str | None, lr: float | None, head_lr: float | None
    ) -> list[dict[str, Any]]:
        from ..train import parameter_groups

        m = self.method
        return parameter_groups(
            model,
            trainable or m.trainable,
            lr=m.lr if lr is None else lr,
            head_lr=m.head_lr if head_lr is None else head_lr,
        )

    @staticmethod
    def update(
        optimizer: torch.optim.Optimizer, loss: torch.Tensor, before_step: Callable[[], None] | None = None
    ) -> float:
        """One optimiser step on ``loss`` (:func:`~dlfd_core.train.optimiser_step`); refuses a non-finite loss."""
        from ..train import optimiser_step

        return optimiser_step(optimizer, loss, before_step)


def frozen_prefix(model: nn.Module, trainable: str) -> bool:
    """Whether training ``model``'s ``trainable`` set leaves its backbone's prefix (and so the prefix's outputs)
    unchanged: only the last stage trains, the backbone declares ``prefix`` / ``suffix`` / ``last_stage_parameters``,
    and it has no layer that behaves differently in training (batch norm, dropout)."""
    backbone = getattr(model, "backbone", None)
    if trainable != "last" or backbone is None:
        return False
    if not all(callable(getattr(backbone, name, None)) for name in ("prefix", "suffix", "last_stage_parameters")):
        return False
    stateful = (nn.modules.batchnorm._BatchNorm, nn.Dropout, nn.Dropout2d, nn.AlphaDropout)
    return not any(isinstance(m, stateful) for m in backbone.modules())


class _SuffixBackbone(nn.Module):
    """A backbone seen from its prefix's outputs: ``forward(a) = backbone.suffix(a)``."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.inner = backbone
        self.embedding_dim = backbone.embedding_dim
        self.input_size = backbone.input_size

    def forward(self, activations: torch.Tensor) -> torch.Tensor:
        return self.inner.suffix(activations)

    def last_stage_parameters(self) -> list[nn.Parameter]:
        return list(self.inner.last_stage_parameters())


class SuffixView(nn.Module):
    """A classifier seen from its frozen prefix's outputs: ``forward(a) = head(backbone.suffix(a))``.

    It shares every parameter with ``model`` (training the view trains the model); :meth:`Method.run` gives it to a
    :attr:`Method.prefix_safe` method together with the prefix outputs as the data's inputs.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.backbone = _SuffixBackbone(model.backbone)
        self.head = model.head
        for name in ("num_classes", "embedding_dim", "input_size", "backbone_name", "pretrained", "metadata"):
            if hasattr(model, name):
                setattr(self, name, getattr(model, name))

    @property
    def output_layer(self) -> nn.Linear:
        """The head's final linear layer (as :class:`~dlfd_core.models.FaceClassifier` has it)."""
        return self.model.output_layer

    def features(self, activations: torch.Tensor) -> torch.Tensor:
        return self.backbone(activations)

    def forward(self, activations: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(activations))


M = TypeVar("M", bound=type)


def _check_method(name: str, cls: type[Method]) -> None:
    """A method class may be registered only with its own ``name`` and its own docstring (a dataclass without one
    gets its signature as ``__doc__``, which the app would show users as the method's help)."""
    if getattr(cls, "name", "") != name:
        raise TypeError(f"{cls.__name__} is registered as {name!r} but its class attribute 'name' is {cls.name!r}")
    doc = (cls.__dict__.get("__doc__") or "").strip()
    if not doc or doc.startswith(f"{cls.__name__}("):
        raise TypeError(f"{cls.__name__} needs a docstring: its first line names the method and its paper")


METHODS: Registry[type[Method]] = Registry("unlearning method", check=_check_method)
"""Every method class by name, in the order the app and the tables list them (:class:`~dlfd_core.registry.Registry`)."""


@overload
def register_method(cls: M, *, force: bool = False) -> M: ...
@overload
def register_method(cls: None = None, *, force: bool = False) -> Callable[[M], M]: ...
def register_method(cls: Any = None, *, force: bool = False) -> Any:
    """Make a method class available by its ``name``: as a class decorator (``@register_method``), or a call
    (``register_method(MyMethod, force=True)`` replaces a registered one).

    Raises:
        TypeError: the class has no ``name``, or no docstring of its own.
        ValueError: another class is registered under its name and ``force`` is False.
    """
    if cls is None:
        return lambda entry: register_method(entry, force=force)
    if not getattr(cls, "name", ""):
        raise TypeError(f"{cls.__name__} needs a class attribute 'name'")
    return METHODS.register(cls.name, cls, force=force)


def method_names() -> list[str]:
    """Every registered method's name, in registration order."""
    return METHODS.names()


def method_class(name: str) -> type[Method]:
    """The class registered as ``name``.

    Raises:
        UnknownNameError: no such method; the message lists them.
    """
    return METHODS.get(name)


def create_method(name: str, **settings: Any) -> Method:
    """An instance of method ``name`` with ``settings`` overriding its defaults.

    Values must already have their setting's type (``True``, not ``"true"``); text from a form or a command line
    goes through :func:`coerce_settings` first.

    Raises:
        UnknownNameError: no such method, or a setting it does not have.
        DLFDError: a setting of the wrong type, not finite, or outside its allowed range.
    """
    cls = method_class(name)
    _check_known(cls, settings)
    return cls(**settings)


def _check_known(cls: type[Method], settings: Mapping[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise UnknownNameError(f"{cls.name} has no setting {', '.join(unknown)}; it has {', '.join(sorted(known))}")


def coerce_settings(name: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings typed by a person (form fields, ``--set k=v``) as each setting's own type, for :func:`create_method`.

    * bool: ``True``/``False``, or the text ``"true"``/``"false"``/``"1"``/``"0"`` in any case (never Python's
      ``bool("false")``, which is ``True``);
    * int: a whole number, also written as ``3.0`` or ``"3"``; ``2.5``, ``True``, NaN and infinities are refused,
      never rounded;
    * float: a number or its text (``"1e-3"``); NaN and infinities are refused;
    * text: text only.

    Ranges are checked by the method itself when it is created.

    Raises:
        UnknownNameError: no such method, or a setting it does not have.
        DLFDError: a value that does not read as its setting's type; the message names the setting.
    """
    cls = method_class(name)
    _check_known(cls, settings)
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    return {key: _coerce(cls.name, key, defaults[key], value) for key, value in settings.items()}


def _coerce(method: str, key: str, default: Any, value: Any) -> Any:
    what = f"{method}: {key}"
    if isinstance(default, bool):
        return read_flag(value, what)
    if isinstance(default, int):
        return read_whole(value, what)
    if isinstance(default, float):
        return read_number(value, what)
    if isinstance(default, str) and not isinstance(value, str):
        raise DLFDError(f"{what} must be text, got {shown(value)}")
    return value


@dataclass(frozen=True, kw_only=True)
class Method:
    """Base class of unlearning methods; subclasses set ``name``/``title``/``paper`` and implement ``_unlearn``.

    The shared settings below default to the scale of this project's training recipe (:class:`~dlfd_core.train.
    TrainConfig`): the default pretrained model diverges at a few times these rates, so the papers' rates (tuned
    for models trained from scratch) are scaled down; each method documents its own. SGD rates are stated for the
    backbone's default recipe: on a model trained at other rates (LFW's shipped model: 1/5 of them) a run scales them
    by the same ratio (:func:`~dlfd_core.train.rate_scale`, recorded in :attr:`UnlearnResult.rate_scale`); a rate the
    caller sets is used as set.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    modes: ClassVar[tuple[str, ...]] = ("identity", "instance")
    optimizer: ClassVar[str] = "sgd"  # what lr / head_lr mean: SGD rates, or "adam" rates
    needs_holdout: ClassVar[bool] = False
    #: The method only passes its data's retain and forget photos through the model and trains within its
    #: ``trainable`` set (no input synthesis, no augmentation, no other architecture), so with a frozen prefix it may
    #: run on the prefix's outputs (:meth:`run`): the same computation, without the frozen layers' cost at every step.
    prefix_safe: ClassVar[bool] = False

    epochs: int = setting(1, "passes over the retain set", min=1, max=100)
    batch_size: int = setting(32, "photos per step", min=1, max=1024)
    lr: float = setting(
        5e-4,
        "learning rate of the trainable backbone layers (the default scales with the model's recipe)",
        min=0.0,
        max=1.0,
    )
    head_lr: float = setting(
        5e-3,
        "learning rate of the classification head (the default scales with the model's recipe)",
        min=0.0,
        max=10.0,
    )
    momentum: float = setting(0.9, "SGD momentum", min=0.0, max=0.999)
    weight_decay: float = setting(5e-4, "L2 weight decay", min=0.0, max=1.0)
    trainable: str = setting(
        "last", "which backbone layers may change (the recipe's set by default)", choices=("last", "all", "none")
    )
    amp: bool = setting(True, "bfloat16 mixed precision on CUDA (ignored on the CPU)")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            meta = f.metadata
            default = f.default
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise DLFDError(f"{self.name}: {f.name} must be true or false, got {shown(value)}")
            elif isinstance(default, int):
                if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                    raise DLFDError(f"{self.name}: {f.name} must be a whole number, got {shown(value)}")
                value = int(value)  # numpy integers become plain ints (JSON-able settings)
            elif isinstance(default, float):
                if isinstance(value, bool) or not isinstance(value, numbers.Real):
                    raise DLFDError(f"{self.name}: {f.name} must be a finite number, got {shown(value)}")
                try:
                    value = float(value)
                except OverflowError:  # an int beyond float's range
                    raise DLFDError(f"{self.name}: {f.name} must be a finite number; got one too large") from None
                if not math.isfinite(value):
                    raise DLFDError(f"{self.name}: {f.name} must be a finite number, got {shown(value)}")
            elif isinstance(default, str) and not isinstance(value, str):
                raise DLFDError(f"{self.name}: {f.name} must be text, got {shown(value)}")
            if value is not getattr(self, f.name):
                object.__setattr__(self, f.name, value)
            if "choices" in meta and value not in meta["choices"]:
                raise DLFDError(f"{self.name}: {f.name} must be one of {', '.join(map(str, meta['choices']))}")
            if isinstance(value, bool):
                continue
            if "min" in meta and value < meta["min"] or "max" in meta and value > meta["max"]:
                raise DLFDError(
                    f"{self.name}: {f.name} must lie in [{_display(meta.get('min'))}, {_display(meta.get('max'))}], "
                    f"got {shown(value)}"
                )

    def settings(self) -> dict[str, Any]:
        """Every hyper-parameter as a JSON-able dict."""
        return dataclasses.asdict(self)

    @classmethod
    def fields_info(cls) -> list[dict[str, Any]]:
        """Each setting's name, type, default, help and limits (what a UI needs to build a form).

        ``display`` is the default as a person reads it: the setting's own ``display`` when it declares one
        (``"1/255 ≈ 0.00392"``), else floats to 4 significant digits (``0.0005``) and booleans as true / false.
        """
        out = []
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            info = {"name": f.name, "type": type(default).__name__, "default": default, **f.metadata}
            info.setdefault("display", _display(default))
            out.append(info)
        return out

    def run(
        self,
        model: nn.Module,
        data: UnlearnData,
        *,
        device: str | torch.device = "cpu",
        seed: int = 0,
        progress: ProgressFn = no_progress,
        should_stop: Callable[[], bool] | None = None,
    ) -> UnlearnResult:
        """Unlearn ``data``'s forget set from a copy of ``model``.

        Args:
            model: a trained :class:`~dlfd_core.models.FaceClassifier`; never modified.
            data: retain / forget (and optional holdout / non-member) inputs.
            device: where to run; CUDA runs use bfloat16 autocast when ``amp`` is on.
            seed: seeds every random choice of the run (data order, noise, random labels, initialisation); a whole
                number in ``[0, 2**32 - 1]``.
            progress: called with the fraction done (rising to 1.0) and a stage message.
            should_stop: polled at every step; when it returns True the run raises :class:`CancelledError` and the
                caller's model is still the original.

        Raises:
            DLFDError: the method cannot run on this data (e.g. a whole-class method on instance forgetting), or
                ``seed`` is not a whole number in ``[0, 2**32 - 1]``.
            CancelledError: cancelled through ``should_stop``.
        """
        seed = check_seed(seed)
        if data.forget_mode not in self.modes:
            raise DLFDError(f"{self.name} supports {' and '.join(self.modes)} forgetting, not {data.forget_mode}")
        if self.needs_holdout and not data.has_holdout:
            raise DLFDError(f"{self.name} needs holdout photos (a split made with holdout_per_identity >= 1)")
        if getattr(model, "num_classes", data.num_classes) != data.num_classes:
            raise DLFDError(f"the model has {model.num_classes} classes but the data has {data.num_classes}")
        device = torch.device(device)
        from ..train import rate_scale

        ctx = RunContext(
            self, device=device, seed=seed, progress=progress, should_stop=should_stop, rate_scale=rate_scale(model)
        )
        ctx.check()
        start = time.perf_counter()
        # torch.manual_seed seeds every CUDA device: restore them all (and the CPU) afterwards
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            work = copy.deepcopy(model).to(device)
            if self.prefix_safe and frozen_prefix(work, self.trainable):
                # the frozen layers' outputs are the same at every step: compute them once (or take the caller's);
                # a prefix-safe method trains on the retain and forget sets (the others only when the caller has them)
                prefixed = data.with_prefix(work, device, parts=("retain", "forget"))
                self._unlearn(SuffixView(work), prefixed.on_prefix(), ctx)
            else:
                self._unlearn(work, data, ctx)
        for p in work.parameters():
            p.requires_grad_(True)
        work.eval()
        if not all(bool(torch.isfinite(p).all()) for p in work.parameters()):
            raise DLFDError(f"{self.name} produced non-finite weights; lower the learning rate")
        seconds = time.perf_counter() - start
        progress(1.0, "done")
        log.info("%s finished in %.2f s", self.name, seconds)
        return UnlearnResult(
            model=work,
            method=self.name,
            settings=self.settings(),
            seed=seed,
            history=tuple(ctx.history),
            seconds=seconds,
            device=str(device),
            rate_scale=ctx.rate_scale,
        )

    def _unlearn(self, model: nn.Module, data: UnlearnData, ctx: RunContext) -> None:
        """Change ``model`` (the run's own copy) in place."""
        raise NotImplementedError

    # -- helpers shared by several methods -------------------------------------------------------------------------
    def finetune_epochs(
        self,
        model: nn.Module,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        ctx: RunContext,
        epochs: int,
        stage: str,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        key: str = "loss",
    ) -> None:
        """Plain cross-entropy training on ``(inputs, labels)``; SGD with the method's settings unless given."""
        optimizer = optimizer or ctx.sgd(model)
        model.train()
        for epoch in range(epochs):
            for x, y in ctx.batches(inputs, labels, self.batch_size):
                with ctx.autocast():
                    loss = F.cross_entropy(model(x), y)
                ctx.step(f"{stage} epoch {epoch + 1}/{epochs}", **{key: ctx.update(optimizer, loss)})


@torch.no_grad()
def reset_classes(model: nn.Module, classes: Sequence[int], generator: torch.Generator) -> None:
    """Re-initialise the output rows of ``classes`` as a fresh ``nn.Linear`` would be (seeded).

    This is the state of those rows in the gold model, which never saw a photo of these classes.
    """
    if not classes:
        return
    layer = model.output_layer
    bound = 1.0 / math.sqrt(layer.in_features)
    rows = torch.as_tensor(list(classes), dtype=torch.long)
    weight = torch.empty(len(rows), layer.in_features).uniform_(-bound, bound, generator=generator)
    layer.weight[rows.to(layer.weight.device)] = weight.to(layer.weight)
    if layer.bias is not None:
        bias = torch.empty(len(rows)).uniform_(-bound, bound, generator=generator)
        layer.bias[rows.to(layer.bias.device)] = bias.to(layer.bias)
