"""Greedy decoding from memory vectors alone, and the round-trip check."""

from __future__ import annotations

import inspect

from dataclasses import dataclass

import torch

from .models import autocast


@torch.no_grad()
def greedy_decode(model: torch.nn.Module, mem: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """Feed [B, n, d] vectors (no BOS, no prompt), then take the argmax token n_tokens times -> [B, n_tokens].

    Exactly n_tokens: no stop on EOS, since the text's own length is known from the vector file.
    """
    embedding = model.get_input_embeddings()
    device = embedding.weight.device
    # transformers 5 renamed past_key_values to cache; accept both.
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    x, cache, out = mem.to(device=device, dtype=embedding.weight.dtype), None, []
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


def round_trip(model: torch.nn.Module, tokenizer, mem: torch.Tensor, token_ids: list[int], text: str) -> RoundTrip:
    """Decode [n, d] vectors back to text and compare ids and bytes with the original."""
    decoded = greedy_decode(model, mem[None], len(token_ids))[0].tolist()
    decoded_text = tokenizer.decode(decoded)
    mismatch = next((k for k, (a, b) in enumerate(zip(decoded, token_ids)) if a != b), None)
    exact = mismatch is None and decoded_text.encode("utf-8") == text.encode("utf-8")
    return RoundTrip(exact, decoded, decoded_text, mismatch)
