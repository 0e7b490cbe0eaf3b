"""UNSIR: error-maximising noise for the forgotten classes, then impair and repair (Tarun et al., IEEE TNNLS 2023).

1. **Noise.** For each forgotten class ``c``, a batch of noise images ``N`` is learnt against the frozen original
   model by minimising ``-CE(model(N), c) + λ · mean_i ‖N_i‖²`` with Adam: the noise becomes what the model finds
   *least* like class ``c``, kept small by the ``λ`` term.
2. **Impair.** One epoch, at a high learning rate, over the noise (labelled ``c``) mixed with retain photos:
   fitting class ``c`` to error-maximising noise wipes out what the model knew of ``c``.
3. **Repair.** One epoch over the same retain photos at the normal rate, to recover the utility lost in the impair
   step.

Defaults from the authors' notebook (vikram2000b/Fast-Machine-Unlearning): the noise is one batch per class
(their batch size, 256; here ``noise_batch`` = 32), ``λ`` 0.1, Adam at 0.1 for 5 × 8 = 40 steps; the retain photos
are up to 1,000 per retained class (``num_samples_per_class``: 20% of CIFAR-10's 5,000, but every photo of a person
here, who has about 6: ``retain_per_class``); impair with Adam at 0.02 and repair with a new Adam at 0.01, twice and
once the rate their original model was trained with (Adam, 0.01), no weight decay. Adapted:

- **Noise space.** Their noise lives in the standardised input space (CIFAR normalised by its mean and std), drawn
  from ``N(0, 1)`` and penalised by its squared norm there. This project's models take ``[0, 1]`` images, so the
  noise is kept in the same standardised units ``u`` (same ``N(0, 1)`` start, same penalty on ``‖u‖²``) and fed to
  the model as ``clamp(μ + σ · u, 0, 1)``, where ``μ`` and ``σ`` are the retain photos' per-channel mean and std.
  The penalty sums over pixels, so on 150-pixel faces (22 times CIFAR's pixel count) it weighs more against the
  cross-entropy: the learnt noise is a faint adversarial pattern on the mean face (still strongly "not ``c``" to the
  model: a cross-entropy near 10 on the first impair batch).
- **Noise copies.** Their notebook repeats each class's 256-image noise batch 20 times, about as many images as the
  class had (5,000). One batch of 32 already outnumbers a person's training photos here, so the default is one copy
  (``noise_copies``).
- **Labels.** Their notebook labels every noise batch as class 0 (``class_num = 0``, a slip for two forgotten classes
  0 and 2); here each class's noise carries its own class, as the paper describes.
- **Rates.** Adam as in the paper, over the trainable set (``momentum`` is not used): repair at ``lr``/``head_lr``,
  impair at ``impair_scale`` (2) times those. This project's models are trained with SGD, so there is no training
  Adam rate to copy; the defaults are 1e-4, the rate at which the Bad Teacher authors fine-tune a pretrained model
  with Adam. These are Adam rates, not SGD ones. SGD is not usable here: the noise batches' large losses give large
  gradients, and an impair step with SGD at twice the recipe's rates wiped out the model (retain test accuracy 0.07
  on ORL, measured), whereas Adam's steps are bounded by its rate. With the retain photos cut to a 20% share (one per
  person), the single repair step left retain test accuracy at 0.48; with all of them (the paper's per-class count),
  1.0.
- The noise is learnt with the model in eval mode and its weights frozen.
- **Whole classes only.** UNSIR forgets *classes*: its noise maximises the loss of a class, and the impair step
  teaches the model that the class looks like that noise. In instance forgetting the forget photos' people stay
  known, so there is no class to forget (running it per photo's class would erase people who must be kept), and the
  method is restricted to identity forgetting (``modes``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DLFDError
from .base import Method, RunContext, UnlearnData, register_method, setting

__all__ = ["Unsir", "learn_noise", "stratified_subset"]


def stratified_subset(labels: torch.Tensor, per_class: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of up to ``per_class`` seeded random samples of each class (all of a smaller class), in class order."""
    picked = []
    for c in labels.unique().tolist():
        members = (labels == c).nonzero().squeeze(1)
        picked.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(picked)


