"""The cramming loop: optimize a few input vectors so that a frozen LM regenerates a text.

For each sample i we train `vectors_i` of shape [n, d]. The model sees [prefix ; vectors_i ; embed(text_i)] and
must predict text token t from the position before it: the first token comes from the last vector, so greedy
decoding later needs nothing but the vectors. Only the vectors are trained; the model's weights are frozen and
no weight gradient is computed.

A batch of texts is crammed at once, each sample with its own vectors, optimizer state, gradient clip and
stopping: a sample whose teacher-forced argmax is right everywhere gets a greedy-decode check, and once its round
trip is exact its vectors are frozen and it leaves the batch, so later steps cost only what the rest need.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from . import storage
from .decode import Expected, verify, with_prefix
from .errors import CrammingError
from .models import autocast, autocast_model
from .recipes import Recipe


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
    margin: float | None = None  # exact: the smallest top-1 minus top-2 logit along its greedy path (verify)
    decoded_ids: list[int] = field(default_factory=list)
    history: list[tuple[int, float, float]] = field(default_factory=list)  # (step, loss, accuracy) per step
    restarts: list[int] = field(default_factory=list)  # steps at which the stall rule began its next period


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


def starting_vectors(recipe: Recipe, n_vectors: int, embedding: torch.Tensor, seed: int, batch: int,
                     prior: torch.Tensor | None = None,
                     warm_start: list[torch.Tensor | None] | None = None) -> torch.Tensor:
    """[batch, n, d] starts: a sample's warm start where it has one (e.g. a shorter prefix's solution), else the
    recipe's random init, drawn on the CPU from the seed alone (so a text starts at the same point alone or in
    a batch, on any device), plus the model's prior when the recipe starts from one."""
    if n_vectors < 1:
        raise CrammingError(f"the number of vectors must be at least 1, got {n_vectors}")
    g, d = torch.Generator().manual_seed(seed), embedding.shape[1]
    if recipe.init == "embedding_std":
        fresh = torch.randn(n_vectors, d, generator=g) * embedding.float().std().item() * recipe.init_scale
    else:
        fresh = torch.rand(n_vectors, d, generator=g) * recipe.init_scale
    if recipe.prior:
        if prior is None:
            raise CrammingError(f"recipe {recipe.name!r} starts from the model's prior, but none was given")
        if prior.shape != fresh.shape:
            raise CrammingError(f"the prior has shape {tuple(prior.shape)}, not {tuple(fresh.shape)}")
        fresh = fresh + prior.float().cpu()
    starts = [w.detach().float().cpu() if w is not None else fresh for w in (warm_start or [None] * batch)]
    if any(s.shape != fresh.shape for s in starts):
        raise CrammingError(f"warm-start vectors must have shape {tuple(fresh.shape)}")
    return torch.stack(starts)


def text_logits(model: torch.nn.Module, vectors: torch.Tensor, text_embeds: torch.Tensor,
                prefix_id: int | None = None) -> torch.Tensor:
    """Logits at the T positions that predict the text, the last T of [prefix ; vectors ; text] but one -> [B, T, V].

    logits_to_keep skips the vocabulary projection at the vector positions. No attention mask: samples are
    right-padded, and under causal attention a real position never sees the padding after it.
    """
    T = text_embeds.shape[1]
    x = torch.cat([with_prefix(model, vectors, prefix_id).to(text_embeds.dtype), text_embeds], dim=1)
    return model(inputs_embeds=x, use_cache=False, logits_to_keep=T + 1).logits[:, :-1]


