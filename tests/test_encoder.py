"""Encoders (encoder.py, encoder_train.py): fit, files, training that resumes, the `encoder` recipe field."""

import shutil
import sqlite3
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

from cramming import CrammingError, api
from cramming.core.loop import text_logits
from cramming.core.recipes import RECIPES
from cramming.experiments.encoder_plan import Training
from cramming.experiments.encoder_training import common_start, train_encoder, training_store
from cramming.experiments.runner import Spec, run_local
from cramming.files.database import Store
from cramming.model.encoder import Encoder, choose_alpha, encoder_path, features, fit_end_to_end, padded, ridge

from .conftest import load_script
from .grid import kill_9_after


@pytest.fixture(autouse=True)
def own_encoders(monkeypatch, tmp_path, tiny_lm, own_cache):
    """A cache per test: encoders and their training passages are found there by model, so tests stay apart.
    The tiny model's prior is the same in every one: built once in the session's cache, copied in."""
    from cramming.model.prior import model_prior

    model_prior(tiny_lm, 1, 0)
    shutil.copytree(own_cache / "priors", tmp_path / "cache" / "priors")
    monkeypatch.setenv("CRAMMING_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def passages(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("The cat sat on the mat. A quick brown fox jumps. To be or not to be. All that glitters is "
                    "not gold. The dog sat on the log. Whether tis nobler in the mind. The fox sat on the cat. "
                    "A dog jumps over the mat. Not all gold glitters. The mind is not the log. To sit or not to "
                    "sit. The quick cat is gold. A lazy dog sat. The log is on the mat.")
    return f"file:{path}"


def test_ridge_recovers_a_linear_map_and_cross_validation_prefers_little_penalty():
    g = torch.Generator().manual_seed(0)
    x, true = torch.randn(200, 8, generator=g), torch.randn(8, 3, generator=g)
    y = x @ true + 0.5 + 0.01 * torch.randn(200, 3, generator=g)
    weight, bias = ridge(x, y, 1e-3)
    assert torch.allclose(weight, true, atol=0.01) and torch.allclose(bias, torch.full((3,), 0.5), atol=0.01)
    alpha, errors = choose_alpha(x, y, [1e-3, 1e4])
    assert alpha == 1e-3 and errors[1e-3] < errors[1e4]


def test_features_read_the_text_not_the_padding(tiny_lm):
    ids = tiny_lm.tokenizer("the cat sat on the mat", add_special_tokens=False)["input_ids"]
    alone = features(tiny_lm, [ids], 1, 0)
    beside_longer = features(tiny_lm, [ids, ids + ids], 1, 0)[:1]  # padded to the longer text's width
    assert alone.shape == (1, tiny_lm.d_model) and torch.allclose(alone, beside_longer, atol=1e-5)
    with pytest.raises(CrammingError, match="has 2 blocks"):
        features(tiny_lm, [ids], 3, 0)


def test_training_fits_saves_and_starts_closer(tiny_lm, passages, tmp_path):
    training = Training(sources=(passages,), lengths=(6, 8), passages=6, max_steps=300, layer=2)
    encoder = train_encoder(tiny_lm, 1, training)
    assert encoder_path(tiny_lm, 1).exists() and encoder.about["texts"] >= 10
    loaded = Encoder.load(encoder_path(tiny_lm, 1))
    assert torch.equal(loaded.weight, encoder.weight) and loaded.layer == 2 and loaded.about["passages"] == 6
    assert loaded.about["cramming_seconds"] > 0
    # the encoder's starts fit their training texts better than the common start does (in-sample)
    rows = sqlite3.connect(training_store(tiny_lm, 1)).execute("SELECT text FROM results WHERE exact").fetchall()
    ids = [tiny_lm.tokenizer(t, add_special_tokens=False)["input_ids"] for (t,) in rows]
    start = common_start(tiny_lm, 1)

    def loss(vectors):
        target, valid = padded(ids, tiny_lm.device)
        with torch.no_grad():
            logits = text_logits(tiny_lm.model, vectors, tiny_lm.model.get_input_embeddings()(target), 0)
            ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        return ((ce * valid).sum(1) / valid.sum(1)).mean().item()

    common = start.expand(len(ids), *start.shape)
    assert loss(common + loaded.offsets(tiny_lm, ids, 0)) < loss(common)
    # end to end, from the ridge head: the cramming loss of the predicted starts falls
    losses = []
    x = features(tiny_lm, ids, loaded.layer, 0)
    tuned = fit_end_to_end(tiny_lm, loaded, x, ids, start, prefix_id=0, steps=30, lr=1e-2, batch=len(ids),
                           on_step=lambda step, value: losses.append(value))
    assert losses[-1] < losses[0] and tuned.about["fit"] == "ridge, then end to end"
    assert loss(common + tuned.offsets(tiny_lm, ids, 0)) < loss(common + loaded.offsets(tiny_lm, ids, 0))


