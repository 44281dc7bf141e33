"""Experiment grids: a TOML spec -> tasks -> an executor -> the results store.

    models = ["smollm2-135m"]
    sources = ["books", "random"]
    lengths = [16, 32]
    vectors = [1, 2]
    recipes = ["default"]
    samples = 2
    seeds = [0]
    max_steps = 2000      # optional: the recipes' own budgets otherwise
    text_seed = 0         # optional: which passages each source gives

    [recipes.fast]        # or a table per recipe: a variant under its own name
    base = "cold"
    lr = 0.1

or, for a capacity search over each passage's prefixes (search.py) in place of a grid of lengths:

    strategy = "horizon"  # or bisect, progressive, paper-grid
    max_tokens = 512      # the passages' length: the most a search can find
    step = 8              # optional: progressive's growth; tolerance = 1: bisect's stopping gap

Finished rows are skipped, so a rerun resumes where a crash (kill -9 included) left off. A row is keyed by what
ran (files/database.py): the model's fingerprint, the recipe's full settings with the budget, the text seed, ... so a
rerun with any of those changed runs new rows beside the old ones.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import socket
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from cramming import api
from cramming.core.errors import CrammingError
from cramming.core.loop import StepInfo, text_logits
from cramming.core.metrics import measure
from cramming.core.precision import autocast
from cramming.core.recipes import RECIPES, REGISTRY, Recipe, get_recipe, parse_setting
from cramming.experiments import search
from cramming.experiments.capacity import PAPER_GRID, Capacity
from cramming.files.database import IDENTITY, Store, TaskKey
from cramming.files.vector_file import vector_bytes
from cramming.model.encoder import model_encoder
from cramming.model.loading import LoadedModel
from cramming.model.texts import check_source, cut, load_samples

HISTORY_POINTS = 200  # per-step history kept per row, evenly thinned to at most this many points

# Samples crammed at once on a CPU when nobody says: batch 4 gave 1.5-1.6x the sample-steps per second of batch 1,
# and batch 16 1.6x, in two runs on 2 cores (benchmarks/step_cost.py, docs/notebook.md).
CPU_BATCH_SIZE = 4


def auto_batch_size(model: torch.nn.Module, n_tokens: int, n_vectors: int, prefix_id: int | None = None,
                    cap: int = 256) -> int:
    """How many samples to cram at once. On CUDA: as many as fit in 80% of the free memory, from the peak
    memory of one sample's forward and backward pass, measured here. Elsewhere: CPU_BATCH_SIZE."""
    embedding = model.get_input_embeddings()
    device = embedding.weight.device
    if device.type != "cuda":
        return CPU_BATCH_SIZE
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    vectors = torch.zeros(1, n_vectors, embedding.weight.shape[1], device=device, requires_grad=True)
    ids = torch.zeros(1, n_tokens, dtype=torch.long, device=device)
    with autocast(device):
        logits = text_logits(model, vectors, embedding(ids), prefix_id)
    F.cross_entropy(logits.float().transpose(1, 2), ids).backward()
    per_sample = max(1, torch.cuda.max_memory_allocated(device) - before)
    del vectors, logits
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(cap, int(0.8 * free / per_sample)))


def asked_batch_size(batch_size: int | None, device: str) -> int:
    """A row's batch size as its key holds it: the one asked for, else the device's own: CPU_BATCH_SIZE on a CPU,
    0 on CUDA (as many as fit in its free memory, chosen per batch; the row's run conditions say how many)."""
    return batch_size or (0 if device == "cuda" else CPU_BATCH_SIZE)


@dataclass(frozen=True)
class ModelId:
    """A loaded model as rows know it: its name (a label), the fingerprints that identify it, and how it runs:
    its device kind (which resolves a recipe's precision) and the batch size keyed (asked_batch_size)."""

    name: str
    fingerprint: str
    tokenizer_fingerprint: str
    device: str = "cpu"
    batch_size: int = CPU_BATCH_SIZE


