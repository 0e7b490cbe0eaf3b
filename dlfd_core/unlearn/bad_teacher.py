"""Bad Teacher: distil from a competent teacher on retain photos and an incompetent one on forget photos.

Chundawat et al. ("Can Bad Teaching Induce Forgetting?", AAAI 2023). The student starts as a copy of the original
model. Two frozen teachers: the *competent* one is the original model, the *incompetent* one a randomly initialised
model of the same architecture. Over a shuffled mix of a random share of the retain set and the whole forget set,
each photo's target distribution is the competent teacher's softmax (retain photo) or the incompetent teacher's
(forget photo), both at temperature ``T``, and the student minimises ``KL(teacher ‖ student)`` to it. The student
thus keeps the original's behaviour on retained data and learns to answer like an untrained network on the
forgotten data.

Defaults from the authors' code (vikram2000b/bad-teaching-unlearning, ``blindspot_unlearner``): ``KL_temperature`` 1,
30% of the retain set (``random.sample(retain_train, int(0.3 * len(retain_train)))``), 1 epoch, Adam at 1e-4 on all
weights, no weight decay. Adapted:

- the incompetent teacher is built as the architecture's *untrained* form: for a registered backbone, the same
  ``create_model`` architecture with ``pretrained=False`` (the authors' ``ResNet18(pretrained=False)``; for this
  project's pretrained dlib ResNet that means random convolution weights, not the pretrained ones) and a fresh
  head; for any other backbone, a copy whose modules are re-initialised with their own ``reset_parameters``. Its
  initialisation draws from the run's seed, so a run is reproducible;
- the KL is averaged per photo (``batchmean``); the authors' ``F.kl_div`` default also divides by the number of
  classes, a constant factor that Adam's normalised steps do not see;
- the student trains the project's trainable set (``trainable="last"`` by default) with Adam (``momentum`` is not
  used), the backbone at ``lr`` and the head at ``head_lr``, both the paper's 1e-4 by default: the authors' rate for
  a pretrained ResNet-18 fine-tuned with Adam, which suits this project's pretrained model (measured on ORL: the
  forgotten person's photos all misclassified, retain test accuracy unchanged). These are Adam rates, not SGD ones;
- batch size 32 instead of 256. On a face set of a few hundred photos, one epoch over 30% of the retain set plus the
  forget set is only a few steps; ``epochs`` and ``retain_fraction`` raise the budget.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DLFDError
from .base import Method, RunContext, UnlearnData, register_method, setting

__all__ = ["BadTeacher", "bad_teacher_loss", "untrained_twin"]


def bad_teacher_loss(
    student_logits: torch.Tensor,
    competent_logits: torch.Tensor,
    incompetent_logits: torch.Tensor,
    is_forget: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """``KL(teacher ‖ student)`` per photo at temperature ``T``, averaged, the teacher chosen per photo.

    Args:
        student_logits, competent_logits, incompetent_logits: ``[B, C]``.
        is_forget: ``[B]``, true (or 1) for forget photos (incompetent teacher), false for retain photos.
        temperature: softmax temperature of all three.
    """
    forget = is_forget.bool().unsqueeze(1)  # [B, 1]
    competent = F.softmax(competent_logits.float() / temperature, dim=1)
    incompetent = F.softmax(incompetent_logits.float() / temperature, dim=1)
    target = torch.where(forget, incompetent, competent)  # [B, C]
    log_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    return F.kl_div(log_student, target, reduction="batchmean")


def untrained_twin(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """A randomly initialised model of ``model``'s architecture (CPU, eval mode, frozen), seeded by ``generator``."""
    from ..models.classifier import build_from_config, model_config

    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            twin = build_from_config(model_config(model))  # type: ignore[arg-type]
        except (DLFDError, AttributeError):
            twin = copy.deepcopy(model).cpu()
            for module in twin.modules():
                reset = getattr(module, "reset_parameters", None)
                if callable(reset):
                    reset()
    twin.eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


@register_method
@dataclass(frozen=True, kw_only=True)
class BadTeacher(Method):
    """Bad Teacher (Chundawat et al., AAAI 2023, https://arxiv.org/abs/2205.08096): competent and incompetent teachers.

    The student distils the original model on a share of the retain set and a randomly initialised model on the
    forget set.
    """

    name = "bad_teacher"
    title = "Bad Teacher"
    optimizer = "adam"
    paper = "Chundawat et al., AAAI 2023"

    epochs: int = setting(1, "passes over the retain share plus the forget set", min=1, max=100)
    lr: float = setting(1e-4, "Adam learning rate of the trainable backbone layers", min=0.0, max=1.0)
    head_lr: float = setting(1e-4, "Adam learning rate of the classification head", min=0.0, max=10.0)
    weight_decay: float = setting(0.0, "Adam weight decay (L2)", min=0.0, max=1.0)
    momentum: float = setting(0.9, "not used: this method's optimiser is Adam", min=0.0, max=0.999)
    temperature: float = setting(1.0, "softmax temperature of the KL to the teachers", min=0.01, max=100.0)
    retain_fraction: float = setting(
        0.3, "share of the retain set mixed with the forget set (drawn once)", min=0.0, max=1.0
    )

    def _unlearn(self, model: nn.Module, data: UnlearnData, ctx: RunContext) -> None:
        competent = copy.deepcopy(model).eval()
        for p in competent.parameters():
            p.requires_grad_(False)
        incompetent = untrained_twin(model, ctx.generator).to(ctx.device)
        keep = ctx.permutation(len(data.retain_inputs))[: round(self.retain_fraction * len(data.retain_inputs))]
        inputs = torch.cat([data.retain_inputs[keep], data.forget_inputs])  # [r + F, 3, S, S]
        is_forget = torch.cat([torch.zeros(len(keep)), torch.ones(len(data.forget_inputs))]).bool()
        ctx.plan(self.epochs * math.ceil(len(inputs) / self.batch_size))
        optimizer = ctx.adam(model, weight_decay=self.weight_decay)
        for epoch in range(self.epochs):
            model.train()
            stage = f"bad teacher epoch {epoch + 1}/{self.epochs}"
            for x, flags in ctx.batches(inputs, is_forget, self.batch_size):
                with ctx.autocast():
                    student = model(x)  # [B, C]
                    with torch.no_grad():  # each teacher only on its own photos
                        good = torch.zeros_like(student, dtype=torch.float32)
                        bad = torch.zeros_like(good)
                        if not bool(flags.all()):
                            good[~flags] = competent(x[~flags]).float()
                        if bool(flags.any()):
                            bad[flags] = incompetent(x[flags]).float()
                loss = bad_teacher_loss(student, good, bad, flags, self.temperature)
                ctx.step(stage, loss=ctx.update(optimizer, loss))
