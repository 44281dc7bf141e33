"""The cramming loop: optimize a few input vectors so that a frozen LM regenerates a text.

For each sample i we train `mem_i` of shape [n, d]. The model sees [mem_i ; embed(text_i)] and must predict
text token t from position n-1+t: the first token comes from the last memory vector, so greedy decoding
later needs nothing but the vectors. Only the vectors are trained; the model's weights are frozen and no
weight gradient is computed.

A batch of texts is crammed at once, each sample with its own vectors and its own stopping: a sample whose
teacher-forced argmax is right everywhere gets a greedy-decode check, and once its round trip is exact its
vectors are frozen and it leaves the batch, so later steps cost only what the remaining samples need.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Literal

import torch
import torch.nn.functional as F

from .decode import greedy_decode, with_prefix
from .errors import CrammingError
from .models import autocast


@dataclass(frozen=True)
class Recipe:
    """Initialization + optimizer + schedule + loss + stopping rule."""

    name: str
    lr: float
    betas: tuple[float, float] = (0.9, 0.9)
    weight_decay: float = 0.01
    init: Literal["embedding_std", "uniform"] = "embedding_std"
    init_scale: float = 1.0  # embedding_std: multiplies randn * std(embeddings); uniform: upper bound
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0
    final_lr: float = 0.0  # cosine only: the learning rate reached at the end of each period
    period: int | None = None  # cosine only: steps per cosine cycle, restarting at lr after each; None: max_steps
    period_mult: float = 1.0  # each cosine cycle this many times longer than the one before
    grad_clip: float | None = None  # per-sample gradient-norm clip
    margin: float | None = None  # a token whose logit leads every other by more than this leaves the loss
    prefix_token: bool = False  # a fixed token (BOS, else EOS) before the vectors takes the attention sink's seat
    prior: bool = False  # add the model's prior (prior.py: the mean of the vectors crammed for a few passages)
    max_steps: int = 5000
    # Give up on a sample whose best teacher-forced accuracy has not risen for this many steps (the paper's rule).
    patience: int | None = None

    def __post_init__(self) -> None:
        # Checked here so that a bad recipe fails at once with one line, not after minutes of cramming.
        problems = [
            (not self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (not self.final_lr >= 0, f"final_lr must be >= 0, got {self.final_lr}"),
            (self.schedule not in ("constant", "cosine"),
             f"schedule must be constant or cosine, got {self.schedule!r}"),
            (self.init not in ("embedding_std", "uniform"),
             f"init must be embedding_std or uniform, got {self.init!r}"),
            (self.warmup_steps < 0, f"warmup_steps must be >= 0, got {self.warmup_steps}"),
            (self.period is not None and self.period < 1, f"period must be >= 1, got {self.period}"),
            # Shrinking periods would end in 1-step cycles: no schedule, and lr_factor walking every step.
            (not self.period_mult >= 1, f"period_mult must be >= 1, got {self.period_mult}"),
            (self.grad_clip is not None and not self.grad_clip > 0, f"grad_clip must be > 0, got {self.grad_clip}"),
            (self.max_steps < 0, f"max_steps must be >= 0, got {self.max_steps}"),
            (self.patience is not None and self.patience < 1, f"patience must be >= 1, got {self.patience}"),
            (self.prior and not self.prefix_token, "prior needs prefix_token: the prior is crammed with one"),
        ]
        for bad, message in problems:
            if bad:
                raise CrammingError(f"recipe {self.name!r}: {message}")

    def to_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        """What ran, as a short hash: every setting, the step budget included, but not the name, which is a
        label. Two recipes with the same settings are the same run whatever they are called."""
        settings = {k: v for k, v in self.to_dict().items() if k != "name"}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


RECIPES: dict[str, Recipe] = {
    # Kuratov et al. (2025): their optimizer, init, budget and stopping rule, on our objective (see DESCRIPTIONS).
    "paper": Recipe(name="paper", lr=1e-2, init="embedding_std", max_steps=5000, patience=2000),
    # Tarasov et al. (Progressive Cramming), as published.
    "progressive": Recipe(name="progressive", lr=0.1, init="uniform", init_scale=0.02, schedule="cosine",
                          warmup_steps=100, final_lr=1e-3, grad_clip=1.0, max_steps=5000),
    # Ours, from a random start (benchmarks/README.md): a BOS token before the vectors (see README), the paper's
    # init and optimizer with a 30x larger step that cosine-decays over 600 steps and then starts over in a
    # period twice as long (600, 1200, 2400, ... steps: a short text finishes in the first, a long one gets the
    # time to settle), and a loss that leaves out the tokens already right by 2 logits, spending the one vector
    # on those still wrong. It needs no prior: for another model when the prior's one-time build costs too much.
    "cold": Recipe(name="cold", lr=0.3, init="embedding_std", schedule="cosine", final_lr=1e-3, period=600,
                   period_mult=2.0, margin=2.0, prefix_token=True, max_steps=5000),
}
# Ours: `cold` started from the model's prior (prior.py: the mean of the vectors `cold` crams for 16 passages),
# in periods of 1000, 2000, ... steps: from the prior a long text keeps its lead through the first period,
# where a restart at step 600 threw it away; and no weight decay: at 30x the paper's step, AdamW's decay
# (lr * 0.01 of the vector per step) held 64-token solutions at norms ~55 where they settle at ~90
# (benchmarks/README.md, "The model's prior" and "No weight decay").
RECIPES["default"] = replace(RECIPES["cold"], name="default", prior=True, period=1000, weight_decay=0.0)

# What each named recipe is, in the words reports and README use: a recipe is "as published" only where it is.
DESCRIPTIONS = {
    "paper": "Kuratov et al.'s optimizer, init, 5000-step budget and patience rule, on our objective: the first "
             "token is predicted from the vectors (their code gives it as input), so the vectors decode alone",
    "progressive": "Tarasov et al.'s Progressive Cramming optimizer, init and schedule, as published",
    "cold": "ours, from a random start: a prefix token, lr 0.3 in cosine periods of 600, 1200, ... steps, and a loss "
            "without the tokens already right by 2 logits",
    "default": "ours: cold started from the model's prior, periods of 1000, 2000, ... steps, no weight decay",
}


# Samples crammed at once on a CPU when nobody says: batch 4 gave 1.5-1.6x the sample-steps per second of batch 1,
# and batch 16 1.6x, in two runs on 2 cores (benchmarks/step_cost.py, benchmarks/README.md).
CPU_BATCH_SIZE = 4


def auto_batch_size(model: torch.nn.Module, n_tokens: int, n_vectors: int, prefix: int | None = None,
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
    mem = torch.zeros(1, n_vectors, embedding.weight.shape[1], device=device, requires_grad=True)
    ids = torch.zeros(1, n_tokens, dtype=torch.long, device=device)
    with autocast(device):
        logits = text_logits(model, mem, embedding(ids), prefix)
    F.cross_entropy(logits.float().transpose(1, 2), ids).backward()
    per_sample = max(1, torch.cuda.max_memory_allocated(device) - before)
    del mem, logits
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(cap, int(0.8 * free / per_sample)))


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise CrammingError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}")
    return RECIPES[name]


@dataclass
class CramResult:
    """One sample's outcome. `vectors` are the exact ones when `exact`, else the best seen."""

    token_ids: list[int]
    vectors: torch.Tensor  # [n, d], float32, on the CPU
    exact: bool
    diverged: bool  # the loss turned NaN or infinite: the sample stopped there, `vectors` the best before it
    steps: int  # optimizer steps applied to `vectors`
    accuracy: float  # teacher-forced argmax accuracy of `vectors`
    loss: float  # mean cross-entropy (nats per token) of `vectors`
    seconds: float  # wall time from the start of the batch until this sample finished
    decoded_ids: list[int] = field(default_factory=list)
    history: list[tuple[int, float, float]] = field(default_factory=list)  # (step, loss, accuracy) per step


