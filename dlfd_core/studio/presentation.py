"""What the page shows of a run, as text and HTML: the verdict in words, the result cards, faces and predictions."""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence

import numpy as np

from ..evaluate.report import METRICS, percent
from ..evaluate.verdict import LIRA_ATTACK, MIN_PHOTOS, GoldComparison, Judgement
from ..experiment import ForgetOutcome
from .records import CARD_METRICS, Prediction, RunRecord


def display_name(identity: str) -> str:
    """A person's name as a page shows it: LFW's folder names with spaces (``Colin_Powell`` -> ``Colin Powell``)."""
    return identity.replace("_", " ")


def _auc_pct(value: float) -> str:
    return f"AUC {percent(value)}"


def _detectable_text(comparison: GoldComparison, photos: str) -> str:
    """What a comparison that differs from the gold model shows, in plain words."""
    low, high = (f"{100 * v:+.0f}" for v in comparison.interval)
    interval = f"difference {low} to {high} points, 95% interval"
    if comparison.name == "forget accuracy":
        more = "more" if comparison.difference > 0 else "fewer"
        return (
            f"it recognises {more} of the {photos} than the gold model does ({percent(comparison.value)} against "
            f"{percent(comparison.gold)}; {interval})"
        )
    attack = _attack_words(comparison)
    if comparison.difference > 0:
        return (
            f"{attack} tells their photos from strangers' better than on the gold model "
            f"({_auc_pct(comparison.value)} against {percent(comparison.gold)}; {interval})"
        )
    return (
        f"their photos now stand out by looking *less* familiar than on the gold model, which {attack} "
        f"detects too ({_auc_pct(comparison.value)} against {percent(comparison.gold)}; {interval})"
    )


def _attack_words(comparison: GoldComparison) -> str:
    """The attack of a comparison, in words."""
    if comparison.name == LIRA_ATTACK:
        return "a membership attack calibrated on models that never saw them (LiRA)"
    return "a membership attack"


#: The fewest training photos of the forgotten people with which the verdict and the (balanced, 10-fold) membership
#: attack are attempted.
MIN_ATTACK_PHOTOS = MIN_PHOTOS


def verdict(outcome: ForgetOutcome, identities: Sequence[str], judgement: Judgement | None) -> str:
    """A few plain sentences on whether ``identities`` are forgotten, judged against the gold model, and the cost.

    "Forgotten" only when ``judgement`` (:func:`judge`) finds the unlearned model equivalent to the gold model in
    forget accuracy and in the membership attack (95 % intervals of the paired differences within the margin);
    "not forgotten" when either differs, saying what is still detectable; "inconclusive" when the photos cannot
    tell, saying why; "not judged" without a gold model.
    """
    before = outcome.reports["before"].metrics
    after = outcome.reports["after"].metrics
    gold = outcome.reports["gold"].metrics if "gold" in outcome.reports else None
    recognised = after.get("forget_train_acc", math.nan)
    photos = len(outcome.outputs["after"].get("forget_train", ())) if outcome.outputs else 0
    kept_before, kept_after = before.get("retain_test_acc", math.nan), after.get("retain_test_acc", math.nan)
    who = ", ".join(display_name(i) for i in identities)
    several = len(identities) > 1
    photos_text = f"{photos} forgotten training {'photo' if photos == 1 else 'photos'}"
    gold_acc = f" (the gold model: {percent(gold.get('forget_train_acc', math.nan))})" if gold is not None else ""
    too_few = photos < MIN_ATTACK_PHOTOS or (judgement is not None and not judgement.comparisons)
    if too_few and photos >= MIN_ATTACK_PHOTOS and judgement is not None:  # too few non-members, a rare split
        text = f"**{who}: inconclusive, not enough photos to judge.** {judgement.reason.capitalize()}"
    elif too_few:
        text = (
            f"**{who}: inconclusive, not enough photos to judge.** The comparison with the gold model needs at least "
            f"{MIN_ATTACK_PHOTOS} training photos of the forgotten {'people' if several else 'person'} and there "
            f"{'is' if photos == 1 else 'are'} {photos}, so it cannot tell whether the model still knows them. The "
            f"model now recognises {percent(recognised)} of the {photos_text}{gold_acc}. More photos are needed for a "
            "verdict"
        )
    elif judgement is None:
        text = (
            f"**{who}: not judged.** Forgetting is judged against a gold model retrained without "
            f"{'them' if several else 'this person'}; tick 'Also train the gold model' for a verdict. The model now "
            f"recognises {percent(recognised)} of the {photos_text}"
        )
    elif judgement.outcome == "forgotten":
        accuracy, attack = judgement.comparisons
        text = (
            f"**{who} {'look' if several else 'looks'} forgotten**: on these {photos} photos the model behaves like "
            f"the gold model, never trained on {'them' if several else 'this person'}, to within the margin. It "
            "recognises "
            f"{percent(accuracy.value)} of them (gold {percent(accuracy.gold)}); {_attack_words(attack)} scores "
            f"{_auc_pct(attack.value)} (gold {_auc_pct(attack.gold)}); both differences lie within "
            f"±{100 * judgement.margin:.0f} points (95% intervals)"
        )
    elif judgement.outcome == "detectable":
        shown = [_detectable_text(c, photos_text) for c in judgement.comparisons if c.differs]
        text = f"**{who} {'are' if several else 'is'} not forgotten**: " + "; and ".join(shown)
    else:
        wide = [
            f"the {c.name} could differ by {100 * c.interval[0]:+.0f} to {100 * c.interval[1]:+.0f} points"
            for c in judgement.comparisons
            if not c.within(judgement.margin)
        ]
        text = (
            f"**{who}: inconclusive.** No difference from the gold model shows, but {photos} photos cannot rule out "
            f"one of {100 * judgement.margin:.0f} points or more ({'; '.join(wide)}, 95% intervals). More photos are "
            "needed for a verdict"
        )
    text += f". Accuracy on everyone else went from {percent(kept_before)} to {percent(kept_after)}"
    if kept_before - kept_after > 0.1:
        text += " — **a large loss of utility**"
    text += f"; unlearning took {outcome.result.seconds:.1f} s on the {outcome.result.device.upper()}."
    leak = after.get("forget_verification_auc", math.nan)
    leak_gold = gold.get("forget_verification_auc", math.nan) if gold is not None else math.nan
    if not math.isnan(leak) and not math.isnan(leak_gold) and leak > 0.6:
        text += (
            f" Their faces can still be matched by the embedding (verification AUC {leak:.0%}, gold {leak_gold:.0%}): "
            "the pretrained backbone tells apart people it never trained on, so this is judged against the gold "
            "model, not against zero."
        )
    return text


