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

from cramming.core import storage
from cramming.core.decode import Expected, Reading, one_step_logits, verify, with_prefix
from cramming.core.errors import CrammingError
from cramming.core.inputs import check_vectors
from cramming.core.precision import autocast, autocast_model
from cramming.core.recipes import Recipe


@dataclass
class CramResult:
    """One sample's outcome. `vectors` are the exact ones when `exact`, else the best seen."""

    token_ids: list[int]
    vectors: torch.Tensor  # [n, d], float32, on the CPU; under a basis (recipe.rank) their [1, K] coefficients
    exact: bool
    diverged: bool  # the loss turned NaN or infinite: the sample stopped there, `vectors` the best before it
    steps: int  # the step of `vectors`: optimizer steps applied to them (steps_run: all the sample ran)
    accuracy: float  # teacher-forced argmax accuracy of `vectors`
    loss: float  # mean cross-entropy (nats per token) of `vectors`
    seconds: float  # wall time from the start of the batch until this sample finished
    path_margin: float | None = None  # exact: the smallest top-1 minus top-2 logit along its decoded path (verify)
    decoded_ids: list[int] = field(default_factory=list)
    history: list[tuple[int, float, float]] = field(default_factory=list)  # (step, loss, accuracy) per step
    restarts: list[int] = field(default_factory=list)  # steps at which the stall rule began its next period

    @property
    def steps_run(self) -> int:
        """The steps the sample ran (its last evaluated step): what it cost; `steps` is the step of its vectors."""
        return self.history[-1][0] if self.history else 0


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


def decoder_logits(model: torch.nn.Module, vectors: torch.Tensor, text_embeds: torch.Tensor,
                   prefix_id: int | None, decoder: str) -> torch.Tensor:
    """[B, T, V] the logits that predict the text as `decoder` reads it back: the text fed in after the vectors
    (greedy, text_logits) or the one-step layout (decode.one_step_logits)."""
    if decoder == "greedy":
        return text_logits(model, vectors, text_embeds, prefix_id)
    return one_step_logits(model, vectors, text_embeds.shape[1], prefix_id)