@dataclass(frozen=True)
class Spec:
    models: list[str]
    sources: list[str]
    lengths: list[int] = field(default_factory=list)
    vectors: list[int] = field(default_factory=lambda: [1])
    recipes: list[str] | dict[str, dict] = field(default_factory=lambda: ["default"])  # names, or NAME -> changes
    samples: int | list[int] = 1  # the first n passages, or these passages (0-based) of the source's draw
    seeds: list[int] = field(default_factory=lambda: [0])
    max_steps: int | None = None
    text_seed: int = 0
    strategy: str = "grid"  # grid: every length of `lengths`; else a capacity search per passage (search.PLANS)
    max_tokens: int | None = None  # a search: the passages' length
    step: int = 8  # progressive: tokens added a try
    tolerance: int = 1  # bisect: the gap between exact and not exact it stops at

    @classmethod
    def from_toml(cls, path: str | Path) -> Spec:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CrammingError(f"no such spec file: {path}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise CrammingError(f"{path} is not valid TOML ({err})") from None
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise CrammingError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; "
                                f"known: {', '.join(sorted(known))}")
        try:
            spec = cls(**data)
        except TypeError as err:
            raise CrammingError(f"{path}: {err}") from None
        spec.check()
        return spec

    def check(self) -> None:
        if self.strategy not in ("grid", *search.PLANS):
            raise CrammingError(f"spec: strategy must be grid or one of {', '.join(search.PLANS)}, got "
                                f"{self.strategy!r}")
        lists = ("models", "sources", "vectors", "seeds") + (("lengths",) if self.strategy == "grid" else ())
        for name in lists:
            value = getattr(self, name)
            if not isinstance(value, list) or not value:
                raise CrammingError(f"spec: {name} must be a non-empty list")
        if not isinstance(self.recipes, (list, dict)) or not self.recipes:
            raise CrammingError("spec: recipes must be a non-empty list of names or a table of [recipes.NAME]")
        if isinstance(self.recipes, dict) and any(not isinstance(t, dict) for t in self.recipes.values()):
            raise CrammingError("spec: each [recipes.NAME] is a table of the fields to change (base = a recipe)")
        if any(not isinstance(x, int) or x < 1 for x in self.lengths + self.vectors):
            raise CrammingError("spec: lengths and vectors must be positive integers")
        if isinstance(self.samples, list):  # passage numbers
            good = all(isinstance(i, int) and i >= 0 for i in self.samples) and 0 < len(self.samples) == len(
                set(self.samples))
        else:  # the first n passages
            good = isinstance(self.samples, int) and self.samples >= 1
        if not good:
            raise CrammingError("spec: samples must be a positive integer (the first n passages) or a list of "
                                "distinct passage numbers from 0")
        if self.strategy != "grid" and (not isinstance(self.max_tokens, int) or self.max_tokens < 1):
            raise CrammingError(f"spec: a {self.strategy} search needs max_tokens, the passages' length (a positive "
                                "integer)")
        if self.step < 1 or self.tolerance < 1:
            raise CrammingError("spec: step and tolerance must be positive integers")
        for name in self.recipes:
            self.recipe(name)
        for source in self.sources:  # before the database is created: a bad spec leaves nothing behind
            check_source(source)

    def recipe(self, name: str) -> Recipe:
        """The recipe as this spec runs it: the named one (its latest version, or name@version), or its
        [recipes.NAME] table (`base`, default the name itself, with the table's fields changed), with the spec's
        budget where it sets one. A task's key names the first by its version, the second by NAME."""
        recipe = get_recipe(name) if isinstance(self.recipes, list) or name not in self.recipes else None
        if recipe is None:
            changes = dict(self.recipes[name])
            base = changes.pop("base", name)
            if base not in RECIPES and base not in REGISTRY:
                raise CrammingError(f"spec: [recipes.{name}] needs base = one of {', '.join(RECIPES)} or a version "
                                    f"of one ({', '.join(REGISTRY)})")
            recipe = get_recipe(base).override(changes, name=name)
        return recipe if self.max_steps is None else replace(recipe, max_steps=self.max_steps)

    def digest(self, name: str, model: ModelId, n_vectors: int) -> str:
        """The rows' recipe digest: the recipe's settings as run on the model's device and, for a recipe that
        starts from the model's encoder, that encoder's own digest, so that another encoder's rows are another
        run's."""
        recipe = self.recipe(name).resolved(model.device)
        if not recipe.encoder:
            return recipe.digest()
        both = f"{recipe.digest()}|{model_encoder(model, n_vectors).digest()}"
        return hashlib.sha256(both.encode()).hexdigest()[:16]

    @property
    def indices(self) -> list[int]:
        """The passages the spec runs, by their number in the source's draw."""
        return self.samples if isinstance(self.samples, list) else list(range(self.samples))

    def size(self) -> int | None:
        """Tasks in the grid, over all models; None for a capacity search, whose tries depend on their results."""
        if self.strategy != "grid":
            return None
        return (len(self.models) * len(self.sources) * len(self.lengths) * len(self.vectors) * len(self.recipes)
                * len(self.seeds) * len(self.indices))

    def tasks(self, model: ModelId) -> Iterator[TaskKey]:
        """The grid's tasks for one loaded model."""
        for source, length, n, recipe, seed in itertools.product(
                self.sources, self.lengths, self.vectors, self.recipes, self.seeds):
            digest, label = self.digest(recipe, model, n), self.recipe(recipe).name  # default -> default@N
            for sample in self.indices:
                yield TaskKey(model.name, label, model.fingerprint, model.tokenizer_fingerprint, source,
                              self.text_seed, sample, length, n, digest, seed, model.batch_size)