def test_the_encoder_recipe_field_starts_each_text_from_its_prediction(tiny_lm, passages):
    recipe = RECIPES["default"].override({"encoder": True, "max_steps": 400})
    with pytest.raises(CrammingError, match="no encoder for .* cram encoder train"):
        api.compress(["the cat sat on the mat"], tiny_lm, recipe=recipe)
    train_encoder(tiny_lm, 1, Training(sources=(passages,), lengths=(6, 8), passages=6, max_steps=300, layer=2))
    [with_encoder] = api.compress(["the dog sat on the log"], tiny_lm, recipe=recipe)
    [without] = api.compress(["the dog sat on the log"], tiny_lm, recipe=recipe.override({"encoder": False}))
    assert with_encoder.exact and with_encoder.history[0] != without.history[0]  # another start
    with pytest.raises(CrammingError, match="encoder needs prior"):
        RECIPES["cold"].override({"encoder": True})


def test_a_shipped_encoder_is_found_and_one_trained_here_wins_over_it(tiny_lm, passages, tmp_path, monkeypatch):
    from cramming.model import encoder as encoder_module

    training = Training(sources=(passages,), lengths=(6, 8), passages=6, max_steps=300, layer=2)
    shipped = train_encoder(tiny_lm, 1, training, out=tmp_path / "shipped" / encoder_path(tiny_lm, 1).name)
    monkeypatch.setattr(encoder_module, "SHIPPED", tmp_path / "shipped")
    assert not encoder_path(tiny_lm, 1).exists()
    assert torch.equal(encoder_module.model_encoder(tiny_lm, 1).weight, shipped.weight)  # no cache: the shipped
    own = train_encoder(tiny_lm, 1, replace(training, layer=1))  # `cram encoder train`: into the cache
    found = encoder_module.model_encoder(tiny_lm, 1)
    assert found.layer == own.layer == 1 and torch.equal(found.weight, own.weight)


def test_rows_that_start_from_an_encoder_are_keyed_by_that_encoder(tiny_lm, tiny_dir, passages, tmp_path):
    spec = Spec(models=[str(tiny_dir)], sources=[passages], lengths=[6], samples=1, max_steps=100,
                recipes={"enc": {"base": "default", "encoder": True}})
    store = Store(tmp_path / "rows.sqlite")
    with pytest.raises(CrammingError, match="no encoder for"):
        run_local(spec, store, device="cpu")
    training = Training(sources=(passages,), lengths=(6, 8), passages=6, max_steps=300, layer=2)
    train_encoder(tiny_lm, 1, training)
    assert run_local(spec, store, device="cpu") == 1
    assert run_local(spec, store, device="cpu") == 0  # the same encoder: done already
    train_encoder(tiny_lm, 1, replace(training, layer=1))  # another head, the same recipe
    assert run_local(spec, store, device="cpu") == 1  # another run, beside the first
    assert len({r["recipe_digest"] for r in store.rows()}) == 2


def test_an_encoder_for_another_model_or_not_an_encoder_is_refused(tiny_lm, other_tiny_dir, passages, tmp_path):
    from cramming import load_model

    encoder = train_encoder(tiny_lm, 1, Training(sources=(passages,), lengths=(6,), passages=12, max_steps=300,
                                                 layer=1), out=tmp_path / "enc.safetensors")
    other = load_model(str(other_tiny_dir), "cpu")
    with pytest.raises(CrammingError, match="trained for .*, not for"):
        Encoder.load(tmp_path / "enc.safetensors").offsets(other, [[1, 2, 3]], 0)
    save_file({"weight": encoder.weight.contiguous()}, str(tmp_path / "bare.safetensors"))
    (tmp_path / "junk.safetensors").write_bytes(b"not a file at all")
    for bad in ("bare", "junk"):
        with pytest.raises(CrammingError, match="is not a cramming encoder file"):
            Encoder.load(tmp_path / f"{bad}.safetensors")
    with pytest.raises(CrammingError, match="no such encoder file"):
        Encoder.load(tmp_path / "missing.safetensors")


def test_encoder_train_command_resumes_after_kill_9(tiny_dir, passages, tmp_path):
    args = [sys.executable, "-m", "cramming", "encoder", "train", "--model", str(tiny_dir), "--sources", passages,
            "--lengths", "6,8", "--passages", "6", "--max-steps", "300", "--layer", "2", "--threads", "1", "-q"]
    from cramming import load_model

    store = training_store(load_model(str(tiny_dir), "cpu"), 1)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    kept = kill_9_after(proc, store, rows=6)
    assert 6 <= kept < 12
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "encoder for" in done.stderr and sqlite3.connect(store).execute(
        "SELECT count(*) FROM results").fetchone()[0] == 12
    bad = subprocess.run([a if a != "6,8" else "six" for a in args], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: --lengths takes")


def test_the_benchmarks_starts_cram_with_their_own_recipes():
    # Labelled rows once crammed `cold` as the default (its rows then found "done" as the default's).
    bench = load_script("benchmarks/encoder.py", "encoder_benchmark")
    recipes = {name: bench.spec(name, 64, 1500, 8, label).recipe(label)
               for name, label in (("encoder", "encoder: ridge"), ("default", "default"), ("cold", "cold"))}
    for name, base in (("encoder", "default"), ("default", "default"), ("cold", "cold")):
        as_named = replace(recipes[name], name=RECIPES[base].name, encoder=False, precision="auto", max_steps=5000)
        assert as_named == RECIPES[base]
        assert recipes[name].precision == "bf16" and recipes[name].max_steps == 1500
    assert recipes["encoder"].encoder and len({r.digest() for r in recipes.values()}) == 3
