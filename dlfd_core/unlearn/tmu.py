"""TMU, Twin Machine Unlearning (Niu, Ji, Sun et al., arXiv 2408.11433 / 2501.08615): forget only what gold forgets.

The gold model (retrained without the forget set D_f) still classifies many forget photos correctly because it
generalises from the retained ones. TMU aims at *alignment* with gold: it predicts, per forget photo, whether gold
would get it right ("easy") or wrong ("hard"), relabels only the hard ones at random and fine-tunes on
{easy photos with their true labels, relabelled hard photos, retain set}. Gold is unknown, so the easy/hard
predictor is learnt on a *twin problem* whose gold model is known:

1. **Twin model** M_t: a copy of the original M_o fine-tuned on the members (retain ∪ forget) plus holdout photos
   D_h (photos of retained people that M_o never trained on; ``data.holdout_inputs``). Unlearning D_h from M_t is
   the twin problem, and its gold model is M_o itself.
2. **Generalisation labels** of D_h: easy (1) when M_o classifies the photo correctly, hard (0) otherwise.
3. **Features**, the same way for D_h (under M_t, against M_t's features of the members of the same class) and for
   D_f (under M_o, against M_o's features of the retain photos of the same class):

   * DF, distance: the mean of the ``neighbours`` (paper: 5) smallest L2 distances from the photo's L2-normalised
     embedding to the L2-normalised embeddings of the same class (fewer when the class has fewer photos);
   * CF, curriculum loss: the photo's cross-entropy under a briefly trained "curriculum" model (paper: the
     architecture trained 2 epochs from scratch on the members).

   Each feature is clipped to ``[Q1 − 1.5·IQR, Q3 + 1.5·IQR]`` and min–max scaled to ``[0, 1]``. (The paper's third
   feature, the adversarial robustness from a short PGD attack, is computed by its code but not used; left out.)
4. **Predictor**: an MLP 2 → 32 → 16 → 1 trained with binary cross-entropy on the twin problem's (features,
   label) pairs, Adam lr 0.01, 200 epochs, batches of 128 (the paper's code).
5. **Unlearning**: forget photos predicted hard get a random wrong label, the easy ones keep theirs; fine-tune on
   {easy, relabelled hard, retain} (paper: 5 epochs, SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch 64).

Adaptations to this project (each a setting where it is a choice):

* Learning rates: the twin and curriculum models are trained like the original, at the method's ``lr`` /
  ``head_lr`` (default: the training recipe's 5e-4 backbone / 5e-3 head; the benchmark overrides them for other
  backbones). The paper trains its twin with Adam lr 1e-4 for 10 epochs; here SGD at the recipe's rates for
  ``twin_epochs`` = 5 (the original itself is trained for only 8 epochs, and D_h is a seventh of the twin's data).
  The unlearning fine-tune runs at ``unlearn_lr_scale`` (default 0.2) times those rates. The paper fine-tunes at
  its models' own scale (SGD 0.01, for CIFAR models trained from scratch), but a relabelled photo is not a training
  photo: on the default model (a prototype-imprinted head whose weights are ~40x the embedding's norm) one
  relabelled photo of a forgotten person sends a backbone gradient ~300x that of a retain photo (measured: 673 vs
  2 for six photos), and at the recipe's own rates the fine-tune on ORL without s7 (6 relabelled photos among
  180) collapsed to predicting one class within 2 epochs (retain accuracy 0.03; the random-label baseline at those
  rates does the same). At a fifth of them it is stable (retain accuracy 1.0). Batches of 32 (the project's
  default) instead of the paper's 64 on 50 000 CIFAR images.
* Curriculum model: with a pretrained backbone (``model.pretrained``), "from scratch" would throw away the very
  embedding the original model was built on, so the curriculum model is the recipe's own starting point trained
  briefly: the untouched pretrained backbone with a fresh head, imprinted with the members' class means (as the
  recipe does) and trained ``curriculum_epochs`` = 2 on the members over the method's trainable set. Without a
  pretrained backbone it is the architecture re-initialised (seeded) and trained 2 epochs with every layer trainable.
* Features are the backbone embedding (``model.features``), the input of the classification head. The paper's code
  compares D_f with the *twin* model's features of the retained photos; here each problem uses its own model (the
  one that trained on the photos being unlearned: M_t for D_h, M_o for D_f), so that the two are computed alike.
* Classes with fewer than ``neighbours`` photos use all of them. A photo whose class has no photo to compare with
  (a forgotten person in identity mode) gets DF = 2, the largest distance between unit vectors: nothing of its
  class is retained, so it is as far from its class as a photo can be. (The alternative, the distance to the
  nearest other class, measures resemblance to somebody else, not coverage by one's own class.)
* Scaling (``feature_scaling``): the paper's code fits the clip-and-scale separately on each set. The default
  here, ``"twin"``, fits it on the twin problem's values and applies the same transform to D_f (clamped to
  ``[0, 1]``), so the predictor sees D_f on the scale it was trained on; per-set scaling would stretch any D_f, even
  20 near-identical photos, over the whole ``[0, 1]`` range. ``"per_set"`` is the paper code's choice. A feature
  with no spread (max = min) scales to 0.5.
* One-class twin problem: with a pretrained face embedding, M_o usually classifies every holdout photo correctly
  (on ORL it does: all 29-30 are easy), so the twin problem has a single class and carries no information about
  what makes a photo hard. The predictor is then that class's prior, a constant (its training accuracy is 1), and
  the twin and curriculum models, which only feed its features, are not trained (nor when every forget photo is
  hard by the rule below). Every forget photo of a retained person is then predicted easy, which in instance
  forgetting is what gold does on ORL (it still recognises all 20 of them). The twin path runs when the original
  misses some holdout photos (e.g. a weaker model trained from scratch).
* Forgotten people (``forgotten_people_hard``, on by default): photos of a class with no retain photo (identity
  forgetting: ``data.forget_classes``) are labelled hard without asking the predictor. Gold never trained that
  class, so it cannot name them (its head row is untrained); the twin problem, made of photos of retained people,
  has no example of this situation to learn it from. Off, the predictor decides for them too (with DF = 2).
* Random labels never give a photo its own class nor any forgotten class (they would be re-learnt).
* Noise-perturbed fine-tuning (the paper's defence against membership attacks; its code is not released): during
  the fine-tune, every forget photo (easy or relabelled) is seen with fresh Gaussian pixel noise of standard
  deviation ``noise_std`` (default 0.05, pixel range [0, 1], clamped), the retain photos unperturbed. The easy
  forget photos keep their labels, so without noise the fine-tune would re-fit their exact pixels, the very
  signal a membership attack reads; with noise the model keeps the class knowledge (what gold's generalisation
  gives it) around the photo rather than the photo itself. ``noise_std=0`` turns it off, and then an all-easy
  prediction makes the run exactly plain fine-tuning on retain ∪ forget with the true labels.

History (``ctx.step`` values): ``twin_loss``, ``curriculum_loss``, ``predictor_loss`` and ``loss`` (the unlearning
fine-tune) per optimiser step, and one record with ``twin_easy``/``twin_hard`` (the twin problem's labels),
``predictor_train_acc`` and ``forget_predicted_easy``/``forget_predicted_hard``.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnknownNameError
from .base import Method, RunContext, UnlearnData, register_method, setting

log = logging.getLogger(__name__)

__all__ = ["TMU", "FeatureScaler", "distance_feature", "predictor_mlp"]

#: DF of a photo with no same-class photo to compare with: the largest distance between two unit vectors.
MAX_DISTANCE = 2.0

_T = TypeVar("_T")


def distance_feature(
    features: torch.Tensor, labels: torch.Tensor, ref_features: torch.Tensor, ref_labels: torch.Tensor, k: int
) -> torch.Tensor:
    """TMU's DF: mean of the ``k`` smallest L2 distances from each L2-normalised feature to those of its class.

    Args:
        features: ``[N, D]`` features of the photos to describe, with ``labels`` ``[N]``.
        ref_features: ``[M, D]`` features of the reference photos (the retained ones), with ``ref_labels`` ``[M]``.
        k: how many nearest same-class references to average (all of them when the class has fewer).

    Returns:
        ``[N]`` distances; :data:`MAX_DISTANCE` for a photo whose class has no reference photo.
    """
    if len(features) == 0:
        return torch.zeros(0)
    f = F.normalize(features.float(), dim=1)
    r = F.normalize(ref_features.float(), dim=1)
    dist = torch.cdist(f, r, compute_mode="donot_use_mm_for_euclid_dist")  # [N, M]
    same = labels.unsqueeze(1) == ref_labels.unsqueeze(0)  # [N, M]
    dist = dist.masked_fill(~same, math.inf)
    k = min(k, dist.shape[1])
    nearest = dist.sort(dim=1).values[:, :k]  # [N, k], same-class distances first
    count = same.sum(1).clamp(max=k)  # [N]
    total = nearest.masked_fill(torch.isinf(nearest), 0.0).sum(1)
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, MAX_DISTANCE))


@dataclass(frozen=True)
class FeatureScaler:
    """TMU's per-feature normalisation: clip to ``[Q1 − 1.5·IQR, Q3 + 1.5·IQR]``, then min–max scale to ``[0, 1]``.

    Attributes:
        lower, upper: the clipping fences.
        low, high: the minimum and maximum of the clipped fitting values.
    """

    lower: float
    upper: float
    low: float
    high: float

    @classmethod
    def fit(cls, values: torch.Tensor) -> FeatureScaler:
        values = values.double()
        q1, q3 = torch.quantile(values, 0.25).item(), torch.quantile(values, 0.75).item()
        lower, upper = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
        clipped = values.clamp(lower, upper)
        return cls(lower=lower, upper=upper, low=clipped.min().item(), high=clipped.max().item())

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        """Clip, scale and clamp to ``[0, 1]`` (values outside the fitting range land on its ends); 0.5 if flat."""
        clipped = values.double().clamp(self.lower, self.upper)
        if self.high <= self.low:
            return torch.full_like(clipped, 0.5).float()
        return ((clipped - self.low) / (self.high - self.low)).clamp(0.0, 1.0).float()


def predictor_mlp() -> nn.Sequential:
    """The generalisation-label predictor of the paper's code: 2 → 32 → 16 → 1 (a logit; easy when positive)."""
    return nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 1))