def thin(history: list, points: int = HISTORY_POINTS) -> list:
    """Evenly spaced entries of a per-step history, the last one always kept."""
    if len(history) <= points:
        return list(history)
    stride = len(history) / points
    return [history[int(i * stride)] for i in range(points - 1)] + [history[-1]]


class Worker:
    """Holds one loaded model and serves many tasks: in this process (local executor) or as a Ray actor."""

    def __init__(self, model: str, device: str, spec: Spec, threads: int | None = None,
                 batch_size: int | None = None, on_step: Callable[[StepInfo], None] | None = None):
        if threads is not None:
            torch.set_num_threads(threads)
        self.lm = api.as_model(model, device=device)  # loaded once, not per task
        self.spec = spec
        self.batch_size = batch_size  # None: chosen per batch from the device (free GPU memory, or CPU default)
        self.on_step = on_step  # each cramming step of a batch (the local executor's progress)
        self._texts: dict[tuple[str, int, int], list[str]] = {}

    def describe(self) -> dict:
        return {"host": socket.gethostname(), "pid": os.getpid(), "device": str(self.lm.device),
                "threads": torch.get_num_threads(), "model": self.model_id()}

    def model_id(self) -> ModelId:
        device = self.lm.device.type
        return ModelId(self.lm.name, self.lm.fingerprint, self.lm.tokenizer_fingerprint, device,
                       asked_batch_size(self.batch_size, device))

    def passage(self, source: str, tokens: int, text_seed: int, sample: int) -> str:
        """The sample-th passage of `tokens` tokens the source gives with this text seed."""
        where = (source, tokens, text_seed)
        if where not in self._texts:
            samples = load_samples(source, max(self.spec.indices) + 1, tokens, self.lm.tokenizer, text_seed)
            self._texts[where] = [s.text for s in samples]
        return self._texts[where][sample]

    def text(self, key: TaskKey) -> str:
        """The task's text: its passage, cut to its first `length` tokens. A cut that does not encode back to
        exactly those tokens (texts.cut) is refused: a row's crammed length is always its key's."""
        text = self.passage(key.source, key.passage_tokens, key.text_seed, key.sample)
        if key.length == key.passage_tokens:
            return text
        prefix = cut(self.lm.tokenizer, self.lm.tokenizer(text, add_special_tokens=False)["input_ids"], key.length)
        if prefix is None:
            raise CrammingError(f"{key.source} passage {key.sample} (text seed {key.text_seed}) cut to {key.length} "
                                "tokens does not encode back to them (a character or a merge split at the cut)")
        return prefix

    def size_for(self, keys: list[TaskKey]) -> int:
        """How many of these tasks (one recipe and vector count) to cram at once: batch_size, or what the
        device holds at their longest length (auto_batch_size)."""
        return self.batch_size or auto_batch_size(self.lm.model, max(key.length for key in keys), keys[0].vectors,
                                                  api.prefix_token(self.lm.tokenizer, self.spec.recipe(keys[0].recipe)))

    def run(self, keys: list[TaskKey], warm: list[torch.Tensor | None] | None = None
            ) -> list[tuple[TaskKey, dict, dict, str, bytes, list, dict]]:
        """Cram tasks that share a recipe, vector count and seed, size_for(keys) at a time, each from its own
        warm start where `warm` gives one, and measure each
        -> per task (key, recipe as run, metrics, text, vector file bytes, thinned history, run conditions)."""
        k = keys[0]
        recipe = self.spec.recipe(k.recipe)
        warm = warm or [None] * len(keys)
        size = self.size_for(keys)
        out = []
        for i in range(0, len(keys), size):
            chunk = keys[i: i + size]
            texts = [self.text(key) for key in chunk]
            crammed = api.compress(texts, self.lm, n_vectors=k.vectors, recipe=recipe, seed=k.seed,
                                   warm_start=warm[i: i + size], on_step=self.on_step)
            for key, text, compressed in zip(chunk, texts, crammed):
                if len(compressed.token_ids) != key.length:  # the text crammed as other tokens than its key says
                    raise CrammingError(f"{key.source} passage {key.sample} (text seed {key.text_seed}) crammed as "
                                        f"{len(compressed.token_ids)} tokens, not {key.length}: no row is stored")
                metrics = measure(compressed, self.lm).to_dict()
                out.append((key, compressed.recipe.to_dict(), metrics, text,
                            vector_bytes(compressed.vectors, compressed.metadata(), compressed.storage),
                            thin(compressed.history), compressed.conditions))
        return out


