"""The benchmark: every method x seeds x forgetting settings x backbones, summarised as mean ± std.

For each backbone and seed the original model is trained with the recipe and that seed; for each forgetting setting
the forget request is drawn with the seed (seed i forgets the i-th person of a fixed random order of the known
people, or ``instances`` random photos drawn with the seed), the gold model
is retrained on the retain set with the same seed, and every method runs on the same original model and is
evaluated against the same gold model. Timings are wall times of this machine (see the JSON's ``environment``).

Method settings are each method's defaults, except for ResNet-18 trained from scratch, where the learning rates are
replaced by the papers' scale (:data:`BACKBONE_OVERRIDES`): the defaults are scaled to the pretrained model's recipe,
which would barely move a model trained from scratch at rate 0.02. A method's SGD rates then scale with the rates of
the recipe the original was trained with against the backbone's default recipe (:func:`~dlfd_core.train.rate_scale`;
LFW's recipe: 1/5), recorded per run as ``rate_scale``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import CancelledError, DLFDError

if TYPE_CHECKING:
    from .evaluate.cache import OutputSource
from .progress import ProgressFn, no_progress, scaled

log = logging.getLogger(__name__)

__all__ = [
    "BACKBONE_OVERRIDES",
    "BenchSource",
    "Cell",
    "run_cell",
    "SUMMARY_METRICS",
    "format_markdown",
    "forgotten_people",
    "paired_differences",
    "setting_mode",
    "paired_t_test",
    "run_bench",
    "summarise",
    "t_interval",
]

BACKBONE_OVERRIDES: dict[str, dict[str, Any]] = {"resnet18": {"lr": 0.01, "head_lr": 0.01, "trainable": "all"}}
"""Settings replaced per backbone for every method that has them (``retrain`` always uses the recipe; methods whose
rates are Adam rates keep theirs)."""

SUMMARY_METRICS = (
    "retain_test_acc",
    "forget_train_acc",
    "forget_acc_gap_to_gold",
    "mia_balanced_acc",
    "nomus",
    "label_free_mia_acc",
    "nomus_label_free",
    "attack_auc",
    "attack_auc_gap_to_gold",
    "forget_verification_auc",
    "activation_distance_to_gold",
    "forget_feature_moved",
    "unlearn_seconds",
    "perturbed_batches",
)


def _settings_for(method_name: str, backbone: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The backbone's overrides and then ``extra``, each limited to the settings the method has."""
    from .unlearn import method_class

    cls = method_class(method_name)
    fields = {f.name for f in dataclasses.fields(cls)}
    backbone_fields = set() if method_name == "retrain" else set(fields)  # retrain always uses the recipe
    if cls.optimizer != "sgd":  # Adam rates are not on the SGD scale of the overrides
        backbone_fields -= {"lr", "head_lr"}
    out = {k: v for k, v in BACKBONE_OVERRIDES.get(backbone, {}).items() if k in backbone_fields}
    out.update({k: v for k, v in (extra or {}).items() if k in fields})
    return out


@dataclass(frozen=True)
class BenchSource:
    """Where a bench worker in another process (or on a Ray node) loads the photos from, so that a cell is a pure
    function of its settings: a bundled dataset by name, or a folder-per-identity tree (aligned and cached on first
    use). Exactly one of the two."""

    bundle: str | None = None
    folder: str | None = None

    def __post_init__(self) -> None:
        if (self.bundle is None) == (self.folder is None):
            raise DLFDError("a bench source is a bundled dataset or a folder, exactly one of the two")

    def digest(self) -> str | None:
        """The bundle's content digest (a folder has none: the caller hashes its crops)."""
        if self.bundle is None:
            return None
        from .bundled import bundle

        return bundle(self.bundle).content_digest()

    def load(self) -> tuple[Any, str | None]:
        """The aligned faces, and a digest naming them (for the prefix-output cache and the cells' keys)."""
        if self.bundle is not None:
            from .bundled import bundle

            chosen = bundle(self.bundle)
            return chosen.load()[1], chosen.content_digest()
        from .data import align_dataset, load_folder

        return align_dataset(load_folder(str(self.folder))), None