def _seeded(ctx: RunContext, build: Callable[[], _T]) -> _T:
    """Run ``build`` (which initialises weights with the global RNG) under a seed drawn from ``ctx.generator``."""
    seed = int(torch.randint(0, 2**62, (1,), generator=ctx.generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _reinitialise(module: nn.Module) -> None:
    """Re-initialise every parameter: children first, so a parent's own ``reset_parameters`` has the last word."""
    for m in reversed(list(module.modules())):
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()


@torch.no_grad()
def _outputs(model: nn.Module, inputs: torch.Tensor, ctx: RunContext) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings ``[N, D]`` and logits ``[N, C]`` (float32, on the CPU) of ``inputs`` in eval mode."""
    was_training = model.training
    model.eval()
    feats, logits = [], []
    for first in range(0, len(inputs), 64):
        x = ctx.to_device(inputs[first : first + 64])
        with ctx.autocast():
            f = model.features(x)
            z = model.head(f)
        feats.append(f.float().cpu())
        logits.append(z.float().cpu())
    model.train(was_training)
    return torch.cat(feats), torch.cat(logits)


@register_method
@dataclass(frozen=True, kw_only=True)
class TMU(Method):
    """Twin Machine Unlearning (Niu et al.), arXiv https://arxiv.org/abs/2408.11433 (and 2501.08615).

    Predicts from a twin problem which forget photos the gold model would misclassify, relabels only those at
    random, and fine-tunes with noise on the forget photos.
    """

    name = "tmu"
    title = "TMU (Twin Machine Unlearning)"
    paper = "Niu, Ji, Sun et al. 2024/2025, arXiv 2408.11433, 2501.08615"
    needs_holdout = True

    epochs: int = setting(5, "passes of the unlearning fine-tune over retain + forget (paper: 5)", min=1, max=100)
    lr: float = setting(
        5e-4,
        "backbone learning rate of the twin and curriculum models (x unlearn_lr_scale in the fine-tune)",
        min=0.0,
        max=1.0,
    )
    head_lr: float = setting(
        5e-3,
        "head learning rate of the twin and curriculum models (x unlearn_lr_scale in the fine-tune)",
        min=0.0,
        max=10.0,
    )
    unlearn_lr_scale: float = setting(
        0.2,
        "the unlearning fine-tune runs at lr and head_lr times this (relabelled photos give huge gradients)",
        min=0.0,
        max=10.0,
    )
    twin_epochs: int = setting(
        5, "epochs of fine-tuning the original on members + holdout into the twin model (paper: 10)", min=1, max=100
    )
    curriculum_epochs: int = setting(2, "epochs of the curriculum model on the members (paper: 2)", min=1, max=100)
    neighbours: int = setting(5, "same-class neighbours averaged in the distance feature (paper: 5)", min=1, max=100)
    predictor_epochs: int = setting(200, "epochs of the easy/hard predictor (paper: 200)", min=1, max=10000)
    predictor_lr: float = setting(0.01, "Adam learning rate of the easy/hard predictor (paper: 0.01)", min=0.0, max=1.0)
    predictor_batch_size: int = setting(128, "twin samples per predictor step (paper: 128)", min=1, max=4096)
    feature_scaling: str = setting(
        "twin",
        "fit the clip + min-max scaling on the twin problem and apply it to the forget set ('twin'), "
        "or fit it on each set separately as the paper's code does ('per_set')",
        choices=("twin", "per_set"),
    )
    forgotten_people_hard: bool = setting(
        True, "photos of people with no retained photo are 'hard' (gold never trained their class)"
    )
    noise_std: float = setting(
        0.05, "std of the Gaussian pixel noise on forget photos during the fine-tune (0 turns it off)", min=0.0, max=1.0
    )

    # -- the pipeline ------------------------------------------------------------------------------------------------
    def _unlearn(self, model: nn.Module, data: UnlearnData, ctx: RunContext) -> None:
        assert data.holdout_inputs is not None and data.holdout_labels is not None
        n_members = len(data.retain_inputs) + len(data.forget_inputs)
        twin_labels = self.generalisation_labels(model, data.holdout_inputs, data.holdout_labels, ctx)
        forced_hard = torch.isin(data.forget_labels, torch.as_tensor(data.forget_classes, dtype=torch.long))
        if not self.forgotten_people_hard:
            forced_hard = torch.zeros_like(forced_hard)
        two_classes = 0 < int(twin_labels.sum()) < len(twin_labels)
        needs_predictor = two_classes and not bool(forced_hard.all())

        n_twin = n_members + len(data.holdout_inputs)
        steps = self.epochs * math.ceil(n_members / self.batch_size)
        steps += 1  # the easy/hard record
        if needs_predictor:
            steps += self.twin_epochs * math.ceil(n_twin / self.batch_size)
            steps += self.curriculum_epochs * math.ceil(n_members / self.batch_size)
            steps += self.predictor_epochs * math.ceil(len(twin_labels) / self.predictor_batch_size)
        ctx.plan(steps)

        stats = {"twin_easy": float(twin_labels.sum()), "twin_hard": float(len(twin_labels) - twin_labels.sum())}
        if needs_predictor:
            twin_feats, forget_feats = self.features(model, data, ctx)
            predictor, stats["predictor_train_acc"] = self.fit_predictor(twin_feats, twin_labels, ctx)
            with torch.no_grad():
                easy = predictor(forget_feats).squeeze(1) > 0
        else:
            # One-class twin problem: the predictor is that class's prior (a constant, right on every twin sample).
            easy = torch.full((len(data.forget_labels),), bool(twin_labels.all()))
            if not two_classes:
                stats["predictor_train_acc"] = 1.0
        easy &= ~forced_hard
        stats["forget_predicted_easy"] = float(easy.sum())
        stats["forget_predicted_hard"] = float(len(easy) - easy.sum())
        ctx.step("easy/hard prediction", **stats)
        log.info("tmu: %s", ", ".join(f"{k} {v:g}" for k, v in stats.items()))

        inputs, labels, noisy = self.unlearning_set(data, easy, ctx)
        self.noisy_finetune(model, inputs, labels, noisy, ctx)

    @torch.no_grad()
    def generalisation_labels(
        self, original: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, ctx: RunContext
    ) -> torch.Tensor:
        """The twin problem's labels: 1 (easy) where the original model (the twin's gold) is right, else 0."""
        logits = _outputs(original, inputs, ctx)[1]
        return (logits.argmax(1) == labels).float()

    def features(self, original: nn.Module, data: UnlearnData, ctx: RunContext) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled (DF, CF) ``[N, 2]`` of the holdout photos (twin problem) and of the forget photos."""
        assert data.holdout_inputs is not None and data.holdout_labels is not None
        members_x = torch.cat([data.retain_inputs, data.forget_inputs])
        members_y = torch.cat([data.retain_labels, data.forget_labels])
        twin = self.twin_model(original, members_x, members_y, data.holdout_inputs, data.holdout_labels, ctx)
        curriculum = self.curriculum_model(original, members_x, members_y, ctx)
        # DF of the twin problem: under M_t, against M_t's members of the same class.
        f_members = _outputs(twin, members_x, ctx)[0]
        f_holdout = _outputs(twin, data.holdout_inputs, ctx)[0]
        df_twin = distance_feature(f_holdout, data.holdout_labels, f_members, members_y, self.neighbours)
        del twin
        # DF of the forget set: under M_o, against M_o's retain photos of the same class.
        f_retain = _outputs(original, data.retain_inputs, ctx)[0]
        f_forget = _outputs(original, data.forget_inputs, ctx)[0]
        df_forget = distance_feature(f_forget, data.forget_labels, f_retain, data.retain_labels, self.neighbours)
        # CF: cross-entropy under the curriculum model.
        cf_twin = F.cross_entropy(
            _outputs(curriculum, data.holdout_inputs, ctx)[1], data.holdout_labels, reduction="none"
        )
        cf_forget = F.cross_entropy(
            _outputs(curriculum, data.forget_inputs, ctx)[1], data.forget_labels, reduction="none"
        )
        scaled = []
        for twin_values, forget_values in ((df_twin, df_forget), (cf_twin, cf_forget)):
            scale_twin = FeatureScaler.fit(twin_values)
            scale_forget = scale_twin if self.feature_scaling == "twin" else FeatureScaler.fit(forget_values)
            scaled.append((scale_twin(twin_values), scale_forget(forget_values)))
        log.debug("tmu features: twin DF %s CF %s", df_twin.tolist(), cf_twin.tolist())
        return (
            torch.stack([scaled[0][0], scaled[1][0]], dim=1),  # [H, 2]
            torch.stack([scaled[0][1], scaled[1][1]], dim=1),  # [F, 2]
        )

    def twin_model(
        self,
        original: nn.Module,
        members_x: torch.Tensor,
        members_y: torch.Tensor,
        holdout_x: torch.Tensor,
        holdout_y: torch.Tensor,
        ctx: RunContext,
    ) -> nn.Module:
        """M_t: the original fine-tuned on members ∪ holdout for ``twin_epochs``."""
        twin = copy.deepcopy(original)
        x, y = torch.cat([members_x, holdout_x]), torch.cat([members_y, holdout_y])
        optimizer = ctx.sgd(twin)
        self.finetune_epochs(twin, x, y, ctx, self.twin_epochs, "twin model", optimizer=optimizer, key="twin_loss")
        return twin

    def curriculum_model(
        self, original: nn.Module, members_x: torch.Tensor, members_y: torch.Tensor, ctx: RunContext
    ) -> nn.Module:
        """The briefly trained model whose per-photo loss is CF (see the module docstring for the pretrained case)."""
        from ..models.registry import create_backbone
        from ..train import TrainConfig, imprint_head

        curriculum = copy.deepcopy(original).cpu()  # initialised on the CPU, where _seeded controls the RNG
        trainable = self.trainable
        if getattr(original, "pretrained", False):
            try:
                name, kwargs = original.backbone_name, original.backbone_kwargs
                pristine = _seeded(ctx, lambda: create_backbone(name, pretrained=True, **kwargs))
                curriculum.backbone.load_state_dict(pristine.state_dict())
            except UnknownNameError:
                log.warning("tmu: no pretrained %r weights; curriculum model from scratch", original.backbone_name)
                _seeded(ctx, lambda: _reinitialise(curriculum.backbone))
                trainable = "all"
            _seeded(ctx, lambda: _reinitialise(curriculum.head))
            curriculum.to(ctx.device)
            imprint_head(curriculum, members_x, members_y, logit_scale=TrainConfig().prototype_logit_scale)
        else:
            _seeded(ctx, lambda: _reinitialise(curriculum))
            curriculum.to(ctx.device)
            trainable = "all"
        optimizer = ctx.sgd(curriculum, trainable=trainable)
        self.finetune_epochs(
            curriculum,
            members_x,
            members_y,
            ctx,
            self.curriculum_epochs,
            "curriculum",
            optimizer=optimizer,
            key="curriculum_loss",
        )
        return curriculum

    def fit_predictor(self, features: torch.Tensor, labels: torch.Tensor, ctx: RunContext) -> tuple[nn.Module, float]:
        """Train the MLP on the twin problem (BCE, Adam); return it (eval mode, CPU) and its training accuracy."""
        predictor = _seeded(ctx, predictor_mlp)
        optimizer = torch.optim.Adam(predictor.parameters(), lr=self.predictor_lr, betas=(0.9, 0.999), eps=1e-8)
        predictor.train()
        for epoch in range(self.predictor_epochs):
            order = ctx.permutation(len(features))
            for first in range(0, len(order), self.predictor_batch_size):
                index = order[first : first + self.predictor_batch_size]
                loss = F.binary_cross_entropy_with_logits(predictor(features[index]).squeeze(1), labels[index])
                loss = ctx.update(optimizer, loss)
                ctx.step(f"predictor epoch {epoch + 1}/{self.predictor_epochs}", predictor_loss=loss)
        predictor.eval()
        with torch.no_grad():
            accuracy = float(((predictor(features).squeeze(1) > 0).float() == labels).float().mean())
        return predictor, accuracy

    def unlearning_set(
        self, data: UnlearnData, easy: torch.Tensor, ctx: RunContext
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Retain ∪ forget with the hard forget photos relabelled at random; also which rows are forget photos.

        Returns:
            inputs ``[R + F, 3, S, S]`` (retain first), labels ``[R + F]``, and a bool mask ``[R + F]`` of the
            forget rows (the ones the noise perturbs).
        """
        forget_labels = data.forget_labels.clone()
        hard = ~easy
        if bool(hard.any()):
            forget_labels[hard] = ctx.random_labels(
                data.forget_labels[hard], data.num_classes, exclude=data.forget_classes
            )
        inputs = torch.cat([data.retain_inputs, data.forget_inputs])
        labels = torch.cat([data.retain_labels, forget_labels])
        noisy = torch.cat(
            [torch.zeros(len(data.retain_labels), dtype=torch.bool), torch.ones(len(forget_labels), dtype=torch.bool)]
        )
        return inputs, labels, noisy

    def noisy_finetune(
        self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, noisy: torch.Tensor, ctx: RunContext
    ) -> None:
        """Cross-entropy fine-tune; the ``noisy`` rows get fresh Gaussian pixel noise (``noise_std``) every time."""
        optimizer = ctx.sgd(model, lr=self.lr * self.unlearn_lr_scale, head_lr=self.head_lr * self.unlearn_lr_scale)
        model.train()
        for epoch in range(self.epochs):
            for x, index in ctx.batches(inputs, torch.arange(len(inputs)), self.batch_size):
                index = index.cpu()
                mask = noisy[index]
                if self.noise_std > 0 and bool(mask.any()):
                    noise = torch.randn(x.shape, generator=ctx.generator) * self.noise_std
                    noise[~mask] = 0.0
                    x = (x + ctx.to_device(noise)).clamp(0.0, 1.0)
                y = ctx.to_device(labels[index])
                with ctx.autocast():
                    loss = F.cross_entropy(model(x), y)
                ctx.step(f"unlearn epoch {epoch + 1}/{self.epochs}", loss=ctx.update(optimizer, loss))
        model.eval()