def recipe_tables(variants: list[str], settings: list[str]) -> dict[str, dict]:
    """Variants from a command line, --variant NAME=BASE and --set NAME.FIELD=VALUE -> a spec's [recipes.NAME]
    tables (Spec checks them, and a spec carries them to Ray workers too)."""
    tables: dict[str, dict] = {}
    for text in variants:
        name, sep, base = text.partition("=")
        if not sep:
            raise CrammingError(f"--variant takes NAME=BASE, got {text!r}")
        tables[name] = {"base": base}
    for text in settings:
        target, sep, setting = text.partition(".")
        if not sep or target not in tables:
            raise CrammingError(f"--set takes NAME.FIELD=VALUE for a --variant NAME, got {text!r}")
        key, value = parse_setting(setting)
        tables[target][key] = value
    return tables


def batches(keys: list[TaskKey], batch_size: int | None) -> list[list[TaskKey]]:
    """Tasks that differ only in their sample share a batch: at most batch_size of them, or the whole group
    when batch_size is None (the worker then splits it to fit its device)."""
    groups: dict[tuple, list[TaskKey]] = {}
    for key in keys:
        groups.setdefault((key.model_fingerprint, key.source, key.text_seed, key.length, key.vectors,
                           key.recipe_digest, key.recipe, key.seed), []).append(key)
    out = []
    for group in groups.values():
        size = batch_size or len(group)
        out += [group[i: i + size] for i in range(0, len(group), size)]
    return out


def pending(spec: Spec, store: Store, model: ModelId, on_skipped: OnSkipped | None = None) -> list[TaskKey]:
    """The model's tasks in the grid that have no row yet; on_skipped hears how many have one."""
    done = store.done()
    tasks = list(spec.tasks(model))
    todo = [k for k in tasks if k.identity() not in done]
    if on_skipped is not None:
        on_skipped(len(tasks) - len(todo))
    return todo


OnTask = Callable[[TaskKey, dict], None]
OnSkipped = Callable[[int], None]


def _commit(store: Store, done: list[tuple[TaskKey, dict, dict, str, bytes, list, dict]],
            on_task: OnTask | None) -> int:
    """Store a finished batch in one transaction, then report each task -> rows added."""
    added = store.add_batch(done)
    if on_task is not None:
        for key, _, metrics, *_ in done:
            on_task(key, metrics)
    return added


def run_local(spec: Spec, store: Store, *, device: str = "auto", on_task: OnTask | None = None,
              batch_size: int | None = None, on_skipped: OnSkipped | None = None,
              on_step: Callable[[StepInfo], None] | None = None) -> int:
    """Run the spec's unfinished tasks in this process, each batch committed as it finishes -> rows added.
    Each model is loaded first, since its fingerprint is part of every row's key. on_step hears every cramming
    step of the batch in flight."""
    added = 0
    for model in spec.models:
        worker = Worker(model, device, spec, batch_size=batch_size, on_step=on_step)
        if spec.strategy != "grid":
            added += run_searches(spec, store, worker, on_task=on_task, on_skipped=on_skipped)
            continue
        for batch in batches(pending(spec, store, worker.model_id(), on_skipped), batch_size):
            added += _commit(store, worker.run(batch), on_task)
    return added


