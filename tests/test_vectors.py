"""The vector file's metadata reads back as what was written, in format 3 and in the older formats 1 and 2."""

import hashlib
import json

import pytest
import torch
from safetensors.torch import save

from cramming.files.vector_file import FORMAT, load_vectors, vector_bytes, vector_metadata

META = {"model": "1", "model_fingerprint": "0123", "tokenizer_fingerprint": "4567", "n_tokens": 3, "n_vectors": 2,
        "tokens_sha256": "a" * 64, "text_sha256": "b" * 64, "exact": True, "prefix_token_id": None,
        "recipe": {"name": "default", "betas": [0.9, 0.9]}}


def test_every_value_reads_back_as_it_was_written(tmp_path):
    vectors = torch.randn(2, 8)
    meta = vector_metadata(vector_bytes(vectors, META))
    assert meta["format"] == FORMAT and meta["model"] == "1"  # a string that looks like a number stays a string
    assert {k: meta[k] for k in META} == META
    assert meta["tensor_sha256"] == hashlib.sha256(vectors.numpy().tobytes()).hexdigest()
    path = tmp_path / "v.safetensors"
    path.write_bytes(vector_bytes(vectors, META))
    loaded, meta = load_vectors(path)
    assert torch.equal(loaded, vectors) and meta["n_tokens"] == 3 and meta["exact"] is True


@pytest.mark.parametrize("old", ["cramming-vectors/1", "cramming-vectors/2"])
def test_an_older_file_still_loads(tmp_path, old):
    raw = {k: v if isinstance(v, str) else json.dumps(v) for k, v in META.items()}  # how they wrote them
    if old.endswith("2"):  # format 2 added the checksum of the float32 tensor
        raw["tensor_sha256"] = hashlib.sha256(torch.ones(2, 8).numpy().tobytes()).hexdigest()
    path = tmp_path / "old.safetensors"
    path.write_bytes(save({"mem": torch.ones(2, 8)}, metadata={"format": old, **raw}))
    vectors, meta = load_vectors(path)
    assert torch.equal(vectors, torch.ones(2, 8)) and meta["n_vectors"] == 2 and meta["recipe"]["name"] == "default"
    assert meta["exact"] is True and meta["prefix_token_id"] is None
