"""The vector file: safetensors holding `mem` [n, d] plus string metadata. Never pickle.

Format 3 stores a sha256 of the stored tensors' bytes in the metadata, so a file whose numbers were damaged is
refused as corrupted at once, not decoded into a wrong text; JSON-encodes every metadata value but `format`, so
each reads back as what it was (a model named "1" stays a string); and records its storage form (storage.py).
Older files still load: format 2 (the checksum, strings stored raw, float32) and format 1 (no checksum).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load, save

from cramming.core import forms, storage
from cramming.core.atomic import atomic_output
from cramming.core.errors import CrammingError

FORMAT = "cramming-vectors/3"
READABLE = ("cramming-vectors/1", "cramming-vectors/2", FORMAT)
CHECKSUMMED = READABLE[1:]
REQUIRED = ("format", "model", "model_fingerprint", "tokenizer_fingerprint", "n_tokens", "n_vectors",
            "tokens_sha256", "text_sha256")


def tensor_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of the stored tensors' bytes, in the order of their names."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(tensors[name].contiguous().flatten().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def vector_bytes(vectors: torch.Tensor, metadata: dict, form: str = "fp32") -> bytes:
    """The vector file's bytes: the vectors in a storage form (storage.py), with the metadata's values
    JSON-encoded and a checksum of what is stored."""
    tensors = storage.encode(vectors, form)
    meta = {**metadata, "storage": form, "tensor_sha256": tensor_sha256(tensors)}
    return save(tensors, metadata={"format": FORMAT, **{k: json.dumps(v) for k, v in meta.items()}})


def decode_metadata(raw: dict[str, str]) -> dict:
    """A vector file's metadata as the values it was written from."""
    decoded = {}
    for key, value in raw.items():
        if key == "format" or raw.get("format") == FORMAT:
            decoded[key] = value if key == "format" else json.loads(value)
            continue
        try:  # formats 1 and 2: strings were stored raw, everything else as JSON
            decoded[key] = json.loads(value)
        except json.JSONDecodeError:
            decoded[key] = value
    return decoded


def vector_metadata(data: bytes) -> dict:
    """The metadata of a vector file's bytes, read from the safetensors header (8-byte length, then JSON)."""
    size = int.from_bytes(data[:8], "little")
    return decode_metadata(json.loads(data[8: 8 + size]).get("__metadata__", {}))


def stored_shape(meta: dict) -> tuple[int, int | None]:
    """The shape a vector file's tensor decodes to: [n, d], or [1, K] where it stores K coefficients in the model's
    basis (core/basis.py); d is None in files older than its record."""
    return (1, meta["rank"]) if "rank" in meta else (meta["n_vectors"], meta.get("d_model"))


def vectors_of(data: bytes) -> torch.Tensor:
    """The float32 stored vectors of a vector file's bytes (as a results row keeps them): [n, d], or [1, K]
    coefficients in the model's basis (stored_shape)."""
    meta = vector_metadata(data)
    return storage.decode(load(data), meta.get("storage", "fp32"), *stored_shape(meta))


def save_vectors(path: str | Path, vectors: torch.Tensor, metadata: dict, form: str = "fp32") -> Path:
    """Write atomically (temporary file, then rename): a crash never leaves a half-written vector file."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(vector_bytes(vectors, metadata, form))
    return Path(path)


def load_vectors(path: str | Path) -> tuple[torch.Tensor, dict]:
    """The stored vectors of a checked vector file (stored_shape), and its metadata as values (decode_metadata)."""
    path = Path(path)
    if not path.is_file():
        raise CrammingError(f"no such vector file: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") not in READABLE or any(k not in meta for k in REQUIRED):
                raise CrammingError(f"{path} is a safetensors file but not a cramming vector file")
            tensors = {name: f.get_tensor(name) for name in f.keys()}
            meta = decode_metadata(meta)
    except CrammingError:
        raise
    except Exception as err:  # safetensors raises several types for truncated or foreign files
        reason = str(err).splitlines()[0] if str(err) else "corrupt"
        raise CrammingError(f"{path} is not a readable vector file ({type(err).__name__}: {reason})") from None
    if meta["format"] in CHECKSUMMED and tensor_sha256(tensors) != meta.get("tensor_sha256"):
        raise CrammingError(f"{path} is corrupted: its vectors do not match the checksum stored with them")
    form = meta.setdefault("storage", "fp32")
    try:
        vectors = storage.decode(tensors, forms.parse_form(form), *stored_shape(meta))
    except CrammingError as err:
        raise CrammingError(f"{path}: {err}") from None
    rows, width = stored_shape(meta)
    if vectors.ndim != 2 or vectors.shape[0] != int(rows) or (width is not None and vectors.shape[1] != int(width)):
        raise CrammingError(f"{path}: vectors of shape {tuple(vectors.shape)} do not match its metadata")
    if not torch.isfinite(vectors).all():
        raise CrammingError(f"{path}: the vectors hold NaN or inf")
    return vectors, meta


def check_compatible(meta: dict, model_fingerprint: str, tokenizer_fingerprint: str,
                     model_name: str, path: str | Path) -> None:
    """Refuse vectors made for another model or tokenizer: they would decode to garbage."""
    if meta["model_fingerprint"] != model_fingerprint:
        raise CrammingError(f"{path} was made with model {meta['model']!r} (fingerprint {meta['model_fingerprint']}), "
                            f"not {model_name!r} (fingerprint {model_fingerprint})")
    if meta["tokenizer_fingerprint"] != tokenizer_fingerprint:
        raise CrammingError(f"{path} was made with another tokenizer (fingerprint {meta['tokenizer_fingerprint']}, "
                            f"this one is {tokenizer_fingerprint})")