def learn_noise(
    model: nn.Module,
    classes: list[int],
    ctx: RunContext,
    *,
    per_class: int,
    input_size: int,
    mean: torch.Tensor,
    std: torch.Tensor,
    steps: int,
    lr: float,
    weight: float,
    stage: str = "learning noise",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Error-maximising noise images for ``classes``: ``per_class`` each, as model inputs in ``[0, 1]`` on the CPU.

    Minimises ``-CE(model(x), c) + weight · mean_i ‖u_i‖²`` over standardised noise ``u`` (start ``N(0, 1)``, seeded
    by ``ctx``) with Adam, ``x = clamp(mean + std · u, 0, 1)``; one :meth:`RunContext.step` per Adam step. All
    classes' noise is optimised together (Adam acts per element, so this equals one optimisation per class).

    Args:
        model: the frozen model to attack (left in eval mode; its weights get no gradient).
        classes: the classes to make noise for.
        ctx: the run's context.
        per_class: noise images per class.
        input_size: the model's input side.
        mean, std: per-channel ``[3]`` statistics that map standardised noise to pixels.
        steps, lr, weight: Adam steps, Adam rate and the ``λ`` of the norm penalty.
        stage: progress message.

    Returns:
        ``(inputs [K·n, 3, S, S], labels [K·n])``.
    """
    model.eval()
    shape = (len(classes) * per_class, 3, input_size, input_size)
    noise = torch.randn(shape, generator=ctx.generator).to(ctx.device).requires_grad_(True)
    labels = torch.tensor(classes, dtype=torch.long).repeat_interleave(per_class).to(ctx.device)
    mean = mean.to(ctx.device).view(1, 3, 1, 1)
    std = std.to(ctx.device).view(1, 3, 1, 1)
    optimizer = torch.optim.Adam([noise], lr=lr)
    for _ in range(steps):
        with ctx.autocast():
            logits = model((mean + std * noise).clamp(0.0, 1.0))
        loss = -F.cross_entropy(logits.float(), labels) + weight * noise.pow(2).sum((1, 2, 3)).mean()
        optimizer.zero_grad(set_to_none=True)
        (grad,) = torch.autograd.grad(loss, [noise])
        noise.grad = grad
        optimizer.step()
        ctx.step(stage, noise_loss=float(loss.detach()))
    with torch.no_grad():
        images = (mean + std * noise).clamp(0.0, 1.0)
    return images.cpu(), labels.cpu()


@register_method
@dataclass(frozen=True, kw_only=True)
class Unsir(Method):
    """UNSIR (Tarun et al., IEEE TNNLS 2023, https://arxiv.org/abs/2111.08947): error-maximising noise, impair, repair.

    Learns noise that maximises each forgotten class's loss, trains one high-rate epoch on that noise (labelled as
    the class) with some retain photos, then one normal epoch on the retain photos.
    """

    name = "unsir"
    title = "UNSIR"
    optimizer = "adam"
    paper = "Tarun et al., IEEE TNNLS 2023"
    modes = ("identity",)

    epochs: int = setting(1, "repair passes over the retain photos", min=1, max=100)
    lr: float = setting(1e-4, "repair Adam learning rate of the trainable backbone layers", min=0.0, max=1.0)
    head_lr: float = setting(1e-4, "repair Adam learning rate of the classification head", min=0.0, max=10.0)
    weight_decay: float = setting(0.0, "Adam weight decay (L2)", min=0.0, max=1.0)
    momentum: float = setting(0.9, "not used: this method's optimiser is Adam", min=0.0, max=0.999)
    impair_epochs: int = setting(1, "impair passes over the noise plus the retain photos", min=1, max=100)
    impair_scale: float = setting(2.0, "impair learning rates as a multiple of lr / head_lr", min=0.0, max=100.0)
    noise_batch: int = setting(32, "noise images learnt per forgotten class", min=1, max=1024)
    noise_copies: int = setting(1, "how many times each class's noise images enter the impair set", min=1, max=100)
    noise_steps: int = setting(40, "Adam steps that learn the noise", min=0, max=10000)
    noise_lr: float = setting(0.1, "Adam learning rate of the noise (standardised units)", min=0.0, max=100.0)
    noise_weight: float = setting(0.1, "λ: weight of the noise's squared-norm penalty", min=0.0, max=100.0)
    retain_per_class: int = setting(
        1000,
        "retain photos per class used by impair and repair (all of them when a class has fewer)",
        min=1,
        max=100000,
    )

    def _unlearn(self, model: nn.Module, data: UnlearnData, ctx: RunContext) -> None:
        classes = list(data.forget_classes)
        if not classes:
            raise DLFDError("UNSIR needs whole forgotten classes: no class is left without retain photos")
        subset = stratified_subset(data.retain_labels, self.retain_per_class, ctx.generator)
        retain_x, retain_y = data.retain_inputs[subset], data.retain_labels[subset]
        n_noise = len(classes) * self.noise_batch * self.noise_copies
        ctx.plan(
            self.noise_steps
            + self.impair_epochs * math.ceil((n_noise + len(subset)) / self.batch_size)
            + self.epochs * math.ceil(len(subset) / self.batch_size)
        )
        pixels = data.retain_inputs.transpose(0, 1).reshape(3, -1)  # [3, N·S·S]
        noise_x, noise_y = learn_noise(
            model,
            classes,
            ctx,
            per_class=self.noise_batch,
            input_size=data.retain_inputs.shape[-1],
            mean=pixels.mean(1),
            std=pixels.std(1).clamp_min(1e-3),
            steps=self.noise_steps,
            lr=self.noise_lr,
            weight=self.noise_weight,
        )
        impair_x = torch.cat([noise_x.repeat(self.noise_copies, 1, 1, 1), retain_x])
        impair_y = torch.cat([noise_y.repeat(self.noise_copies), retain_y])
        # a fresh Adam per stage, as the authors' notebook creates one for impair and one for repair
        for x, y, epochs, stage, scale in (
            (impair_x, impair_y, self.impair_epochs, "UNSIR impair", self.impair_scale),
            (retain_x, retain_y, self.epochs, "UNSIR repair", 1.0),
        ):
            optimizer = ctx.adam(
                model, lr=self.lr * scale, head_lr=self.head_lr * scale, weight_decay=self.weight_decay
            )
            self.finetune_epochs(model, x, y, ctx, epochs, stage, optimizer=optimizer)