def _card_value(value: float | None, interval: tuple[float, float] | None) -> str:
    """A card's number: a share of photos or an AUC, in percent, with its 95 % interval over photos when it has one."""
    if value is None or math.isnan(value):
        return "<span class='dlfd-na' title='not enough photos to judge'>n/a</span>"
    text = percent(value)
    if interval is not None:
        text += (
            f" <span class='dlfd-ci' title='95% interval over photos'>[{100 * interval[0]:.0f}–"
            f"{100 * interval[1]:.0f}]</span>"
        )
    return text


#: The line under the cards that says how to read every number on them.
SCALE_NOTE = (
    "Every number is a percentage: of photos recognised, or an attack's AUC (50% = it cannot tell the forgotten "
    "photos from strangers', 100% = it always can; the gold model's value is the target). [Brackets]: 95% interval "
    "over photos."
)


_OUTCOME_LABELS = {"forgotten": "forgotten", "detectable": "not forgotten", "inconclusive": "inconclusive"}


def _judgement_card(judgement: Judgement) -> str:
    """The verdict's evidence: each statistic unlearned → gold, and the 95 % interval of their difference."""
    rows = "".join(
        f"<div data-comparison='{html.escape(c.name)}'>{html.escape(c.name)}: {percent(c.value)} → {percent(c.gold)} "
        f"<span title='95% interval of unlearned − gold, paired bootstrap over photos'>"
        f"[{100 * c.interval[0]:+.0f}, {100 * c.interval[1]:+.0f}] pts</span></div>"
        for c in judgement.comparisons
    )
    return (
        f"<div class='dlfd-card' data-metric='judgement' data-outcome='{judgement.outcome}'>"
        f"<div class='dlfd-card-label'>Against the gold model: {_OUTCOME_LABELS[judgement.outcome]}</div>"
        f"<div class='dlfd-card-value'>{rows or html.escape(judgement.reason)}</div>"
        "<div class='dlfd-card-help'>unlearned → gold, and the 95% interval of the difference; forgotten only when "
        f"both intervals lie within ±{100 * judgement.margin:.0f} points. Attack AUC: 50% = chance</div></div>"
    )