@dataclass
class StepInfo:
    """What a progress display needs after each step."""

    step: int
    max_steps: int
    active: int
    done: int
    exact: int
    loss: float  # mean over active samples
    accuracy: float  # mean over active samples


def init_vectors(recipe: Recipe, n_vectors: int, embedding: torch.Tensor, seed: int) -> torch.Tensor:
    """Draw the initial [n, d] vectors on the CPU, from the seed alone, so a sample starts the same whether it
    is crammed alone or in a batch, on any device."""
    g = torch.Generator().manual_seed(seed)
    d = embedding.shape[1]
    if recipe.init == "embedding_std":
        return torch.randn(n_vectors, d, generator=g) * embedding.float().std().item() * recipe.init_scale
    return torch.rand(n_vectors, d, generator=g) * recipe.init_scale


def lr_factor(recipe: Recipe, step: int, max_steps: int) -> float:
    """Multiplier of recipe.lr at a step: linear warm-up, then constant, or cosine down to final_lr over the
    step budget (or over each `period`, restarting)."""
    if step < recipe.warmup_steps:
        return (step + 1) / recipe.warmup_steps
    if recipe.schedule == "constant":
        return 1.0
    since = step - recipe.warmup_steps
    if recipe.period:  # warm restarts: the cosine starts over after each period, the next period_mult times longer
        period = recipe.period
        while since >= period:
            since -= period
            period = max(1, round(period * recipe.period_mult))
        progress = since / period
    else:
        progress = min(1.0, since / max(1, max_steps - recipe.warmup_steps))
    floor = recipe.final_lr / recipe.lr
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def text_logits(model: torch.nn.Module, mem: torch.Tensor, text_embeds: torch.Tensor,
                prefix: int | None = None) -> torch.Tensor:
    """Logits at the T positions that predict the text, the last T of [prefix ; mem ; text] but one -> [B, T, V].

    logits_to_keep skips the vocabulary projection at the memory positions. No attention mask: samples are
    right-padded, and under causal attention a real position never sees the padding after it.
    """
    T = text_embeds.shape[1]
    x = torch.cat([with_prefix(model, mem, prefix).to(text_embeds.dtype), text_embeds], dim=1)
    return model(inputs_embeds=x, use_cache=False, logits_to_keep=T + 1).logits[:, :-1]


