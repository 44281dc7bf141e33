"""How robust a vector file is: the margins along its greedy path, the storage forms and dtypes it survives,
the fewest bits per coordinate that keep its round trip exact, and the noise it takes.

A certificate never changes the file. Every check decodes greedily from altered vectors and compares the
result with the hashes the file stores, the same test `decompress` applies.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from cramming.api import file_decoder, file_model, file_reading
from cramming.core import forms, storage
from cramming.core.decode import DECODERS, Expected, verify
from cramming.files.vector_file import check_compatible, load_vectors
from cramming.model.loading import LoadedModel

BITS = tuple(range(16, 1, -1))  # intK forms tried, 16 down to 2
RADII = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5, 1.0)  # relative noise tried
CHECKS = 4 + len(RADII)  # the steps on_check counts: model, greedy path, forms, bf16 model, then each radius


@dataclass
class Certificate:
    tokens: int
    n_vectors: int
    d_model: int
    text_bytes: int | None  # the text's UTF-8 bytes, when the file decodes to it
    storage: str  # the form the file holds
    margins: list[float]  # top-1 minus top-2 logit at each token of the greedy path
    min_margin: float
    exact: dict[str, bool]  # check -> whether the round trip stays exact
    # fewest k whose intK form of these vectors decodes exactly (None: not even int16); not monotone in k: vectors
    # crammed through int3 (compress --storage int3) sit on its grid, which int4's does not contain
    effective_bits: int | None
    noise_radius: float | None  # largest relative radius with >= `survival` of the noisy copies exact
    payload_bytes: dict[str, int] = field(default_factory=dict)  # form -> bytes of the vectors in it
    rank: int | None = None  # the file stores this many coefficients in the model's basis, not the vectors

    def to_dict(self) -> dict:
        return asdict(self)


def certify(path: str | Path, *, model: str | LoadedModel | None = None, device: str = "auto", copies: int = 20,
            survival: float = 0.95, seed: int = 0, on_check: Callable[[int, str], None] | None = None) -> Certificate:
    """on_check(checks done, what is next) after each of its CHECKS steps at most (the noise stops early)."""
    tell = on_check or (lambda done, what: None)
    vectors, meta = load_vectors(path)
    tell(0, "loading the model")
    lm = file_model(meta, model, device, path)
    check_compatible(meta, lm.fingerprint, lm.tokenizer_fingerprint, lm.name, path)
    tell(1, "decoding the greedy path")
    prefix, n_tokens = meta.get("prefix_token_id"), meta["n_tokens"]
    decoder = file_decoder(meta)  # greedy, or one-step: the file's own way back

    expected = Expected.of_file(meta)

    # A basis and a shared copied vector are the model's: only what the file stores is changed (a basis'
    # coefficients, where the file holds those).
    reading = file_reading(meta, lm)

    def exact(batch: torch.Tensor, bf16: bool = False) -> list[bool]:
        return [verify(lm.model, reading(v), expected, prefix, lm.tokenizer, bf16=bf16, decoder=decoder).exact
                for v in batch]

    ids, leads = DECODERS[decoder](lm.model, reading(vectors)[None], n_tokens, prefix, bf16=False, margins=True)
    margins = leads[0].tolist()  # top-1 minus top-2 at each token of the greedy path

    tell(2, f"decoding {3 + len(BITS)} storage forms")
    tried = ["stored", "fp16", "bf16"] + [f"int{k}" for k in BITS]
    variants = [vectors] + [storage.stored(vectors, form) for form in tried[1:]]
    survived = dict(zip(tried, exact(torch.stack(variants))))
    tell(3, "decoding under a bf16 model")
    survived["bf16 model"] = exact(vectors[None], bf16=True)[0]
    effective = min((k for k in BITS if survived[f"int{k}"]), default=None)

    radius, g = None, torch.Generator().manual_seed(seed)
    for i, r in enumerate(RADII):  # noise of relative size r: each copy's vector moved by r times its norm
        tell(4 + i, f"noise of radius {r:g}, {copies} copies")
        noise = torch.randn(copies, *vectors.shape, generator=g)
        noise = noise / noise.norm(dim=-1, keepdim=True) * vectors.norm(dim=-1, keepdim=True) * r
        if sum(exact(vectors[None] + noise)) < survival * copies:
            break
        radius = r

    tell(CHECKS, "done")
    rows, width = vectors.shape  # what is stored: the vectors, or their coefficients in the model's basis
    payload = {form: forms.payload_bytes(rows, width, form) for form in ("fp32", "fp16", "bf16")}
    if effective is not None:
        payload[f"int{effective}"] = forms.payload_bytes(rows, width, f"int{effective}")
    text = lm.tokenizer.decode(ids[0].tolist()) if survived["stored"] else None
    return Certificate(n_tokens, meta["n_vectors"], meta.get("d_model", width),
                       len(text.encode("utf-8")) if text is not None else None, meta["storage"], margins, min(margins),
                       survived, effective, radius, payload, meta.get("rank"))
