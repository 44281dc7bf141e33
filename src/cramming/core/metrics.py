"""The paper's metrics (Kuratov et al. 2025, Sec. 3 and Eq. 1): pure functions of per-token numbers, and the
measurement of a crammed text that feeds them (cross-entropy and argmax hits with and without its vectors)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from cramming.core.decode import Reading
from cramming.core.loop import decoder_logits
from cramming.core.precision import autocast

if TYPE_CHECKING:
    from cramming.api import Compressed
    from cramming.model.loading import LoadedModel

NATS_PER_BIT = math.log(2)


def nats_to_bits(nats: float) -> float:
    return nats / NATS_PER_BIT


def summed_cross_entropy(token_nats: Sequence[float]) -> float:
    """Summed cross-entropy of the scored tokens, in nats (as PyTorch computes it)."""
    return float(sum(token_nats))


def information_gain(ce_without: float, ce_with: float) -> float:
    """How much the vectors lower the text's cross-entropy; in the unit of its arguments."""
    return ce_without - ce_with


def token_gain(correct_with: int, correct_without: int) -> int:
    """Extra teacher-forced argmax hits with the vectors."""
    return correct_with - correct_without


def theoretical_capacity(d_model: int, vocab_size: int, bits_per_value: int = 16) -> float:
    """Eq. 1: the tokens n vectors could name if every 16-bit value of one vector carried log2(V) bits' worth."""
    return d_model * bits_per_value / math.log2(vocab_size)


def utilization(gain_in_tokens: float, capacity: float) -> float:
    return gain_in_tokens / capacity


@torch.no_grad()
def teacher_forced(model: torch.nn.Module, token_ids: list[int], vectors: torch.Tensor | None = None,
                   bos_id: int | None = None, prefix_id: int | None = None, decoder: str = "greedy"
                   ) -> tuple[list[float], list[bool]]:
    """Per-token cross-entropy (nats) and argmax hits of a text, with [n, d] vectors (read as `decoder` reads
    them: the text fed in, or the one-step layout) or without.

    Without vectors the first token is scored from BOS when the tokenizer has one, else it is not scored:
    the lists then hold T - 1 entries, for tokens 1 .. T-1.
    """
    embedding = model.get_input_embeddings()
    device = embedding.weight.device
    ids = torch.tensor([token_ids], device=device)
    if vectors is not None:
        with autocast(device):
            logits = decoder_logits(model, vectors[None].to(device), embedding(ids), prefix_id, decoder)
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


@dataclass
class Measurement:
    """The paper's metrics for one crammed text. Bits unless named otherwise."""

    tokens: int
    vectors: int
    scored_tokens: int  # tokens the no-vector baseline scores: T with a BOS token, else T - 1
    first_token_scored: bool
    ce_without_bits: float
    ce_with_bits: float
    information_gain_bits: float
    information_gain_nats: float
    token_gain: int
    accuracy_without: float
    accuracy_with: float
    exact: bool
    diverged: bool
    theoretical_capacity: float
    utilization: float
    steps: int
    seconds: float | None  # None where measured from a vector file, which does not record it

    def to_dict(self) -> dict:
        return asdict(self)


def baseline_bos(tokenizer) -> int | None:
    """The token the no-vector baseline reads first: BOS where the tokenizer's plain encoding starts with it
    (Gemma, Llama), else None (SmolLM2, GPT-2, Pythia), so the text is scored as the model reads it by default,
    as the paper scores it. Not `add_bos_token`: Gemma's says False while its encoding adds <bos>, and Gemma
    without <bos> loses about a quarter more bits on book text."""
    bos = tokenizer.bos_token_id
    return bos if bos is not None and tokenizer("a")["input_ids"][:1] == [bos] else None


def gains(token_ids: list[int], stored: torch.Tensor, prefix_id: int | None, lm: LoadedModel,
          decoder: str = "greedy", reading: Reading = Reading()) -> dict:
    """The metrics of a text and its stored vectors that come from scoring it with and without them, as `reading`
    gives them to the model (expanded from a basis, a shared copy after them; capacity counts the text's own).

    Both cross-entropies and both hit counts cover the same tokens, the ones the no-vector baseline can
    score, so that information gain and token gain compare like with like. accuracy_with covers every
    token, the first included, since that is what decoding from the vectors alone needs.
    """
    ids = token_ids
    nats_without, hits_without = teacher_forced(lm.model, ids, None, baseline_bos(lm.tokenizer))
    nats_with, hits_with = teacher_forced(lm.model, ids, reading(stored), None, prefix_id, decoder)
    skip = len(ids) - len(nats_without)  # 1 when the first token has no baseline score
    ce_without = summed_cross_entropy(nats_without)
    ce_with = summed_cross_entropy(nats_with[skip:])
    gain = token_gain(sum(hits_with[skip:]), sum(hits_without))
    capacity = theoretical_capacity(lm.d_model, lm.vocab_size) * reading.vectors(stored).shape[0]
    return dict(
        scored_tokens=len(nats_without), first_token_scored=skip == 0,
        ce_without_bits=nats_to_bits(ce_without), ce_with_bits=nats_to_bits(ce_with),
        information_gain_bits=nats_to_bits(information_gain(ce_without, ce_with)),
        information_gain_nats=information_gain(ce_without, ce_with), token_gain=gain,
        accuracy_without=sum(hits_without) / max(1, len(hits_without)), accuracy_with=sum(hits_with) / len(ids),
        theoretical_capacity=capacity, utilization=utilization(gain, capacity))


def measure(compressed: Compressed, lm: LoadedModel) -> Measurement:
    """Score a crammed text with and without its vectors (gains), beside how its cramming went."""
    r = compressed
    return Measurement(tokens=len(r.token_ids), vectors=r.shape[0], exact=r.exact, diverged=r.diverged,
                       steps=r.steps, seconds=r.seconds,
                       **gains(r.token_ids, r.vectors, r.prefix_id, lm, r.recipe.decoder, r.reading))