def searches(spec: Spec, store: Store, *, device: str = "auto", on_task: OnTask | None = None,
             batch_size: int | None = None) -> list[Capacity]:
    """Run a search spec in this process, resuming what the store holds, and summarize each search: one
    Capacity per (model, source, vectors, recipe, seed), in the spec's order."""
    found: list[Capacity] = []
    for model in spec.models:
        run_searches(spec, store, Worker(model, device, spec, batch_size=batch_size), on_task=on_task,
                     on_searched=found.append)
    return found


def capacity(model: str | LoadedModel, source: str, *, strategy: str = "horizon", vectors: list[int],
             recipe: str = "default", settings: list[str] | None = None, samples: int = 5, max_tokens: int = 128,
             max_steps: int | None = None, seed: int = 0, step: int = 8, tolerance: int = 1,
             lengths: list[int] | None = None, db: str | Path = "capacity.sqlite", device: str = "auto",
             on_task: OnTask | None = None, command: str = "cramming.experiments.runner.capacity") -> list[Capacity]:
    """`cram capacity`: how many tokens `vectors` vectors hold, on `samples` passages of `max_tokens` tokens of a
    source, by a strategy of search.py (horizon, bisect, progressive, paper-grid over `lengths`, default the
    paper's), every try a row of `db` (a rerun resumes; `command` is recorded among its runs) -> one Capacity per
    vector count. The recipe is the named one with FIELD=VALUE settings, stored under the label they make
    (`default@7+lr=0.1`)."""
    label = get_recipe(recipe, settings).name
    spec = Spec(models=[model], sources=[source], vectors=vectors, lengths=lengths or [],
                recipes={label: {"base": recipe, **dict(map(parse_setting, settings or []))}}, samples=samples,
                seeds=[seed], max_steps=max_steps, text_seed=seed, strategy=strategy, max_tokens=max_tokens,
                step=step, tolerance=tolerance)
    spec.check()
    store = Store(db)
    store.record_run(command)
    try:
        return searches(spec, store, device=device, on_task=on_task)
    finally:
        store.close()


