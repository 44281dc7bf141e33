"""The storage forms a vector file can hold its vectors in, by name and size: float32, float16, bfloat16, or k
bits per coordinate (intK, k from 2 to 16: a float32 scale and offset per vector besides the packed codes).
storage.py puts vectors into a form and back; this module needs no torch, so recipes and the command line can
check a form at once."""

from __future__ import annotations

import math

from cramming.core.errors import CrammingError

FLOAT_BITS = {"fp32": 32, "fp16": 16, "bf16": 16}


def parse_form(text: str) -> str:
    """fp32, fp16, bf16, intK (2 <= K <= 16) or a bare bit count K -> the form's name."""
    name = f"int{text}" if text.isdigit() else text
    if name in FLOAT_BITS or (name.startswith("int") and name[3:].isdigit() and 2 <= int(name[3:]) <= 16):
        return name
    raise CrammingError(f"unknown storage form {text!r}; use fp32, fp16, bf16, int2 ... int16 or a bit count")


def bits(form: str) -> int:
    """Bits a coordinate takes in this form."""
    return FLOAT_BITS[form] if form in FLOAT_BITS else int(form[3:])


def payload_bytes(n_vectors: int, d_model: int, form: str) -> int:
    """The bytes the vectors take in this form: codes, plus a float32 scale and offset per vector for intK."""
    if form in FLOAT_BITS:
        return n_vectors * d_model * bits(form) // 8
    return n_vectors * (math.ceil(d_model * bits(form) / 8) + 8)
