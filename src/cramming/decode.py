"""Greedy decoding from memory vectors alone, and the round-trip check."""

from __future__ import annotations

import inspect

from dataclasses import dataclass

import torch

from .models import autocast


def with_lead(model: torch.nn.Module, mem: torch.Tensor, lead: int | None) -> torch.Tensor:
    """The model's input before the text: the [B, n, d] vectors, then the fixed lead token if there is one.

    Why a lead token: the first position of a causal LM is its attention sink, whose output barely depends
    on its input. Asked to predict the first text token from there, one vector spends thousands of steps on
    that one token (see README). A constant token after the vectors (the model's BOS, which is what the
    paper's Llama runs had there) predicts it instead; it carries no information about the text, so the
    vectors alone still decode it.
    """
    embedding = model.get_input_embeddings()
    mem = mem.to(device=embedding.weight.device, dtype=embedding.weight.dtype)
    if lead is None:
        return mem
    token = embedding(torch.full((mem.shape[0], 1), lead, device=mem.device))
    return torch.cat([mem, token], dim=1)


@torch.no_grad()
def greedy_decode(model: torch.nn.Module, mem: torch.Tensor, n_tokens: int, lead: int | None = None) -> torch.Tensor:
    """Feed [B, n, d] vectors (and the lead token, if any; no prompt), then take the argmax token n_tokens times
    -> [B, n_tokens].

    Exactly n_tokens: no stop on EOS, since the text's own length is known from the vector file.
    """
    embedding = model.get_input_embeddings()
    device = embedding.weight.device
    # transformers 5 renamed past_key_values to cache; accept both.
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    x, cache, out = with_lead(model, mem, lead), None, []
    with autocast(device):
        for _ in range(n_tokens):
            step = model(inputs_embeds=x, use_cache=True, logits_to_keep=1, **{cache_arg: cache})
            cache = getattr(step, cache_arg)
            token = step.logits[:, -1].argmax(-1)
            out.append(token)
            x = embedding(token)[:, None]
    return torch.stack(out, dim=1)


@dataclass
class RoundTrip:
    exact: bool  # token ids and text bytes both equal the original
    decoded_ids: list[int]
    decoded_text: str
    first_mismatch: int | None  # index of the first wrong token, None when all are right


def round_trip(model: torch.nn.Module, tokenizer, mem: torch.Tensor, token_ids: list[int], text: str,
               lead: int | None = None) -> RoundTrip:
    """Decode [n, d] vectors back to text and compare ids and bytes with the original."""
    decoded = greedy_decode(model, mem[None], len(token_ids), lead)[0].tolist()
    decoded_text = tokenizer.decode(decoded)
    mismatch = next((k for k, (a, b) in enumerate(zip(decoded, token_ids)) if a != b), None)
    exact = mismatch is None and decoded_text.encode("utf-8") == text.encode("utf-8")
    return RoundTrip(exact, decoded, decoded_text, mismatch)