@dataclass(frozen=True)
class Cell:
    """One unit of the benchmark: a backbone and a seed, with every forgetting setting and method run on its
    original model. A pure function of these fields (and the photos and the code, which :meth:`key` also names)."""

    backbone: str
    seed: int
    settings: tuple[str, ...]
    methods: tuple[str, ...]
    method_settings: tuple[tuple[str, Any], ...]
    instances: int
    device: str
    recipe: Mapping[str, Any] | None
    split: Mapping[str, Any]
    references: str | None = None

    def key(self, source_digest: str | None) -> str:
        """A hash of everything the cell's records depend on: its fields, the photos' digest, the reference statistics'
        file, this package's code."""
        from .paths import sha256_file

        payload = json.dumps(
            {
                "cell": dataclasses.asdict(self),
                "source": source_digest,
                "references": sha256_file(self.references) if self.references else None,
                "code": code_digest(),
                "format": CELL_FORMAT,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


CELL_FORMAT = 1
"""Version of a cached cell's file; raise it when the records' shape changes."""


@functools.cache
def code_digest() -> str:
    """A hash of this package's Python files: a cached cell is reused only by the code that computed it."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def setting_mode(setting_name: str) -> tuple[str, int]:
    """A bench setting's forgetting mode and how many people it forgets at once: ``identity`` (one person),
    ``identityN`` (N people at once, e.g. ``identity5``), ``instance`` (random training photos; 0 people).

    Raises:
        DLFDError: any other name.
    """
    if setting_name == "instance":
        return "instance", 0
    found = re.fullmatch(r"identity([1-9][0-9]*)?", setting_name)
    if found is None:
        raise DLFDError(
            f"unknown bench setting {setting_name!r}: use identity, identityN (N people at once) or instance"
        )
    return "identity", int(found.group(1) or 1)


def forgotten_people(known: Sequence[str], seed: int, people: int = 1) -> list[str]:
    """Who seed ``seed`` forgets: the ``seed``-th group of ``people`` in one fixed random order of ``known`` (wrapping
    around), so seeds forget different people; with one person, seed i forgets the i-th person of the order."""
    order = [str(p) for p in np.random.default_rng(0).permutation(list(known))]
    return [order[(seed * people + j) % len(order)] for j in range(people)]


def run_bench(
    aligned: Any,
    base_split: Any,
    *,
    methods: Sequence[str],
    seeds: Sequence[int],
    settings: Sequence[str] = ("identity", "instance"),
    method_settings: Mapping[str, Any] | None = None,
    backbones: Sequence[str] = ("dlib_resnet",),
    instances: int = 20,
    device: str = "cpu",
    recipes: Mapping[str, Any] | None = None,
    outputs_for: Callable[[Any], Any] | None = None,
    progress: ProgressFn = no_progress,
    should_stop: Callable[[], bool] | None = None,
    workers: int = 1,
    ray_address: str | None = None,
    source: BenchSource | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    references: str | os.PathLike[str] | None = None,
) -> list[dict[str, Any]]:
    """Run the benchmark; one record per (backbone, setting, seed, model), ``model`` = original, gold or a method.

    The work is split into :class:`Cell` s, one per backbone and seed. ``workers == 1`` (the default) runs them here,
    one after the other; ``workers > 1`` runs them in a local pool of that many processes, and ``ray_address``
    (``"local"`` for a Ray instance started here, or a cluster's address) as Ray tasks. Both need ``source``, from
    which each worker loads the photos itself. With ``cache_dir``, each finished cell's records are written there
    under the cell's :meth:`Cell.key` and read back instead of being computed again, so an interrupted run resumes
    where it stopped. The records, and so the tables, do not depend on where the cells ran.

    ``method_settings`` are given to every method that has them (after the backbone's overrides). ``recipes``: per
    backbone, the :class:`~dlfd_core.train.TrainConfig` of the original and gold models (default: the backbone's
    default recipe).
    ``outputs_for(model)`` (this process only): a cache of ``model``'s frozen-prefix outputs on every photo (a
    :class:`~dlfd_core.studio.KeyedOutputs`: ``collect``, ``prefix_outputs``, ``embeddings``), built once per
    backbone from its first original model; every model whose prefix matches is then evaluated, trained as a gold
    model and unlearned from the cached outputs (the same numbers, several times faster), the others by full passes.
    Workers build their own from ``source``.

    Each record: ``backbone``, ``setting``, ``seed``, ``model``, ``forget`` (who or what was forgotten),
    ``settings`` (the method's), ``metrics`` (the report's, plus ``unlearn_seconds``, ``forget_feature_moved`` and the
    per-photo attack's ``attack_auc`` and ``attack_auc_gap_to_gold``), ``judgement`` (the app's verdict against the
    gold model: ``forgotten``, ``detectable`` or ``inconclusive``), ``attack`` (which attack the judgement used),
    ``error`` (when a method failed; the others still run).

    ``references``: a :class:`~dlfd_core.references.PersonReferences` file (a bundle's shipped one): whole-person
    forgetting on a backbone and recipe it was made for is then judged by offline LiRA.
    """
    from .data.splits import split_to_dict
    from .unlearn import method_class

    for name in methods:
        method_class(name)  # fail early on a typo
    for setting_name in settings:
        mode, people = setting_mode(setting_name)
        if people >= len(base_split.known):
            raise DLFDError(f"{setting_name} forgets {people} people; the split knows {len(base_split.known)}")
    if workers < 1:
        raise DLFDError(f"workers must be at least 1, got {workers}")
    remote = workers > 1 or ray_address is not None
    if remote and source is None:
        raise DLFDError("running cells in other processes needs a BenchSource (a bundled dataset or a folder)")
    split_dict = split_to_dict(base_split)
    cells = [
        Cell(
            backbone=backbone,
            seed=int(seed),
            settings=tuple(settings),
            methods=tuple(methods),
            method_settings=tuple(sorted((method_settings or {}).items())),
            instances=instances,
            device=device,
            recipe=(recipes or {})[backbone].to_dict() if (recipes or {}).get(backbone) is not None else None,
            split=split_dict,
            references=str(Path(references).resolve()) if references is not None else None,
        )
        for backbone in backbones
        for seed in seeds
    ]
    if cache_dir is not None:  # the keys name the photos too: hashed only when a cache needs them
        digest = _digest_of(source, aligned)
        keys = [cell.key(digest) for cell in cells]
    else:
        keys = [""] * len(cells)
    results: dict[int, list[dict[str, Any]]] = {}
    for i, key in enumerate(keys):
        cached = _read_cell(cache_dir, key)
        if cached is not None:
            log.info("bench: cell %s seed %d read from the cache (%s)", cells[i].backbone, cells[i].seed, key)
            results[i] = cached
    todo = [i for i in range(len(cells)) if i not in results]

    def finished(i: int, records: list[dict[str, Any]]) -> None:
        # plain JSON values, as a cached cell reads back: a run's records do not depend on what was cached
        results[i] = json.loads(json.dumps(records, default=str))
        _write_cell(cache_dir, keys[i], cells[i], results[i])

    if not remote:
        caches: dict[str, Any] = {}
        for n, i in enumerate(todo):
            finished(
                i,
                run_cell(
                    cells[i],
                    aligned,
                    base_split,
                    outputs_for=outputs_for,
                    caches=caches,
                    progress=scaled(progress, n / len(todo), (n + 1) / len(todo)),
                    should_stop=should_stop,
                ),
            )
    elif todo:
        assert source is not None
        run = _run_on_ray if ray_address is not None else _run_in_pool
        run(
            [cells[i] for i in todo],
            source,
            workers,
            ray_address,
            lambda n, records: finished(todo[n], records),
            progress,
        )
    progress(1.0, "done")
    return [record for i in range(len(cells)) for record in results[i]]


def _digest_of(source: BenchSource | None, aligned: Any) -> str:
    """What names the photos in a cell's key: the source's digest when it has one, else a hash of the crops' keys
    and pixels (computed once per run)."""
    if source is not None:
        digest = source.digest()
        if digest is not None:
            return digest
    h = hashlib.sha256()
    for key in aligned.keys:
        h.update(str(key).encode())
    h.update(np.ascontiguousarray(aligned.crops).tobytes())
    return h.hexdigest()


def _read_cell(cache_dir: str | os.PathLike[str] | None, key: str) -> list[dict[str, Any]] | None:
    if cache_dir is None:
        return None
    path = Path(cache_dir) / f"cell-{key}.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("bench: ignoring the unreadable cached cell %s (%s)", path, exc)
        return None
    if not isinstance(saved, dict) or saved.get("format") != CELL_FORMAT or not isinstance(saved.get("records"), list):
        log.warning("bench: ignoring the cached cell %s (not this version's format)", path)
        return None
    return saved["records"]


def _write_cell(cache_dir: str | os.PathLike[str] | None, key: str, cell: Cell, records: list[dict[str, Any]]) -> None:
    if cache_dir is None:
        return
    from .paths import atomic_write

    payload = {"format": CELL_FORMAT, "key": key, "cell": dataclasses.asdict(cell), "records": records}
    with atomic_write(Path(cache_dir) / f"cell-{key}.json", "w") as handle:
        json.dump(payload, handle, default=str)


_WORKER_DATA: dict[BenchSource, tuple[Any, str | None]] = {}


def _cell_in_worker(cell: Cell, source: BenchSource, threads: int) -> list[dict[str, Any]]:
    """Run one cell in a worker process: load the photos (once per process) and build the prefix-output cache."""
    import torch

    from .data.splits import split_from_dict

    torch.set_num_threads(max(1, threads))
    if source not in _WORKER_DATA:
        _WORKER_DATA[source] = source.load()
    aligned, digest = _WORKER_DATA[source]
    split = split_from_dict(cell.split)

    def outputs_for(model: Any) -> Any:
        from .evaluate.cache import collect_all

        return collect_all(model, aligned, split, device=cell.device, cache=True, source_digest=digest)

    return run_cell(cell, aligned, split, outputs_for=outputs_for, caches={})


def _threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def _run_in_pool(
    cells: list[Cell],
    source: BenchSource,
    workers: int,
    ray_address: str | None,
    finished: Callable[[int, list[dict[str, Any]]], None],
    progress: ProgressFn,
) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")  # no forked torch thread pools
    threads = _threads_per_worker(workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(_cell_in_worker, cell, source, threads): n for n, cell in enumerate(cells)}
        for done, future in enumerate(as_completed(futures)):
            n = futures[future]
            finished(n, future.result())
            progress((done + 1) / len(cells), f"{done + 1} of {len(cells)} cells done")


def _run_on_ray(
    cells: list[Cell],
    source: BenchSource,
    workers: int,
    ray_address: str | None,
    finished: Callable[[int, list[dict[str, Any]]], None],
    progress: ProgressFn,
) -> None:
    try:
        import ray
    except ImportError:
        raise DLFDError("bench --ray needs Ray: pip install 'dlfd-core[ray]'") from None
    started = not ray.is_initialized()
    if started:
        if ray_address == "local":  # a Ray instance on this machine, with as many CPUs as workers
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=ray_address, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1)(_cell_in_worker)
        threads = _threads_per_worker(workers) if ray_address == "local" else 1
        pending = {task.remote(cell, source, threads): n for n, cell in enumerate(cells)}
        done = 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            n = pending.pop(ready[0])
            finished(n, ray.get(ready[0]))
            done += 1
            progress(done / len(cells), f"{done} of {len(cells)} cells done")
    finally:
        if started:
            ray.shutdown()


def run_cell(
    cell: Cell,
    aligned: Any,
    base_split: Any,
    *,
    outputs_for: Callable[[Any], Any] | None = None,
    caches: dict[str, Any] | None = None,
    progress: ProgressFn = no_progress,
    should_stop: Callable[[], bool] | None = None,
) -> list[dict[str, Any]]:
    """The records of one cell: its original model, and per forgetting setting the gold model and every method.

    ``caches``: prefix-output caches by backbone, shared between the cells run in one process (built from the first
    original model of a backbone by ``outputs_for``).
    """
    from .data import with_forget_identities, with_forget_instances
    from .evaluate.cache import ForwardOutputs
    from .train import config_from_dict, train_on_split

    backbone, seed, device = cell.backbone, cell.seed, cell.device
    caches = {} if caches is None else caches
    recipe = config_from_dict(cell.recipe) if cell.recipe is not None else None
    records: list[dict[str, Any]] = []
    progress(0.0, f"{backbone} seed {seed}: training the original model")

    def train(split: Any, which: str) -> Any:
        fast = _fast_paths(caches.get(backbone), aligned, device)
        return train_on_split(
            aligned,
            split,
            which=which,
            backbone=backbone,
            config=recipe,
            seed=seed,
            device=device,
            should_stop=should_stop,
            embed=fast["embed"],
            prefix=fast["prefix"],
        ).model

    original = train(base_split, "original")
    if outputs_for is not None and backbone not in caches:
        caches[backbone] = outputs_for(original)
    cache = caches.get(backbone)
    for set_index, setting_name in enumerate(cell.settings):
        mode, people = setting_mode(setting_name)
        if mode == "identity":
            group = forgotten_people(base_split.known, seed, people)
            split = with_forget_identities(base_split, group)
            what: Any = group
        else:
            split = with_forget_instances(base_split, cell.instances, seed=seed)
            what = len(split.forget_keys)
        gold_model = train(split, "gold")
        common = {"backbone": backbone, "setting": setting_name, "seed": seed, "forget": what}
        records.extend(
            _setting_records(
                cell,
                aligned,
                split,
                original,
                gold_model,
                cache if cache is not None else ForwardOutputs(),
                common,
                progress=scaled(progress, set_index / len(cell.settings), (set_index + 1) / len(cell.settings)),
                should_stop=should_stop,
            )
        )
    return records


def _setting_records(
    cell: Cell,
    aligned: Any,
    split: Any,
    original: Any,
    gold_model: Any,
    source: OutputSource,
    common: Mapping[str, Any],
    *,
    progress: ProgressFn,
    should_stop: Callable[[], bool] | None,
) -> list[dict[str, Any]]:
    """The original's, the gold model's and every applicable method's record in one forgetting setting."""
    from .evaluate.evaluate import report_from_outputs
    from .evaluate.shift import forget_feature_moved
    from .experiment import forget
    from .unlearn import create_method, method_class

    seed, setting_name = cell.seed, common["setting"]
    records: list[dict[str, Any]] = []
    before = source.collect(original, aligned, split, device=cell.device)
    gold = source.collect(gold_model, aligned, split, device=cell.device)
    references, keys = _references_for(cell, setting_name), split.part_keys(aligned)
    for label, outs in (("original", before), ("gold", gold)):
        report = report_from_outputs(outs, split, gold=gold, seed=seed)
        metrics = dict(report.metrics)
        metrics["forget_feature_moved"] = forget_feature_moved(before, outs)
        judged = _judged(outs, gold, split, seed, references, keys)
        metrics.update(judged.pop("metrics"))
        records.append({**common, "model": label, "settings": {}, "metrics": metrics, **judged})
    applicable = [m for m in cell.methods if setting_mode(setting_name)[0] in method_class(m).modes]
    for method_index, name in enumerate(applicable):
        progress((method_index + 1) / (len(applicable) + 1), f"{cell.backbone} seed {seed} {setting_name}: {name}")
        overrides = _settings_for(name, cell.backbone, dict(cell.method_settings))
        record: dict[str, Any] = {**common, "model": name, "settings": overrides}
        try:
            outcome = forget(
                aligned,
                split,
                original,
                create_method(name, **overrides),
                seed=seed,
                device=cell.device,
                gold_model=gold_model,
                before=before,
                gold_outputs=gold,
                outputs=source,
                report_reference=False,
                should_stop=should_stop,
            )
        except CancelledError:
            raise
        except Exception as exc:  # one method failing must not lose the others' results
            log.warning("%s failed on %s/%s seed %d: %r", name, cell.backbone, setting_name, seed, exc)
            record["error"] = f"{type(exc).__name__}: {exc}"
            records.append(record)
            continue
        metrics = dict(outcome.reports["after"].metrics)
        metrics["forget_feature_moved"] = forget_feature_moved(before, outcome.outputs["after"])
        judged = _judged(outcome.outputs["after"], gold, split, seed, references, keys)
        metrics.update(judged.pop("metrics"))
        record.update(judged)
        metrics["unlearn_seconds"] = outcome.result.seconds
        if any("perturbed" in h for h in outcome.result.history):  # DLFD: how long it synthesised
            metrics["perturbed_batches"] = sum(h.get("perturbed", 0.0) for h in outcome.result.history)
        record.update(settings=outcome.result.settings, rate_scale=list(outcome.result.rate_scale), metrics=metrics)
        records.append(record)
        log.info(
            "%s %s seed %d %s: retain-test %.3f forget %.3f NoMUS %.3f (label-free %.3f) %.1f s",
            cell.backbone,
            setting_name,
            seed,
            name,
            metrics.get("retain_test_acc", math.nan),
            metrics.get("forget_train_acc", math.nan),
            metrics.get("nomus", math.nan),
            metrics.get("nomus_label_free", math.nan),
            outcome.result.seconds,
        )
    return records


def _judged(
    outputs: Mapping[str, Any],
    gold: Mapping[str, Any],
    split: Any,
    seed: int,
    references: Any = None,
    keys: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """The app's judgement against the gold model (:func:`~dlfd_core.evaluate.verdict.judge_against_gold`) for a
    record: its outcome, which attack it used, and that attack's AUC and gap to gold as metrics (NaN with too few
    photos)."""
    from .evaluate.verdict import ATTACK, LIRA_ATTACK, judge_against_gold

    try:
        judgement = judge_against_gold(outputs, gold, split, seed=seed, references=references, keys=keys)
    except DLFDError as error:  # e.g. a diverged model's non-finite outputs: the record says so, the others go on
        log.warning("not judged: %s", error)
        return {
            "judgement": "not judged",
            "attack": None,
            "metrics": {"attack_auc": math.nan, "attack_auc_gap_to_gold": math.nan},
        }
    attack = [c for c in judgement.comparisons if c.name in (ATTACK, LIRA_ATTACK)]
    auc, gap = (attack[0].value, attack[0].difference) if attack else (math.nan, math.nan)
    name = ("lira" if attack[0].name == LIRA_ATTACK else "confidence") if attack else None
    return {
        "judgement": judgement.outcome,
        "attack": name,
        "metrics": {"attack_auc": auc, "attack_auc_gap_to_gold": gap},
    }


@functools.lru_cache(maxsize=4)
def _read_references(path: str) -> Any:
    from .references import PersonReferences

    return PersonReferences.load(path)


def _references_for(cell: Cell, setting_name: str) -> Any:
    """The cell's reference statistics when they apply: whole-person forgetting, on the backbone and the recipe they
    were made with (else ``None``: the reference-free attack)."""
    if cell.references is None or setting_mode(setting_name)[0] != "identity":
        return None
    references = _read_references(cell.references)
    if references.meta.get("backbone") != cell.backbone:
        return None
    if cell.recipe is not None and not _same_recipe(references.meta.get("recipe"), cell.recipe):
        return None
    if references.meta.get("dataset") != cell.split.get("dataset"):
        return None
    return references


def _same_recipe(saved: Any, recipe: Mapping[str, Any]) -> bool:
    """Whether a saved recipe dict is ``recipe``, with fields added since it was saved at their defaults."""
    from .train import config_from_dict

    if not isinstance(saved, Mapping):
        return False
    try:
        return config_from_dict(saved) == config_from_dict(recipe)
    except DLFDError:
        return False


def _fast_paths(cache: Any, aligned: Any, device: str) -> dict[str, Any]:
    """The ``embed`` / ``prefix`` shortcuts of :func:`~dlfd_core.train.train_on_split` from a prefix cache."""
    if cache is None:
        return {"embed": None, "prefix": None}
    return {
        "embed": cache.embeddings,
        "prefix": lambda model, keys: cache.prefix_outputs(model, keys, aligned),
    }


def summarise(
    records: Sequence[Mapping[str, Any]], metrics: Sequence[str] = SUMMARY_METRICS
) -> dict[tuple[str, str], dict[str, dict[str, tuple[float, float, int]]]]:
    """``{(backbone, setting): {model: {metric: (mean, std, n)}}}`` over seeds (NaNs and failed runs left out).

    ``std`` is the sample standard deviation (ddof 1; 0 for a single seed).
    """
    groups: dict[tuple[str, str], dict[str, dict[str, list[float]]]] = {}
    for r in records:
        if "error" in r:
            continue
        per_model = groups.setdefault((r["backbone"], r["setting"]), {}).setdefault(r["model"], {})
        for name in metrics:
            value = metric_value(r, name)
            if not math.isnan(value):
                per_model.setdefault(name, []).append(value)
    out: dict[tuple[str, str], dict[str, dict[str, tuple[float, float, int]]]] = {}
    for key, models in groups.items():
        out[key] = {
            model: {
                name: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v))
                for name, v in values.items()
            }
            for model, values in models.items()
        }
    return out


def format_markdown(
    records: Sequence[Mapping[str, Any]],
    *,
    reference: str = "dlfd",
    header: str = "",
    metrics: Sequence[str] = SUMMARY_METRICS,
) -> str:
    """Markdown tables (one per backbone and setting) and, per setting, the reference method's NoMUS against each."""
    summary = summarise(records, metrics)
    lines = [header.rstrip(), ""] if header else []
    for (backbone, setting_name), models in summary.items():
        seeds = sorted({r["seed"] for r in records if r["backbone"] == backbone and r["setting"] == setting_name})
        noun = "seed" if len(seeds) == 1 else "seeds"
        lines.append(f"### {backbone}, {setting_name} forgetting ({len(seeds)} {noun}: {', '.join(map(str, seeds))})")
        lines.append("")
        lines.append("| model | " + " | ".join(metrics) + " |")
        lines.append("|---|" + "---|" * len(metrics))
        for model, values in models.items():
            cells = []
            for name in metrics:
                if name in values:
                    mean, std, count = values[name]
                    digits = 1 if name.endswith("seconds") else 3
                    # one seed has no spread: its value alone, not a misleading "± 0"
                    fmt = f".{digits}f"
                    shown = _number(mean, fmt)
                    cells.append(f"{shown} ± {_number(std, fmt)}" if count > 1 else shown)
                else:
                    cells.append("–")
            runs = max((values[name][2] for name in values), default=0)
            shown = model if runs == len(seeds) else f"{model} ({runs} {'seed' if runs == 1 else 'seeds'})"
            lines.append(f"| {shown} | " + " | ".join(cells) + " |")
        failed = [r for r in records if "error" in r and r["backbone"] == backbone and r["setting"] == setting_name]
        for r in failed:
            lines.append(f"\n{r['model']} failed on seed {r['seed']}: {r['error']}")
        lines.append("")
        lines.extend(_headline(records, backbone, setting_name))
        if reference in models:
            lines.extend(_comparison(models, reference))
            lines.append("")
            lines.extend(_significance(records, backbone, setting_name, reference))
    return "\n".join(lines).rstrip() + "\n"


STAR = "\\*"  # a Markdown-escaped asterisk

#: The metrics the significance table compares (the headline of a forgetting run).
SIGNIFICANCE_METRICS = (
    "retain_test_acc",
    "forget_acc_gap_to_gold",
    "attack_auc_gap_to_gold",
    "attack_auc_abs_gap_to_gold",
    "label_free_mia_acc",
    "forget_feature_moved",
    "unlearn_seconds",
)


def metric_value(record: Mapping[str, Any], metric: str) -> float:
    """``record``'s value of ``metric``, NaN where it was not measured. ``attack_auc_abs_gap_to_gold`` is derived
    here (so that JSONs written before it render it too): how far the attack AUC is from the gold model's on either
    side. Averaged over seeds, the signed gap lets a model that overshoots on one seed and falls short on another
    look like gold; the absolute gap does not."""
    metrics = record["metrics"]
    if metric == "attack_auc_abs_gap_to_gold":
        gap = metrics.get("attack_auc_gap_to_gold")
        return math.nan if gap is None else abs(float(gap))
    value = metrics.get(metric)
    return math.nan if value is None else float(value)


def paired_differences(
    records: Sequence[Mapping[str, Any]], backbone: str, setting_name: str, reference: str, other: str, metric: str
) -> np.ndarray:
    """``other − reference`` per seed where both ran without error and the metric is defined (paired by seed)."""
    values: dict[str, dict[int, float]] = {reference: {}, other: {}}
    for r in records:
        if r["backbone"] != backbone or r["setting"] != setting_name or r["model"] not in values or "error" in r:
            continue
        value = metric_value(r, metric)
        if not math.isnan(value):
            values[r["model"]][r["seed"]] = value
    seeds = sorted(set(values[reference]) & set(values[other]))
    return np.asarray([values[other][s] - values[reference][s] for s in seeds], dtype=np.float64)


def paired_t_test(differences: np.ndarray) -> float:
    """Two-sided p-value of the paired t-test (``scipy.stats.ttest_rel``) on per-seed differences; NaN with fewer than
    3 seeds or when every difference is the same (the test is undefined: no spread; the table says so instead)."""
    from scipy.stats import ttest_1samp

    d = np.asarray(differences, dtype=np.float64)
    if len(d) < 3 or np.all(d == d[0]):
        return math.nan
    return float(ttest_1samp(d, 0.0).pvalue)


def _number(value: float, fmt: str) -> str:
    """``value`` formatted, without a "-0.000" for a value that rounds to zero from below."""
    text = f"{value:{fmt}}"
    return f"{0.0:{fmt}}" if text.lstrip("-+").strip("0.") == "" and text.startswith("-") else text


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The ``level`` confidence interval of the mean of ``values`` over seeds (Student's t, ``n − 1`` degrees of
    freedom); NaNs with fewer than 2 values, the mean twice when they do not vary."""
    from scipy.stats import t

    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return math.nan, math.nan
    mean, sem = float(v.mean()), float(v.std(ddof=1)) / math.sqrt(len(v))
    if sem == 0:
        return mean, mean
    half = float(t.ppf(0.5 + level / 2, len(v) - 1)) * sem
    return mean - half, mean + half


def _headline(records: Sequence[Mapping[str, Any]], backbone: str, setting_name: str) -> list[str]:
    """Each model's headline metrics as the mean over seeds with its 95 % t-interval."""
    per_model: dict[str, dict[str, list[float]]] = {}
    verdicts: dict[str, list[str]] = {}
    attacks: set[str] = set()
    for r in records:
        if r["backbone"] != backbone or r["setting"] != setting_name or "error" in r:
            continue
        values = per_model.setdefault(r["model"], {})
        if "judgement" in r:
            verdicts.setdefault(r["model"], []).append(str(r["judgement"]))
        if r.get("attack"):
            attacks.add(str(r["attack"]))
        for metric in SIGNIFICANCE_METRICS:
            value = metric_value(r, metric)
            if not math.isnan(value):
                values.setdefault(metric, []).append(value)
    attack = {
        "lira": "offline LiRA against the shipped reference statistics",
        "confidence": "the reference-free logit-confidence AUC",
    }
    used = " and ".join(attack[a] for a in sorted(attacks) if a in attack)
    lines = [
        "Headline, mean over seeds [95 % interval of the mean, Student's t over seeds; one seed: no interval]; "
        "verdicts: the app's judgement against the gold model per seed (docs/app.md)"
        + (f"; attack_auc: {used}:" if used else ":"),
        "",
        "| model | " + " | ".join(SIGNIFICANCE_METRICS) + " | verdicts |",
        "|---|" + "---|" * (len(SIGNIFICANCE_METRICS) + 1),
    ]
    for model, values in per_model.items():
        cells = []
        for metric in SIGNIFICANCE_METRICS:
            v = np.asarray(values.get(metric, []))
            fmt = ".1f" if metric.endswith("seconds") else ".3f"
            if len(v) == 0:
                cells.append("–")
                continue
            low, high = t_interval(v)
            shown = _number(float(v.mean()), fmt)
            cells.append(shown + ("" if math.isnan(low) else f" [{_number(low, fmt)}, {_number(high, fmt)}]"))
        seen = verdicts.get(model, [])
        counts = ", ".join(f"{name} {seen.count(name)}" for name in dict.fromkeys(sorted(seen)))
        cells.append(f"{counts} of {len(seen)}" if seen else "–")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _significance(records: Sequence[Mapping[str, Any]], backbone: str, setting_name: str, reference: str) -> list[str]:
    """A table of each model's mean difference from ``reference`` over seeds, with the paired t-test's p-value;
    ``*`` marks p < 0.05 (no correction for the many comparisons: read it as a screen, not a proof)."""
    models = list(
        dict.fromkeys(r["model"] for r in records if r["backbone"] == backbone and r["setting"] == setting_name)
    )
    others = [m for m in models if m not in (reference, "original")]
    if not others:
        return []
    lines = [
        f"Difference from {reference}, mean over seeds (other − {reference}) [its 95 % t-interval], paired t-test "
        "p-value over seeds; "
        "\\* p < 0.05 (3 seeds or more), – not measured, = identical on every seed, (every seed) the same "
        "difference on every seed:",
        "",
        "| model | " + " | ".join(SIGNIFICANCE_METRICS) + " |",
        "|---|" + "---|" * len(SIGNIFICANCE_METRICS),
    ]
    for other in others:
        cells = []
        for metric in SIGNIFICANCE_METRICS:
            d = paired_differences(records, backbone, setting_name, reference, other, metric)
            if len(d) == 0:
                cells.append("–")
                continue
            p = paired_t_test(d)
            fmt = ".1f" if metric.endswith("seconds") else ".3f"
            if math.isnan(p):
                same = len(d) > 1 and bool(np.all(d == d[0]))
                cells.append("=" if same and d[0] == 0 else f"{d.mean():+{fmt}}" + (" (every seed)" if same else ""))
            else:
                mark = STAR if p < 0.05 else ""
                low, high = t_interval(d)
                cells.append(f"{d.mean():+{fmt}} [{low:+{fmt}}, {high:+{fmt}}] (p {p:.2g}){mark}")
        lines.append(f"| {other} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _comparison(models: Mapping[str, Mapping[str, tuple[float, float, int]]], reference: str) -> list[str]:
    out = []
    for key in ("nomus", "nomus_label_free"):
        if key not in models[reference]:
            continue
        mine = models[reference][key][0]
        others = {m: v[key][0] for m, v in models.items() if m not in (reference, "original", "gold") and key in v}
        better = [m for m, v in others.items() if v > mine + 1e-12]
        not_better = [m for m, v in others.items() if v <= mine + 1e-12]
        gold = f" (gold {models['gold'][key][0]:.3f})" if "gold" in models and key in models["gold"] else ""
        out.append(
            f"- {reference} mean {key} {mine:.3f}{gold}: at least as high as {', '.join(not_better) or 'none'}; "
            f"**lower than {', '.join(f'{m} ({others[m]:.3f})' for m in better) or 'none'}**."
        )
    return out
