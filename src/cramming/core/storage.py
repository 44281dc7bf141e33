"""How a vector file stores its vectors: float32, float16, bfloat16, or k bits per coordinate (forms.py names them).

intK (k from 2 to 16) quantizes each vector uniformly between its own minimum and maximum: 2**k - 1 steps,
a float32 scale and offset per vector, the k-bit codes packed into bytes. Loading always gives float32
vectors back; `stored()` gives exactly what loading a file of that form gives, so a round trip can be checked
on what was stored rather than on the float32 copy in memory. `straight_through()` gives the same values with
the gradient of the identity, so cramming can train the vectors through the storage form (loop.cram).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cramming.core.errors import CrammingError
from cramming.core.forms import bits

FLOATS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}  # the float forms' dtypes


def _grid(vectors: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[..., d] vectors -> (codes, scale, offset): each vector's k-bit codes between its minimum and maximum."""
    low, high = vectors.amin(-1), vectors.amax(-1)
    scale = torch.where(high > low, (high - low) / (2 ** k - 1), torch.ones_like(high))
    return torch.round((vectors - low[..., None]) / scale[..., None]).clamp(0, 2 ** k - 1), scale, low


class _Held(torch.autograd.Function):
    """Forward: the stored values, bit for bit (x + (held - x) can be an ulp off); backward: the identity."""

    @staticmethod
    def forward(ctx, vectors: torch.Tensor, held: torch.Tensor) -> torch.Tensor:
        return held

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def straight_through(vectors: torch.Tensor, form: str) -> torch.Tensor:
    """[..., d] vectors as a file of this form gives them back, with the gradient passing straight through."""
    if form == "fp32":
        return vectors
    if form in FLOATS:
        held = vectors.detach().to(FLOATS[form]).float()
    else:
        codes, scale, low = _grid(vectors.detach(), bits(form))
        held = codes * scale[..., None] + low[..., None]
    return _Held.apply(vectors, held)


def encode(vectors: torch.Tensor, form: str) -> dict[str, torch.Tensor]:
    """[n, d] float32 vectors -> the tensors a file of this form stores."""
    vectors = vectors.detach().float().cpu().contiguous()
    if form in FLOATS:
        return {"mem": vectors.to(FLOATS[form]).contiguous()}
    k = bits(form)
    codes, scale, low = _grid(vectors, k)
    codes = codes.to(torch.int64).numpy()
    as_bits = ((codes[..., None] >> np.arange(k - 1, -1, -1)) & 1).astype(np.uint8)  # [n, d, k], high bit first
    packed = np.packbits(as_bits.reshape(codes.shape[0], -1), axis=1)
    return {"codes": torch.from_numpy(packed), "scale": scale.contiguous(), "offset": low.contiguous()}


def decode(tensors: dict[str, torch.Tensor], form: str, n_vectors: int, d_model: int | None = None) -> torch.Tensor:
    """The stored tensors of a file of this form -> [n, d] float32 vectors; a payload that does not fit the form
    is refused."""
    if form in FLOATS:
        mem = tensors.get("mem")
        if mem is None or mem.dtype != FLOATS[form] or mem.ndim != 2 or mem.shape[0] != n_vectors:
            raise CrammingError(f"its payload does not match its recorded storage form {form}")
        return mem.float()
    k = bits(form)
    codes, scale, offset = tensors.get("codes"), tensors.get("scale"), tensors.get("offset")
    ok = (codes is not None and scale is not None and offset is not None and codes.dtype == torch.uint8
          and codes.ndim == 2 and codes.shape[0] == n_vectors and scale.shape == offset.shape == (n_vectors,)
          and scale.dtype == offset.dtype == torch.float32 and d_model is not None
          and codes.shape[1] == math.ceil(d_model * k / 8))
    if not ok:
        raise CrammingError(f"its payload does not match its recorded storage form {form}")
    flat = np.unpackbits(codes.numpy(), axis=1)[:, : d_model * k].reshape(n_vectors, d_model, k)
    values = torch.from_numpy((flat.astype(np.int64) << np.arange(k - 1, -1, -1)).sum(-1)).float()
    return values * scale[:, None] + offset[:, None]


def stored(vectors: torch.Tensor, form: str) -> torch.Tensor:
    """The float32 vectors a file of this form gives back when loaded."""
    return decode(encode(vectors, form), form, vectors.shape[0], vectors.shape[1])
