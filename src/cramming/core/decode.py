"""Decoding from memory vectors alone, greedy or in one step, and the one test of exactness (verify)."""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cramming.core.basis import Basis
from cramming.core.precision import autocast


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
                  prefix_id: int | None = None, bf16: bool | None = None, margins: bool = False
                  ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Feed [B, n, d] vectors (after the prefix token, if any; no prompt), then take the argmax token n_tokens
    times -> [B, n_tokens]; with margins, also each step's top-1 minus top-2 logit [B, n_tokens]. bf16: run the
    model under bf16 autocast (default: on CUDA only).

    Exactly n_tokens: no stop on EOS, since the text's own length is known from the vector file.
    """
    embedding = model.get_input_embeddings()
    device = embedding.weight.device
    # transformers 5 renamed past_key_values to cache; accept both.
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    x, cache, out, leads = with_prefix(model, vectors, prefix_id), None, [], []
    with autocast(device, bf16):
        for _ in range(n_tokens):
            step = model(inputs_embeds=x, use_cache=True, logits_to_keep=1, **{cache_arg: cache})
            cache = getattr(step, cache_arg)
            logits = step.logits[:, -1]
            token = logits.argmax(-1)
            out.append(token)
            if margins:
                top = logits.float().topk(2, dim=-1).values
                leads.append(top[:, 0] - top[:, 1])
            x = embedding(token)[:, None]
    tokens = torch.stack(out, dim=1)
    return (tokens, torch.stack(leads, dim=1)) if margins else tokens


def one_step_inputs(model: torch.nn.Module, vectors: torch.Tensor, n_tokens: int,
                    prefix_id: int | None = None) -> torch.Tensor:
    """The one-step layout: [prefix ; vectors[:, :-1] ; n_tokens copies of vectors[:, -1]], the model's input."""
    head = with_prefix(model, vectors[:, :-1], prefix_id)
    return torch.cat([head, vectors[:, -1:].to(head.dtype).expand(-1, n_tokens, -1)], dim=1)


def one_step_logits(model: torch.nn.Module, vectors: torch.Tensor, n_tokens: int,
                    prefix_id: int | None = None) -> torch.Tensor:
    """The logits at the copies' positions of the one-step layout (one_step_inputs) [B, n_tokens, V], the k-th copy
    predicting the text's k-th token. All tokens come from one forward pass; no token is fed back."""
    x = one_step_inputs(model, vectors, n_tokens, prefix_id)
    return model(inputs_embeds=x, use_cache=False, logits_to_keep=n_tokens).logits


def with_copy(vectors: torch.Tensor, copy: torch.Tensor | None) -> torch.Tensor:
    """[..., n, d] text vectors and a shared copied vector [d] -> [..., n + 1, d], the one-step layout's input (the
    last vector is the one copied); the vectors themselves where there is no shared copy."""
    if copy is None:
        return vectors
    return torch.cat([vectors, copy.to(vectors).expand(*vectors.shape[:-2], 1, -1)], dim=-2)


@dataclass(frozen=True)
class Reading:
    """How what a file stores becomes what the model reads: the stored vectors themselves, or the vectors their
    coefficients give in the model's shared basis (basis.py); then the model's shared copied vector after them,
    where the file's text comes back one-step with it. Both are the model's, never the file's."""

    basis: Basis | None = None
    copy: torch.Tensor | None = None

    def vectors(self, stored: torch.Tensor) -> torch.Tensor:
        """[..., n, d] the text's own vectors from what is stored ([..., 1, K] coefficients under a basis)."""
        return stored if self.basis is None else self.basis.expand(stored)

    def __call__(self, stored: torch.Tensor) -> torch.Tensor:
        """The model's input vectors: the text's own, then the shared copy where there is one."""
        return with_copy(self.vectors(stored), self.copy)


@torch.no_grad()
def one_step_decode(model: torch.nn.Module, vectors: torch.Tensor, n_tokens: int, prefix_id: int | None = None,
                    bf16: bool | None = None, margins: bool = False
                    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """greedy_decode's counterpart for the one-step layout: each position's argmax, from one forward pass."""
    with autocast(model.get_input_embeddings().weight.device, bf16):
        logits = one_step_logits(model, vectors, n_tokens, prefix_id).float()
    tokens = logits.argmax(-1)
    if not margins:
        return tokens
    top = logits.topk(2, dim=-1).values
    return tokens, top[..., 0] - top[..., 1]


DECODERS = {"greedy": greedy_decode, "one-step": one_step_decode}


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_ids(ids: Sequence[int]) -> str:
    return hashlib.sha256(json.dumps(list(ids)).encode()).hexdigest()


@dataclass(frozen=True)
class Expected:
    """What vectors must decode to: a text's token ids and bytes, as hashes (a vector file holds only those)."""

    n_tokens: int
    tokens_sha256: str
    text_sha256: str | None  # None: the token ids alone are checked (the engine, which has no tokenizer)
    token_ids: tuple[int, ...] | None = None  # at hand where the text is: the first wrong token is then known

    @classmethod
    def of(cls, token_ids: Sequence[int], text: str | None = None) -> Expected:
        return cls(len(token_ids), sha256_ids(token_ids), None if text is None else sha256_text(text),
                   tuple(token_ids))

    @classmethod
    def of_file(cls, meta: dict) -> Expected:
        return cls(meta["n_tokens"], meta["tokens_sha256"], meta["text_sha256"])


@dataclass
class RoundTrip:
    exact: bool  # the decoded token ids (and, where checked, the text's bytes) are the expected ones
    decoded_ids: list[int]
    decoded_text: str | None  # None where no tokenizer was given
    first_mismatch: int | None  # the first wrong token where the ids are at hand; None when none is (or unknown)
    path_margin: float  # the smallest top-1 minus top-2 logit along the decoded path


def verify(model: torch.nn.Module, vectors: torch.Tensor, expected: Expected, prefix_id: int | None = None,
           tokenizer=None, *, bf16: bool = False, decoder: str = "greedy") -> RoundTrip:
    """The one test of exactness, which the engine, compress, decompress, certify and the grids all apply: decoding
    from [n, d] vectors as stored (greedy, or one-step: DECODERS), alone (batch size 1, as a file is read), in
    float32 on every device unless bf16 is asked for, compared with the expected token ids and, through the
    tokenizer, the text's bytes."""
    if expected.text_sha256 is not None and tokenizer is None:
        raise ValueError("checking the text's bytes needs the tokenizer")
    tokens, leads = DECODERS[decoder](model, vectors[None], expected.n_tokens, prefix_id, bf16=bf16, margins=True)
    ids = tokens[0].tolist()
    text = tokenizer.decode(ids) if tokenizer is not None else None
    exact = sha256_ids(ids) == expected.tokens_sha256 and (expected.text_sha256 is None
                                                           or sha256_text(text) == expected.text_sha256)
    wrong = None if expected.token_ids is None else next(
        (k for k, (a, b) in enumerate(zip(ids, expected.token_ids)) if a != b), None)
    return RoundTrip(exact, ids, text, wrong, leads.min().item() if leads.numel() else float("inf"))