def target_lead(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[..., V] logits, [...] target ids -> [...] each target's lead over the best other token, in float32
    (negative where it is not the argmax). From the top two: a fifth of the time of masking the target out
    of a copy of the logits, the same numbers."""
    top = logits.topk(2, dim=-1)
    other = torch.where(top.indices[..., 0] == targets, top.values[..., 1], top.values[..., 0])
    return (logits.gather(-1, targets[..., None])[..., 0] - other).float()


def token_weights(lead: torch.Tensor, ok: torch.Tensor, forced: torch.Tensor, recipe: Recipe) -> torch.Tensor:
    """[B, T] each text token's weight in the objective, from its lead over the runner-up (target_lead; ok marks
    real tokens). With a margin (the recipe's loss margin, or the margin a sample must reach), the tokens already
    right by that much leave the loss, so the vectors are spent on those still wrong; a wrong token weighs
    wrong_weight times a right one. `forced` marks tokens the float32 verification found wrong: they stay in the
    loss as wrong ones, since under bf16 such a token's lead can look safe while float32 decodes another token."""
    trained = ok
    wanted = [m for m in (recipe.loss_margin, recipe.required_margin or None) if m is not None]
    if wanted:
        trained = ok & (lead < max(wanted))
    wrong = (lead < 0) | forced
    return (trained | forced) * torch.where(wrong, recipe.wrong_weight, 1.0)


@dataclass
class Plateau:
    """Since when a sample's best teacher-forced accuracy has not risen. The patience rule watches one over the
    whole run, the stall rule one over the current cosine period (a new one at each restart)."""

    top: float = -1.0
    rose_at: int = 0

    def see(self, accuracy: float, step: int) -> None:
        if accuracy > self.top:
            self.top, self.rose_at = accuracy, step

    def flat_for(self, step: int) -> int:
        return step - self.rose_at


@dataclass
class _Sample:
    """One sample's state in the loop."""

    row: int  # its row in the batch's tensors
    ids: list[int]
    vectors: torch.nn.Parameter
    best: tuple[float, float, torch.Tensor, int]  # (accuracy, loss, vectors, step): what is kept when it ends
    history: list[tuple[int, float, float]] = field(default_factory=list)
    restarts: list[int] = field(default_factory=list)
    forced: list[int] = field(default_factory=list)  # tokens the verification found wrong (token_weights)
    run: Plateau = field(default_factory=Plateau)  # the patience rule's
    period: Plateau = field(default_factory=Plateau)  # the stall rule's
    shift: int = 0  # its schedule runs this many steps ahead of the loop's (the stall rule's early restarts)
    result: CramResult | None = None

    def observe(self, step: int, loss: float, accuracy: float, vectors: torch.Tensor) -> bool:
        """Record a step's reading of `vectors` -> False where the loss blew up."""
        self.history.append((step, loss, accuracy))
        if not math.isfinite(loss):
            return False
        if (accuracy, -loss) > (self.best[0], -self.best[1]):
            self.best = (accuracy, loss, vectors.clone(), step)
        self.run.see(accuracy, step)
        self.period.see(accuracy, step)
        return True

    def verify(self, model: torch.nn.Module, stored: torch.Tensor, vectors: torch.Tensor, step: int,
               recipe: Recipe, prefix_id: int | None, t0: float) -> None:
        """The real check, greedy decoding from the vectors alone as stored: exact ends the sample; a first
        wrong token joins the loss from the next step (token_weights)."""
        check = verify(model, stored, Expected.of(self.ids), prefix_id, decoder=recipe.decoder)
        if check.exact and check.path_margin >= recipe.required_margin:
            self.best = (1.0, self.history[-1][1], vectors.clone(), step)
            self.finish(t0, exact=True, decoded=check.decoded_ids, path_margin=check.path_margin)
        elif check.first_mismatch is not None and check.first_mismatch not in self.forced:
            self.forced.append(check.first_mismatch)

    def apply_rules(self, step: int, recipe: Recipe, t0: float) -> None:
        """Patience: give up once the accuracy has not risen for that many steps. Stall: start the next cosine
        period now, on this sample's own schedule, once it has not risen within this one for that many."""
        if self.result is not None:
            return
        if recipe.patience is not None and self.run.flat_for(step) >= recipe.patience:
            self.finish(t0)
        elif recipe.stall is not None and self.period.flat_for(step) >= recipe.stall:
            self.shift = recipe.next_restart(step + self.shift) - step
            self.period = Plateau(rose_at=step)
            self.restarts.append(step)

    def finish(self, t0: float, exact: bool = False, decoded: list[int] | None = None, diverged: bool = False,
               path_margin: float | None = None):
        accuracy, loss, vectors, step = self.best
        self.result = CramResult(self.ids, vectors, exact, diverged, step, accuracy, loss, time.perf_counter() - t0,
                                 path_margin, decoded or [], list(self.history), list(self.restarts))  # copies: done


def cram(model: torch.nn.Module, token_ids: list[list[int]], start: torch.Tensor, recipe: Recipe, *,
         prefix_id: int | None = None, on_step: Callable[[StepInfo], None] | None = None,
         reading: Reading = Reading()) -> list[CramResult]:
    """Cram each token list into its own vectors, starting from start[i] ([B, n, d], see starting_vectors), for
    at most recipe.max_steps steps. prefix_id is the token before the vectors when the recipe puts one there.
    recipe.required_margin > 0: a sample is done only when it decodes exactly and every token along its greedy
    path leads the runner-up by at least that many logits (vectors that survive rounding, quantization, another
    dtype). recipe.storage: the model sees the vectors as a file of that form will hold them (storage.py), the
    gradient passing straight through to the float32 vectors, so a sample is done when its stored form is exact.
    `reading` holds what the model adds to what is trained, never trained itself: under recipe.rank the basis, so
    only the [1, K] coefficients of each sample are trained (start [B, 1, K]), and under recipe.shared_copy the
    model's copied vector, read after each sample's own."""
    check_inputs(token_ids, recipe, prefix_id, start, reading)
    device = model.get_input_embeddings().weight.device
    lengths, targets, valid, text_embeds = batch_targets(model, token_ids)
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
        raw = torch.stack([s.vectors for s in active])
        vectors = reading(storage.straight_through(raw, recipe.storage))
        losses, accuracies, lead, objective = score(stepper, vectors, text_embeds[rows, :T], targets[rows, :T],
                                                    valid[rows, :T], lengths[rows], [s.forced for s in active],
                                                    recipe, prefix_id)
        snapshot = raw.detach().float().cpu()  # the float32 vectors, whose stored form is what was checked
        margins = lead.amin(1).tolist()  # once the argmax is all right, the greedy path's margin
        for j, (s, loss, accuracy) in enumerate(zip(active, losses.tolist(), accuracies.tolist())):
            if not s.observe(step, loss, accuracy, snapshot[j]):  # a blow-up ends this sample only, on its best
                s.finish(t0, diverged=True)
            elif accuracy == 1.0 and margins[j] >= recipe.required_margin:  # all right: check the real thing
                s.verify(model, vectors.detach()[j], snapshot[j], step, recipe, prefix_id, t0)
        for s in active:
            s.apply_rules(step, recipe, t0)
        keep = [j for j, s in enumerate(active) if s.result is None]
        if on_step is not None:
            on_step(progress(step, recipe, active, samples, keep))
        if not keep or step == recipe.max_steps:
            break
        optimizer.zero_grad(set_to_none=True)
        objective[keep].sum().backward()
        for j in keep:
            if recipe.grad_clip is not None:  # per sample
                torch.nn.utils.clip_grad_norm_(active[j].vectors, recipe.grad_clip)
        for s in active:
            optimizer.param_groups[s.row]["lr"] = recipe.lr * recipe.lr_factor(step + s.shift)
        optimizer.step()
    for s in samples:
        if s.result is None:
            s.finish(t0)
    return [s.result for s in samples]


def check_inputs(token_ids: list[list[int]], recipe: Recipe, prefix_id: int | None, start: torch.Tensor,
                 reading: Reading) -> None:
    if not token_ids or any(len(t) == 0 for t in token_ids):
        raise CrammingError("cannot cram an empty text")
    basis, copy = reading.basis, reading.copy
    check_vectors(start.shape[1] if basis is None else basis.n_vectors, recipe.decoder, recipe.shared_copy)
    if recipe.rank != (basis.rank if basis is not None else None):
        raise CrammingError(f"recipe {recipe.name!r} has rank {recipe.rank}, but the basis given has rank "
                            f"{basis.rank if basis is not None else None}")
    if basis is not None and start.shape[1:] != (1, basis.rank):
        raise CrammingError(f"starts in a basis of rank {basis.rank} have shape [B, 1, {basis.rank}], "
                            f"not {list(start.shape)}")
    if recipe.shared_copy != (copy is not None):
        raise CrammingError(f"recipe {recipe.name!r} {'reads' if recipe.shared_copy else 'does not read'} the "
                            f"model's shared copy, but one was {'not ' if copy is None else ''}given")
    if recipe.prefix_token and prefix_id is None:
        raise CrammingError(f"recipe {recipe.name!r} puts a prefix token before the vectors, but none was given "
                            "(the tokenizer has neither a BOS nor an EOS token)")


def batch_targets(model: torch.nn.Module, token_ids: list[list[int]]
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lengths [B], right-padded targets [B, T], which of them are real [B, T], their embeddings [B, T, d])."""
    embedding = model.get_input_embeddings()
    device = embedding.weight.device
    lengths = torch.tensor([len(t) for t in token_ids], device=device)
    targets = torch.zeros(len(token_ids), int(lengths.max()), dtype=torch.long, device=device)
    for i, ids in enumerate(token_ids):
        targets[i, : len(ids)] = torch.tensor(ids, device=device)
    valid = torch.arange(targets.shape[1], device=device)[None, :] < lengths[:, None]
    with torch.no_grad():
        text_embeds = embedding(targets)  # constant: the model is frozen
    return lengths, targets, valid, text_embeds


def score(model: torch.nn.Module, vectors: torch.Tensor, text_embeds: torch.Tensor, targets: torch.Tensor,
          ok: torch.Tensor, lengths: torch.Tensor, forced: list[list[int]], recipe: Recipe, prefix_id: int | None
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward pass over the active samples -> per sample its mean cross-entropy and teacher-forced accuracy,
    per token its lead over the runner-up (target_lead, inf at padding), and per sample the objective the step
    descends (the cross-entropy weighted by token_weights). Per-sample means, so samples do not weigh on each other."""
    with autocast(vectors.device, recipe.bf16):
        logits = decoder_logits(model, vectors, text_embeds, prefix_id, recipe.decoder)
    ce = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none") * ok
    with torch.no_grad():
        accuracies = ((logits.argmax(-1) == targets) & ok).sum(1) / lengths
        lead = target_lead(logits, targets).masked_fill(~ok, math.inf)
        wrong = torch.zeros_like(ok)
        for j, positions in enumerate(forced):
            wrong[j, positions] = True
        weight = token_weights(lead, ok, wrong, recipe)
    return ce.sum(1) / lengths, accuracies, lead, (ce * weight).sum(1) / lengths


def progress(step: int, recipe: Recipe, active: list[_Sample], samples: list[_Sample], keep: list[int]) -> StepInfo:
    """What a progress display sees after a step: the means over the active samples with a finite loss."""
    shown = [h for s in active if math.isfinite((h := s.history[-1])[1])] or [(step, math.nan, 0.0)]
    return StepInfo(step, recipe.max_steps, len(keep), len(samples) - len(keep),
                    sum(s.result is not None and s.result.exact for s in samples),
                    sum(h[1] for h in shown) / len(shown), sum(h[2] for h in shown) / len(shown))
