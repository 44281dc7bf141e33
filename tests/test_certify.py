"""Storage forms, --margin and certificates on the tiny model."""

import json

import pytest
import torch
from safetensors.torch import save

from cramming import CrammingError, compress
from cramming.certify import certify
from cramming.storage import encode, parse_form, payload_bytes, stored
from cramming.vectors import load_vectors, tensor_sha256

TEXT = "the cat sat on the mat"


@pytest.mark.parametrize("form", ["fp32", "fp16", "bf16"] + [f"int{k}" for k in range(2, 17)])
def test_each_storage_form_round_trips_within_its_precision(form):
    x = torch.randn(3, 128) * 5
    y = stored(x, form)
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert sum(t.numel() * t.element_size() for t in encode(x, form).values()) == payload_bytes(3, 128, form)
    if form.startswith("int"):
        step = (x.max(1).values - x.min(1).values) / (2 ** int(form[3:]) - 1)
        assert ((y - x).abs() <= step[:, None] / 2 + 1e-5).all()  # at most half a step off
    else:
        assert torch.allclose(y, x, rtol={"fp32": 0, "fp16": 1e-3, "bf16": 1e-2}[form], atol=1e-3)


def test_storage_form_names():
    assert [parse_form(t) for t in ("fp16", "int8", "4", "16")] == ["fp16", "int8", "int4", "int16"]
    for bad in ("int1", "int17", "fp8", "1"):
        with pytest.raises(CrammingError, match="unknown storage form"):
            parse_form(bad)


@pytest.mark.parametrize("form", ["fp32", "fp16", "bf16", "int8", "int4", "6"])
def test_compress_checks_the_round_trip_as_stored(run_cli, tiny_dir, tmp_path, form):
    vec = tmp_path / "v.safetensors"
    code, out, err = run_cli("compress", TEXT, "--model", str(tiny_dir), "--vectors", "2", "--max-steps", "300",
                             "--storage", form, "--margin", "2", "-o", str(vec), "--json", "--quiet")
    row = json.loads(out)
    assert code == (0 if row["exact"] else 1), err
    meta = json.loads(run_cli("info", str(vec), "--json")[1])
    assert meta["storage"] == parse_form(form) and meta["shape"] == [2, 128]
    if row["exact"]:
        assert run_cli("decompress", str(vec))[1] == TEXT.encode()
    else:  # exact in float32, lost as stored: said so, and the file records it
        assert row["margin"] is not None and "not as stored" in err and meta["exact"] is False


def test_a_payload_that_does_not_match_its_form_is_refused(tiny_lm, tmp_path):
    [c] = compress([TEXT], tiny_lm, n_vectors=2, max_steps=300)
    path = c.save(tmp_path / "v.safetensors")
    tensors, meta = encode(c.vectors, "int8"), {**c.metadata(), "storage": "int4"}  # int8 codes, labelled int4
    meta["tensor_sha256"] = tensor_sha256(tensors)
    path.write_bytes(save(tensors, metadata={"format": "cramming-vectors/2",
                                             **{k: json.dumps(v) for k, v in meta.items()}}))
    with pytest.raises(CrammingError, match="does not match its recorded storage form int4"):
        load_vectors(path)


def test_margin_keeps_cramming_until_every_token_leads_by_it(tiny_lm):
    [plain] = compress([TEXT], tiny_lm, n_vectors=2, max_steps=600)
    [wide] = compress([TEXT], tiny_lm, n_vectors=2, max_steps=600, min_margin=4.0)
    assert plain.exact and wide.exact and wide.margin >= 4.0 > plain.margin
    assert wide.steps > plain.steps


def test_a_certificate(tiny_lm, tmp_path):
    [plain] = compress([TEXT], tiny_lm, n_vectors=2, max_steps=600)
    [wide] = compress([TEXT], tiny_lm, n_vectors=2, max_steps=600, min_margin=4.0)
    thin, thick = certify(plain.save(tmp_path / "p.safetensors"), model=tiny_lm), certify(
        wide.save(tmp_path / "w.safetensors"), model=tiny_lm)
    assert thin.min_margin == pytest.approx(plain.margin, abs=1e-3) and thick.min_margin >= 4.0 - 1e-3
    assert len(thin.margins) == len(plain.token_ids) and thin.exact["stored"] and thin.text_bytes == len(TEXT)
    assert not thin.exact["int2"]  # a small margin does not survive two bits per coordinate
    assert thin.effective_bits is not None and all(thin.exact[f"int{k}"] for k in range(thin.effective_bits, 17))
    assert thick.effective_bits <= thin.effective_bits  # a wider margin survives coarser storage
    assert thin.noise_radius is None or thin.noise_radius <= thick.noise_radius or thick.noise_radius is None
    assert thin.payload_bytes["fp32"] == 2 * 128 * 4


def test_certify_command(run_cli, tiny_dir, tmp_path):
    vec = tmp_path / "v.safetensors"
    assert run_cli("compress", TEXT, "--model", str(tiny_dir), "--vectors", "2", "--max-steps", "300",
                   "-o", str(vec), "--quiet")[0] == 0
    code, out, err = run_cli("certify", str(vec), "--json")
    assert code == 0, err
    c = json.loads(out)
    assert c["exact"]["stored"] is True and c["tokens"] == len(c["margins"]) and "bf16 model" in c["exact"]
    code, _, err = run_cli("certify", str(tmp_path / "missing.safetensors"))
    assert code == 2 and "no such vector file" in err
