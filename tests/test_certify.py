"""Storage forms, --margin and certificates on the tiny model."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save

from cramming import CrammingError, compress, greedy_decode
from cramming.core.forms import parse_form, payload_bytes
from cramming.core.storage import encode, stored, straight_through
from cramming.experiments.certify import certify
from cramming.files.vector_file import load_vectors, tensor_sha256

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


@pytest.mark.parametrize("form", ["fp32", "bf16", "int3"])
def test_straight_through_gives_the_stored_values_and_the_identity_gradient(form):
    x = (torch.randn(2, 3, 64) * 5).requires_grad_(True)
    y = straight_through(x, form)
    assert all(torch.equal(y[i].detach(), stored(x[i].detach(), form)) for i in range(2))  # bit for bit
    (y * torch.arange(64.0)).sum().backward()
    assert torch.equal(x.grad, torch.arange(64.0).expand(2, 3, 64))


def storage_exact(lm, crammed, form: str) -> bool:
    row = greedy_decode(lm.model, stored(crammed.vectors, form)[None], len(crammed.token_ids), crammed.prefix_id)
    return row[0].tolist() == crammed.token_ids


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
    with safe_open(str(vec), framework="pt") as f:  # payload_bytes: what the stored tensors take in the file
        assert meta["payload_bytes"] == sum(f.get_tensor(k).numel() * f.get_tensor(k).element_size() for k in f.keys())
    if row["exact"]:
        assert run_cli("decompress", str(vec))[1] == TEXT.encode()
    else:  # exact in float32, lost as stored: said so, and the file records it
        assert row["path_margin"] is not None and "not as stored" in err and meta["exact"] is False


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
    assert plain.exact and wide.exact and wide.path_margin >= 4.0 > plain.path_margin
    assert wide.steps > plain.steps


def test_a_certificate(tiny_lm, tmp_path):
    [plain] = compress([TEXT], tiny_lm, n_vectors=2, max_steps=600)
    [wide] = compress([TEXT], tiny_lm, n_vectors=2, max_steps=600, min_margin=4.0)
    thin, thick = certify(plain.save(tmp_path / "p.safetensors"), model=tiny_lm), certify(
        wide.save(tmp_path / "w.safetensors"), model=tiny_lm)
    assert thin.min_margin == pytest.approx(plain.path_margin, abs=1e-3) and thick.min_margin >= 4.0 - 1e-3
    assert len(thin.margins) == len(plain.token_ids) and thin.exact["stored"] and thin.text_bytes == len(TEXT)
    assert not thin.exact["int2"]  # a small margin does not survive two bits per coordinate
    assert thin.exact[f"int{thin.effective_bits}"]
    assert not any(thin.exact[f"int{k}"] for k in range(2, thin.effective_bits))  # the fewest that works
    assert thick.exact[f"int{thick.effective_bits}"] and 2 <= thick.effective_bits <= 16
    assert thin.noise_radius is None or thin.noise_radius <= thick.noise_radius or thick.noise_radius is None
    assert thin.payload_bytes["fp32"] == 2 * 128 * 4


def test_cramming_through_the_storage_form_makes_it_exact_as_stored(tiny_lm, tmp_path):
    [plain] = compress([TEXT], tiny_lm, n_vectors=2, max_steps=600)
    assert not storage_exact(tiny_lm, plain, "int2")  # the float32 solution does not survive two bits
    [coarse] = compress([TEXT], tiny_lm, n_vectors=2, max_steps=600, storage_form="int2")
    assert coarse.exact and coarse.storage == "int2"
    c = certify(coarse.save(tmp_path / "c.safetensors"), model=tiny_lm)
    assert c.exact["stored"] and c.exact["int2"] and c.effective_bits == 2


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