def target_lead(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[..., V] logits, [...] target ids -> [...] each target's lead over the best other token, in float32
    (negative where it is not the argmax). From the top two: a fifth of the time of masking the target out
    of a copy of the logits, the same numbers."""
    top = logits.topk(2, dim=-1)
    other = torch.where(top.indices[..., 0] == targets, top.values[..., 1], top.values[..., 0])
    return (logits.gather(-1, targets[..., None])[..., 0] - other).float()


@dataclass
class _Sample:
    """One sample's state in the loop."""

    row: int  # its row in the batch's tensors
    ids: list[int]
    vectors: torch.nn.Parameter
    best: tuple[float, float, torch.Tensor, int]  # (accuracy, loss, vectors, step): what is kept when it ends
    history: list[tuple[int, float, float]] = field(default_factory=list)
    restarts: list[int] = field(default_factory=list)
    top_accuracy: float = -1.0  # the patience rule: the step its accuracy last rose
    rose_at: int = 0
    shift: int = 0  # its schedule runs this many steps ahead of the loop's (the stall rule's early restarts)
    period_top: float = -1.0  # the stall rule: its best accuracy in its current period, and when that was
    period_rose: int = 0
    result: CramResult | None = None

    def finish(self, t0: float, exact: bool = False, decoded: list[int] | None = None, diverged: bool = False,
               margin: float | None = None):
        accuracy, loss, vectors, step = self.best
        self.result = CramResult(self.ids, vectors, exact, diverged, step, accuracy, loss, time.perf_counter() - t0,
                                 margin, decoded or [], list(self.history), list(self.restarts))  # copies: it is done


def cram(model: torch.nn.Module, token_ids: list[list[int]], start: torch.Tensor, recipe: Recipe, *,
         prefix_id: int | None = None, on_step: Callable[[StepInfo], None] | None = None,
         min_margin: float = 0.0, storage_form: str = "fp32") -> list[CramResult]:
    """Cram each token list into its own vectors, starting from start[i] ([B, n, d], see starting_vectors), for
    at most recipe.max_steps steps. prefix_id is the token before the vectors when the recipe puts one there.
    min_margin > 0: a sample is done only when it decodes exactly and every token along its greedy path leads
    the runner-up by at least that many logits (vectors that survive rounding, quantization, another dtype).
    storage_form: the model sees the vectors as a file of that form will hold them (storage.py), the gradient
    passing straight through to the float32 vectors, so a sample is done when its stored form is exact."""
    if not token_ids or any(len(t) == 0 for t in token_ids):
        raise CrammingError("cannot cram an empty text")
    if recipe.prefix_token and prefix_id is None:
        raise CrammingError(f"recipe {recipe.name!r} puts a prefix token before the vectors, but none was given "
                            "(the tokenizer has neither a BOS nor an EOS token)")
    embedding = model.get_input_embeddings()
    device = embedding.weight.device
    lengths = torch.tensor([len(t) for t in token_ids], device=device)
    targets = torch.zeros(len(token_ids), int(lengths.max()), dtype=torch.long, device=device)  # right-padded
    for i, ids in enumerate(token_ids):
        targets[i, : len(ids)] = torch.tensor(ids, device=device)
    valid = torch.arange(targets.shape[1], device=device)[None, :] < lengths[:, None]
    with torch.no_grad():
        text_embeds = embedding(targets)  # constant: the model is frozen
    stepper = autocast_model(model, device, recipe.bf16)  # model itself, or its bf16 twin under bf16

    # One leaf per sample: a finished sample's vectors simply stop receiving gradients.
    samples = [_Sample(i, ids, torch.nn.Parameter(start[i].clone().to(device)), (-1.0, math.inf, start[i], 0))
               for i, ids in enumerate(token_ids)]
    # One parameter group per sample: each runs its own schedule (see the stall rule).
    optimizer = torch.optim.AdamW([{"params": [s.vectors]} for s in samples], lr=recipe.lr, betas=recipe.betas,
                                  weight_decay=recipe.weight_decay)
    t0 = time.perf_counter()
    for step in range(recipe.max_steps + 1):  # step = optimizer steps applied so far; the last pass only evaluates
        active = [s for s in samples if s.result is None]
        rows = torch.tensor([s.row for s in active], device=device)
        T = int(lengths[rows].max())  # trim padding no active sample needs
        tgt, ok = targets[rows, :T], valid[rows, :T]
        raw = torch.stack([s.vectors for s in active])
        vectors = storage.straight_through(raw, storage_form)
        with autocast(device, recipe.bf16):
            logits = text_logits(stepper, vectors, text_embeds[rows, :T], prefix_id)
        ce = F.cross_entropy(logits.float().transpose(1, 2), tgt, reduction="none") * ok
        losses = ce.sum(1) / lengths[rows]  # per-sample mean, so samples do not weigh on each other
        with torch.no_grad():
            accuracies = ((logits.argmax(-1) == tgt) & ok).sum(1) / lengths[rows]
            # each token's lead over the runner-up; once the argmax is all right this is the greedy path's margin
            lead = target_lead(logits, tgt).masked_fill(~ok, math.inf)
            trained = ok
            if recipe.margin is not None or min_margin > 0:  # spend the vectors on the tokens not yet right enough
                wanted = [m for m in (recipe.margin, min_margin if min_margin > 0 else None) if m is not None]
                trained = ok & (lead < max(wanted))
            weight = trained.float()
            if recipe.wrong_weight != 1.0:  # the few tokens still wrong count more than those right by too little
                weight = weight * torch.where(lead < 0, recipe.wrong_weight, 1.0)
        objective = (ce * weight).sum(1) / lengths[rows]
        margins = lead.amin(1).tolist()

        snapshot = raw.detach().float().cpu()  # the float32 vectors, whose stored form is what was checked
        finite = torch.isfinite(losses).tolist()
        for j, (s, loss, accuracy) in enumerate(zip(active, losses.tolist(), accuracies.tolist())):
            s.history.append((step, loss, accuracy))
            if not finite[j]:  # a numeric blow-up ends this sample only; it keeps the best vectors before it
                s.finish(t0, diverged=True)
                continue
            if (accuracy, -loss) > (s.best[0], -s.best[1]):
                s.best = (accuracy, loss, snapshot[j].clone(), step)
            if accuracy > s.top_accuracy:
                s.top_accuracy, s.rose_at = accuracy, step
            if accuracy > s.period_top:
                s.period_top, s.period_rose = accuracy, step

        # All argmax right: check the real thing, greedy decoding from the vectors alone (as stored, one at a time).
        for j, s in enumerate(active):
            if s.result is None and s.history[-1][2] == 1.0 and margins[j] >= min_margin:
                check = verify(model, vectors.detach()[j], Expected.of(s.ids), prefix_id)
                if check.exact and check.margin >= min_margin:
                    s.best = (1.0, s.history[-1][1], snapshot[j].clone(), step)
                    s.finish(t0, exact=True, decoded=check.decoded_ids, margin=check.margin)
        for s in active:
            if recipe.patience is not None and s.result is None and step - s.rose_at >= recipe.patience:
                s.finish(t0)
            if recipe.stall is not None and s.result is None and step - s.period_rose >= recipe.stall:  # stuck
                s.shift = recipe.next_restart(step + s.shift) - step
                s.period_top, s.period_rose = -1.0, step
                s.restarts.append(step)
        keep = [j for j, s in enumerate(active) if s.result is None]

        if on_step is not None:
            shown = [h for s in active if math.isfinite((h := s.history[-1])[1])] or [(step, math.nan, 0.0)]
            on_step(StepInfo(step, recipe.max_steps, len(keep), len(samples) - len(keep),
                             sum(s.result is not None and s.result.exact for s in samples),
                             sum(h[1] for h in shown) / len(shown), sum(h[2] for h in shown) / len(shown)))
        if not keep or step == recipe.max_steps:
            break
        optimizer.zero_grad(set_to_none=True)
        objective[keep].sum().backward()
        if recipe.grad_clip is not None:
            for j in keep:
                torch.nn.utils.clip_grad_norm_(active[j].vectors, recipe.grad_clip)
        for s in active:
            optimizer.param_groups[s.row]["lr"] = recipe.lr * recipe.lr_factor(step + s.shift)
        optimizer.step()

    for s in samples:
        if s.result is None:
            s.finish(t0)
    return [s.result for s in samples]
