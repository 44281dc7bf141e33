"""The paper's metrics as pure functions of per-token numbers (Kuratov et al. 2025, Sec. 3 and Eq. 1)."""

from __future__ import annotations

import math
from collections.abc import Sequence

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
