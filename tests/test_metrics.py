"""Metrics against hand-computed values, on the tiny model."""

import math

import pytest
import torch

from cramming import compress
from cramming.core.metrics import (
    information_gain,
    measure,
    nats_to_bits,
    teacher_forced,
    theoretical_capacity,
    token_gain,
    utilization,
)


def test_theoretical_capacity_matches_eq1():
    assert theoretical_capacity(576, 49152) == pytest.approx(591.3, abs=0.05)  # SmolLM2-135M
    assert round(theoretical_capacity(4096, 128256)) == 3862  # Llama-3.1-8B, as published
    assert round(theoretical_capacity(768, 50304)) == 787  # Pythia-160M, as published


def test_small_pure_functions():
    assert nats_to_bits(math.log(2) * 3) == pytest.approx(3.0)
    assert information_gain(10.0, 4.0) == 6.0
    assert token_gain(9, 2) == 7
    assert utilization(59.13, 591.3) == pytest.approx(0.1)


def test_teacher_forced_without_bos_skips_the_first_token(tiny_lm):
    ids = tiny_lm.tokenizer("to be or not to be", add_special_tokens=False)["input_ids"]
    nats, hits = teacher_forced(tiny_lm.model, ids)
    assert len(nats) == len(ids) - 1
    logp = tiny_lm.model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
    by_hand = [-logp[t, ids[t + 1]].item() for t in range(len(ids) - 1)]
    assert nats == pytest.approx(by_hand, rel=1e-5)
    assert hits == [logp[t].argmax().item() == ids[t + 1] for t in range(len(ids) - 1)]
    with_bos, _ = teacher_forced(tiny_lm.model, ids, bos_id=0)
    assert len(with_bos) == len(ids)


def test_measure_by_hand(tiny_lm):
    [c] = compress(["to be or not to be"], tiny_lm, n_vectors=2, max_steps=300)
    m = measure(c, tiny_lm)
    ids = c.token_ids
    embed = tiny_lm.model.get_input_embeddings()
    x = torch.cat([embed(torch.tensor([[c.prefix_id]])), c.vectors[None], embed(torch.tensor([ids]))], 1)
    logp_with = tiny_lm.model(inputs_embeds=x).logits[0].log_softmax(-1)
    logp_without = tiny_lm.model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
    T = len(ids)
    # [prefix ; 2 vectors ; text]: position 2 + t predicts token t; the baseline scores tokens 1 .. T-1.
    ce_with = -sum(logp_with[2 + t, ids[t]].item() for t in range(1, T))
    ce_without = -sum(logp_without[t - 1, ids[t]].item() for t in range(1, T))
    hits_with = sum(logp_with[2 + t].argmax().item() == ids[t] for t in range(1, T))
    hits_without = sum(logp_without[t - 1].argmax().item() == ids[t] for t in range(1, T))
    assert m.exact and m.tokens == T and m.scored_tokens == T - 1 and not m.first_token_scored
    assert m.ce_with_bits == pytest.approx(ce_with / math.log(2), rel=1e-4)
    assert m.ce_without_bits == pytest.approx(ce_without / math.log(2), rel=1e-4)
    assert m.information_gain_nats == pytest.approx(ce_without - ce_with, rel=1e-4)
    assert m.information_gain_bits == pytest.approx((ce_without - ce_with) / math.log(2), rel=1e-4)
    assert m.token_gain == hits_with - hits_without
    assert m.accuracy_with == 1.0 and m.accuracy_without == pytest.approx(hits_without / (T - 1))
    assert m.theoretical_capacity == pytest.approx(2 * 128 * 16 / math.log2(tiny_lm.vocab_size))
    assert m.utilization == pytest.approx(m.token_gain / m.theoretical_capacity)


def bos_adding(tiny_dir):
    """The tiny tokenizer made to put <s> before every plain encoding while its add_bos_token stays False, as
    Gemma's does."""
    from tokenizers import processors
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    tok._tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    assert not getattr(tok, "add_bos_token", False) and tok("to be")["input_ids"][0] == 0
    return tok


def test_the_baseline_reads_bos_where_the_plain_encoding_starts_with_it(tiny_lm, tiny_dir):
    from dataclasses import replace

    from cramming.core.metrics import baseline_bos

    assert baseline_bos(tiny_lm.tokenizer) is None  # a BOS it has but does not add: not read
    gemma_like = replace(tiny_lm, tokenizer=bos_adding(tiny_dir))
    assert baseline_bos(gemma_like.tokenizer) == 0
    [c] = compress(["to be or not to be"], tiny_lm, n_vectors=2, max_steps=300)
    m = measure(c, gemma_like)
    ids = c.token_ids
    logp = tiny_lm.model(input_ids=torch.tensor([[0, *ids]])).logits[0].log_softmax(-1)
    assert m.first_token_scored and m.scored_tokens == len(ids)
    assert m.ce_without_bits == pytest.approx(-sum(logp[t, ids[t]].item() for t in range(len(ids))) / math.log(2),
                                              rel=1e-4)