@torch.no_grad()
def teacher_forced(model: torch.nn.Module, token_ids: list[int], mem: torch.Tensor | None = None,
                   bos_id: int | None = None, prefix: int | None = None) -> tuple[list[float], list[bool]]:
    """Per-token cross-entropy (nats) and argmax hits of a text, with [n, d] vectors or without.

    Without vectors the first token is scored from BOS when the tokenizer has one, else it is not scored:
    the lists then hold T - 1 entries, for tokens 1 .. T-1.
    """
    embedding = model.get_input_embeddings()
    device = embedding.weight.device
    ids = torch.tensor([token_ids], device=device)
    if mem is not None:
        with autocast(device):
            logits = text_logits(model, mem[None].to(device), embedding(ids), prefix)
        targets = ids
    else:
        inputs = torch.cat([torch.tensor([[bos_id]], device=device), ids], 1) if bos_id is not None else ids
        if inputs.shape[1] < 2:
            return [], []
        with autocast(device):
            logits = model(input_ids=inputs[:, :-1], use_cache=False).logits
        targets = inputs[:, 1:]
    nats = F.cross_entropy(logits.float()[0], targets[0], reduction="none")
    return nats.tolist(), (logits[0].argmax(-1) == targets[0]).tolist()


def cram(
    model: torch.nn.Module,
    token_ids: list[list[int]],
    *,
    n_vectors: int,
    recipe: Recipe,
    seed: int = 0,
    on_step: Callable[[StepInfo], None] | None = None,
    warm_start: list[torch.Tensor | None] | None = None,
    prefix: int | None = None,
    prior: torch.Tensor | None = None,
) -> list[CramResult]:
    """Cram each token list into its own [n_vectors, d] vectors. warm_start gives a sample's starting vectors
    (e.g. the solution for a shorter prefix) in place of the recipe's initialization. prefix is the token id
    placed before the vectors when the recipe asks for one; prior the [n_vectors, d] vectors added to the
    random start when it asks for that. The step budget is the recipe's max_steps."""
    if n_vectors < 1:
        raise CrammingError(f"the number of vectors must be at least 1, got {n_vectors}")
    if not token_ids or any(len(t) == 0 for t in token_ids):
        raise CrammingError("cannot cram an empty text")
    if recipe.prefix_token and prefix is None:
        raise CrammingError(f"recipe {recipe.name!r} puts a prefix token before the vectors, but none was given "
                            "(the tokenizer has neither a BOS nor an EOS token)")
    if recipe.prior and prior is None:
        raise CrammingError(f"recipe {recipe.name!r} starts from the model's prior, but none was given")
    max_steps = recipe.max_steps
    embedding = model.get_input_embeddings()
    device = embedding.weight.device
    B = len(token_ids)
    lengths = torch.tensor([len(t) for t in token_ids], device=device)
    targets = torch.zeros(B, int(lengths.max()), dtype=torch.long, device=device)  # right-padded with id 0
    for i, ids in enumerate(token_ids):
        targets[i, : len(ids)] = torch.tensor(ids, device=device)
    valid = torch.arange(targets.shape[1], device=device)[None, :] < lengths[:, None]
    with torch.no_grad():
        text_embeds = embedding(targets)  # constant: the model is frozen

    # One leaf per sample: a finished sample's vectors simply stop receiving gradients.
    fresh = init_vectors(recipe, n_vectors, embedding.weight, seed)
    if recipe.prior:
        if prior.shape != fresh.shape:
            raise CrammingError(f"the prior has shape {tuple(prior.shape)}, not {tuple(fresh.shape)}")
        fresh = fresh + prior.float().cpu()
    starts = [w.detach().float().cpu() if w is not None else fresh for w in (warm_start or [None] * B)]
    if any(s.shape != fresh.shape for s in starts):
        raise CrammingError(f"warm-start vectors must have shape {tuple(fresh.shape)}")
    mems = [torch.nn.Parameter(s.clone().to(device)) for s in starts]
    optimizer = torch.optim.AdamW(mems, lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(recipe, s, max_steps))

    results: list[CramResult | None] = [None] * B
    histories: list[list[tuple[int, float, float]]] = [[] for _ in range(B)]
    best = [(-1.0, math.inf, s, 0) for s in starts]  # (accuracy, loss, vectors, step) per sample
    top_accuracy, last_improved = [-1.0] * B, [0] * B  # for the patience rule
    active = list(range(B))
    t0 = time.perf_counter()

    def finish(i: int, exact: bool, decoded: list[int], diverged: bool = False) -> None:
        acc, loss, vectors, step = best[i]
        results[i] = CramResult(token_ids[i], vectors, exact, diverged, step, acc, loss, time.perf_counter() - t0,
                                decoded, histories[i])

    for step in range(max_steps + 1):  # step = optimizer steps applied so far; the last pass only evaluates
        idx = torch.tensor(active, device=device)
        T = int(lengths[idx].max())  # trim padding no active sample needs
        tgt, ok = targets[idx, :T], valid[idx, :T]
        mem = torch.stack([mems[i] for i in active])
        with autocast(device):
            logits = text_logits(model, mem, text_embeds[idx, :T], prefix)
        ce = F.cross_entropy(logits.float().transpose(1, 2), tgt, reduction="none") * ok
        losses = ce.sum(1) / lengths[idx]  # per-sample mean, so samples do not weigh on each other
        with torch.no_grad():
            hits = (logits.argmax(-1) == tgt) & ok
            accs = hits.sum(1) / lengths[idx]
            trained = ok
            if recipe.margin is not None:  # spend the vectors on the tokens not yet right by `margin` logits
                runner_up = logits.scatter(-1, tgt[..., None], -math.inf).amax(-1)
                trained = ok & ((logits.gather(-1, tgt[..., None])[..., 0] - runner_up).float() < recipe.margin)
        objective = (ce * trained).sum(1) / lengths[idx]

        loss_list, acc_list = losses.tolist(), accs.tolist()
        finite = torch.isfinite(losses).tolist()
        snapshot = mem.detach().float().cpu()
        for j, i in enumerate(active):
            histories[i].append((step, loss_list[j], acc_list[j]))
            if not finite[j]:  # a numeric blow-up ends this sample only; it keeps the best vectors before it
                finish(i, False, [], diverged=True)
                continue
            if (acc_list[j], -loss_list[j]) > (best[i][0], -best[i][1]):
                best[i] = (acc_list[j], loss_list[j], snapshot[j].clone(), step)
            if acc_list[j] > top_accuracy[i]:
                top_accuracy[i], last_improved[i] = acc_list[j], step

        # All argmax right: check the real thing, greedy decoding from the vectors alone.
        candidates = [j for j, a in enumerate(acc_list) if a == 1.0 and finite[j]]
        if candidates:
            decoded = greedy_decode(model, mem.detach()[candidates], T, prefix)
            for j, row in zip(candidates, decoded.tolist()):
                i = active[j]
                row = row[: len(token_ids[i])]
                if row == token_ids[i]:
                    best[i] = (1.0, loss_list[j], snapshot[j].clone(), step)
                    finish(i, True, row)
        stalled = [i for i in active if recipe.patience is not None and results[i] is None
                   and step - last_improved[i] >= recipe.patience]
        for i in stalled:
            finish(i, False, [])
        keep = [j for j, i in enumerate(active) if results[i] is None]

        if on_step is not None:
            shown = [(loss, acc) for loss, acc, ok in zip(loss_list, acc_list, finite) if ok] or [(math.nan, 0.0)]
            on_step(StepInfo(step, max_steps, len(keep), B - len(keep), sum(r is not None and r.exact for r in results),
                             sum(x[0] for x in shown) / len(shown), sum(x[1] for x in shown) / len(shown)))
        if not keep or step == max_steps:
            break
        optimizer.zero_grad(set_to_none=True)
        objective[keep].sum().backward()
        if recipe.grad_clip is not None:
            for j in keep:
                torch.nn.utils.clip_grad_norm_(mems[active[j]], recipe.grad_clip)
        optimizer.step()
        scheduler.step()
        active = [active[j] for j in keep]

    for i in range(B):
        if results[i] is None:
            finish(i, False, [])
    return results  # type: ignore[return-value]