def cards_html(record: RunRecord) -> str:
    """The result cards: each headline metric before → after (→ gold), with how to read it, and the time."""
    reports = record.outcome.reports
    columns = [("before", "Original"), ("after", "Unlearned"), ("gold", "Gold")]
    cards = [_judgement_card(record.judgement)] if record.judgement is not None else []
    for name in CARD_METRICS:
        label, reading = METRICS[name].title, METRICS[name].reading
        if name == "attack_auc" and reports["after"].meta.get("attack") == LIRA_ATTACK:
            label += ", LiRA"
        values = " → ".join(
            f"<span title='{title}'>{_card_value(reports[key].metrics.get(name), reports[key].interval(name))}</span>"
            for key, title in columns
            if key in reports
        )
        cards.append(
            f"<div class='dlfd-card' data-metric='{name}'><div class='dlfd-card-label'>{label}</div>"
            f"<div class='dlfd-card-value'>{values}</div><div class='dlfd-card-help'>{reading}</div></div>"
        )
    timings = record.outcome.timings
    gold_time = f", gold model {timings['gold_train_seconds']:.1f} s" if "gold_train_seconds" in timings else ""
    cards.append(
        f"<div class='dlfd-card' data-metric='time'><div class='dlfd-card-label'>Time</div>"
        f"<div class='dlfd-card-value'>{record.outcome.result.seconds:.1f} s</div>"
        f"<div class='dlfd-card-help'>unlearning; whole run {record.seconds:.1f} s{gold_time}</div></div>"
    )
    order = " → ".join(title for key, title in columns if key in reports)
    style = (
        "<style>.dlfd-cards{display:flex;flex-wrap:wrap;gap:8px}.dlfd-card{flex:1 1 180px;border:1px solid #ddd;"
        "border-radius:8px;padding:8px 10px}.dlfd-card-label{font-weight:600}.dlfd-card-value{font-size:1.15em;"
        "margin:4px 0}.dlfd-card-help{font-size:.8em;opacity:.75}</style>"
    )
    return (
        f"{style}<div class='dlfd-cards-caption'>{order}</div><div class='dlfd-cards'>{''.join(cards)}</div>"
        f"<div class='dlfd-scale-note' style='font-size:.8em;opacity:.75;margin-top:4px'>{SCALE_NOTE}</div>"
    )


def _data_uri(crop: np.ndarray, size: int = 112) -> str:
    """A face crop as an inline JPEG (the page shows it without the server keeping or serving a file)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(crop, dtype=np.uint8)).resize((size, size), Image.BILINEAR).save(
        buffer, format="JPEG", quality=88
    )
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_FACES_STYLE = (
    "<style>.dlfd-faces{display:grid;grid-template-columns:repeat(auto-fill,minmax(112px,1fr));gap:8px}"
    ".dlfd-face{margin:0;font-size:.8em;line-height:1.3}.dlfd-face img{width:100%;max-width:112px;aspect-ratio:1;"
    "display:block;border-radius:6px}.dlfd-ok{color:#15803d}.dlfd-bad{color:#b91c1c}"
    ".dlfd-warn{color:#b45309}</style>"
)


def faces_html(crops: Sequence[np.ndarray], captions: Sequence[str]) -> str:
    """A grid of face crops, each with its whole caption under it (nothing cut, nothing enlarged)."""
    figures = "".join(
        f"<figure class='dlfd-face'><img src='{_data_uri(crop)}' alt='{html.escape(caption, quote=True)}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for crop, caption in zip(crops, captions, strict=True)
    )
    return f"{_FACES_STYLE}<div class='dlfd-faces'>{figures}</div>" if figures else ""


def _answer(label: str, answer: tuple[str, float] | None, truth: str, forgotten: bool) -> str:
    if answer is None:
        return ""
    name, confidence = answer
    right = name == truth
    # for a forgotten person, being recognised is what should stop; for everyone else it is what should stay
    good = not right if forgotten else right
    return (
        f"<div class='{'dlfd-ok' if good else 'dlfd-bad'}'>{html.escape(label)}: {html.escape(display_name(name))} "
        f"{confidence:.0%}</div>"
    )


def predictions_html(predictions: Sequence[Prediction]) -> str:
    """Each example photo with its person and role, and the model's answer before, after (and gold), in full."""
    figures = []
    for p in predictions:
        forgotten = p.role.startswith("forgotten")
        lines = "".join(
            _answer(label, answer, p.identity, forgotten)
            for label, answer in (("before", p.before), ("after", p.after), ("gold", p.gold))
        )
        figures.append(
            f"<figure class='dlfd-face' data-role='{html.escape(p.role, quote=True)}'>"
            f"<img src='{_data_uri(p.crop)}' alt='{html.escape(display_name(p.identity), quote=True)}'>"
            f"<figcaption><b>{html.escape(display_name(p.identity))}</b> ({html.escape(p.role)}){lines}"
            "</figcaption></figure>"
        )
    legend = (
        "<p style='font-size:.8em;margin:0 0 6px'>Answer of each model, with its confidence: "
        "<span class='dlfd-ok'>green</span> is what we want (the forgotten person no longer recognised, everyone "
        "else still recognised), <span class='dlfd-bad'>red</span> is not.</p>"
    )
    return f"{_FACES_STYLE}{legend}<div class='dlfd-faces'>{''.join(figures)}</div>" if figures else ""
