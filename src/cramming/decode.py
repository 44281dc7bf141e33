"""Greedy decoding from memory vectors alone, and the round-trip check."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from .models import autocast


def with_prefix(model: torch.nn.Module, vectors: torch.Tensor, prefix_id: int | None) -> torch.Tensor:
    """The model's input before the text: the fixed prefix token if there is one, then the [B, n, d] vectors.

    Why a prefix token: the first position of a causal LM is its attention sink. Whatever sits there is
    attended to by every later position for lack of anything better, and its own output barely depends on
    its input. A single vector in that seat must both be the sink and carry the text, and SmolLM2 then
    stalls with one token wrong for thousands of steps. One constant token in front (the tokenizer's BOS,
    as a Llama sees at the start of every input) takes the sink's seat; it carries nothing about the text,
    so the vectors still decode alone, and the last vector still predicts the first text token.
    """
    embedding = model.get_input_embeddings()
    vectors = vectors.to(device=embedding.weight.device, dtype=embedding.weight.dtype)
    if prefix_id is None:
        return vectors
    token = embedding(torch.full((vectors.shape[0], 1), prefix_id, device=vectors.device))
    return torch.cat([token, vectors], dim=1)


@torch.no_grad()
def greedy_decode(model: torch.nn.Module, vectors: torch.Tensor, n_tokens: int,
                  prefix_id: int | None = None, bf16: bool | None = None) -> torch.Tensor:
    """Feed [B, n, d] vectors (after the prefix token, if any; no prompt), then take the argmax token n_tokens
    times -> [B, n_tokens]. bf16: run the model under bf16 autocast (default: on CUDA only).

    Exactly n_tokens: no stop on EOS, since the text's own length is known from the vector file.
    """
    embedding = model.get_input_embeddings()
    device = embedding.weight.device
    # transformers 5 renamed past_key_values to cache; accept both.
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    x, cache, out = with_prefix(model, vectors, prefix_id), None, []
    with autocast(device, bf16):
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


def round_trip(model: torch.nn.Module, tokenizer, vectors: torch.Tensor, token_ids: list[int], text: str,
               prefix_id: int | None = None) -> RoundTrip:
    """Decode [n, d] vectors back to text and compare ids and bytes with the original."""
    decoded = greedy_decode(model, vectors[None], len(token_ids), prefix_id)[0].tolist()
    decoded_text = tokenizer.decode(decoded)
    mismatch = next((k for k, (a, b) in enumerate(zip(decoded, token_ids)) if a != b), None)
    exact = mismatch is None and decoded_text.encode("utf-8") == text.encode("utf-8")
    return RoundTrip(exact, decoded, decoded_text, mismatch)