def run_searches(spec: Spec, store: Store, worker: Worker, *, on_task: OnTask | None = None,
                 on_skipped: OnSkipped | None = None, on_searched: Callable[[Capacity], None] | None = None) -> int:
    """The spec's capacity search (search.py) on each of its passages, per (source, vectors, recipe, seed), every
    try a row -> rows added. on_searched hears each finished search's summary."""
    model, added = worker.model_id(), 0
    for source, n, name, seed in itertools.product(spec.sources, spec.vectors, spec.recipes, spec.seeds):
        digest, label = spec.digest(name, model, n), spec.recipe(name).name
        passages = [worker.passage(source, spec.max_tokens, spec.text_seed, i) for i in spec.indices]
        limits = [len(worker.lm.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in passages]
        visited: set[tuple] = set()

        def key_for(plan: search.Plan, length: int) -> TaskKey:
            key = TaskKey(model.name, label, model.fingerprint, model.tokenizer_fingerprint, source, spec.text_seed,
                          plan.sample, length, n, digest, seed, model.batch_size, passage_tokens=spec.max_tokens,
                          warm_from=plan.warm_from())
            visited.add(key.identity())
            return key

        def run(keys: list[TaskKey], warm: list[torch.Tensor | None]) -> None:
            nonlocal added
            size = worker.size_for(keys)  # each batch commits as it finishes
            for i in range(0, len(keys), size):
                added += _commit(store, worker.run(keys[i: i + size], warm[i: i + size]), on_task)

        plans = [search.plan(spec.strategy, i, limit, tolerance=spec.tolerance, step=spec.step,
                             lengths=tuple(spec.lengths) or PAPER_GRID) for i, limit in zip(spec.indices, limits)]
        search.drive(plans, key_for, store, run, on_skipped)
        if on_searched is not None:
            rows = [r for r in store.rows() if tuple(r[c] for c in IDENTITY) in visited]
            on_searched(search.summarize(rows, n, spec.strategy))
    return added


def _check_reachable(address: str | None) -> None:
    """Fail at once on a HOST:PORT nobody listens on; Ray itself would retry for minutes."""
    host, _, port = (address or "").rpartition(":")
    if not host or "://" in address or not port.isdigit():
        return  # a new local instance, "auto", or a ray:// client address: Ray's own checks apply
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as err:
        raise CrammingError(f"cannot reach a Ray cluster at {address}: {err.strerror or err}") from None


def run_ray(spec: Spec, store: Store, *, device: str = "auto", on_task: OnTask | None = None,
            batch_size: int | None = None, on_skipped: OnSkipped | None = None,
            address: str | None = None, workers: int | None = None, cpus_per_worker: int = 1,
            on_workers: Callable[[list[dict]], None] | None = None) -> int:
    """Run the spec's unfinished tasks on Ray actors, each holding one model and serving many batches.

    Results stream back to this process, which alone writes the store, so the local executor's guarantees
    hold: a row commits as its batch returns, reruns skip finished rows. A worker that dies mid-task is
    restarted and its batch retried (at most twice); a row can never be stored twice (primary key).
    GPU workers ask Ray for one GPU each (device cuda, or auto on a cluster with GPUs); CPU workers for
    cpus_per_worker CPUs. By default there is one worker per GPU, else one per cpus_per_worker CPUs. The first
    worker of each model tells the model's fingerprint, which keys its rows, before the others start.
    """
    try:
        import ray
        from ray.exceptions import RayError
    except ImportError:
        raise CrammingError("the ray executor needs Ray: pip install 'cramming[ray]'") from None
    if spec.strategy != "grid":
        raise CrammingError(f"a {spec.strategy} search runs on the local executor only (each round's tries depend on "
                            "the last)")
    added = 0
    ours = not ray.is_initialized()  # a caller that has connected Ray itself keeps its connection
    if ours:
        _check_reachable(address)
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise CrammingError(f"cannot reach a Ray cluster at {address or 'a new local instance'}: {err}") from None
    try:
        resources = ray.cluster_resources()
        gpu = device.startswith("cuda") or (device == "auto" and resources.get("GPU", 0) > 0)
        if gpu and resources.get("GPU", 0) < 1:
            raise CrammingError("CUDA was asked for but the Ray cluster has no GPU")
        # Ray hands each GPU worker its own GPU as cuda:0, so an index in --device has no meaning here.
        remote = ray.remote(Worker).options(num_cpus=0 if gpu else cpus_per_worker, num_gpus=1 if gpu else 0,
                                            max_restarts=2, max_task_retries=2)
        n_workers = workers or max(1, int(resources["GPU"] if gpu else resources.get("CPU", 1) // cpus_per_worker))
        # GPU workers size their batches from free memory, so they get whole groups; CPU work is spread thin.
        size = batch_size or (None if gpu else CPU_BATCH_SIZE)
        for model in spec.models:
            start = lambda: remote.remote(model, "cuda" if gpu else "cpu", spec,  # noqa: E731
                                          None if gpu else cpus_per_worker, batch_size)
            pool = [start()]
            first = ray.get(pool[0].describe.remote())
            queue = batches(pending(spec, store, first["model"], on_skipped), size)
            pool += [start() for _ in range(min(n_workers, len(queue)) - 1)]
            if on_workers is not None:
                on_workers([first] + ray.get([w.describe.remote() for w in pool[1:]]))
            running = {}

            def submit(worker) -> None:
                if queue:
                    running[worker.run.remote(queue.pop(0))] = worker

            for w in pool:
                submit(w)
            while running:
                [ref], _ = ray.wait(list(running), num_returns=1)
                worker = running.pop(ref)
                added += _commit(store, ray.get(ref), on_task)
                submit(worker)
            for w in pool:
                ray.kill(w)
    except RayError as err:
        cause = getattr(err, "cause", None)
        if isinstance(cause, CrammingError):
            raise cause from None
        message = str(err).strip().splitlines()
        raise CrammingError(f"a Ray worker failed ({message[0] if message else type(err).__name__}); "
                            "finished rows are stored, rerun to resume") from None
    finally:
        if ours:
            ray.shutdown()
    return added
