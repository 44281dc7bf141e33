"""The model's prior: built once from book passages by cramming them, then read from the cache."""

from dataclasses import replace

import pytest
import torch
from safetensors import safe_open

from cramming import prior as prior_module
from cramming.api import compress, prefix_token
from cramming.engine import RECIPES, cram, init_vectors, teacher_forced
from cramming.texts import load_samples


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """An empty cache for this module's priors (the book passages are fetched into it once)."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("cache")
        patch.setenv("CRAMMING_CACHE", str(path))
        yield path


def test_the_prior_is_the_mean_of_the_passages_vectors_and_is_cached(tiny_lm, cache, monkeypatch):
    recipe = replace(RECIPES["default"], prior=True, max_steps=40)
    prefix = prefix_token(tiny_lm.tokenizer, recipe)
    built = prior_module.model_prior(tiny_lm, recipe, 2, prefix)

    passages = load_samples(prior_module.SOURCE, prior_module.PASSAGES, prior_module.TOKENS, tiny_lm.tokenizer,
                            prior_module.TEXT_SEED)
    ids = [tiny_lm.tokenizer(p.text, add_special_tokens=False)["input_ids"] for p in passages]
    results = cram(tiny_lm.model, ids, 2, replace(recipe, prior=False), prefix=prefix)
    assert torch.allclose(built, torch.stack([r.vectors for r in results]).mean(0))
    path = prior_module.prior_path(tiny_lm, recipe, 2)
    with safe_open(str(path), "pt") as f:
        assert f.metadata()["model_fingerprint"] == tiny_lm.fingerprint
        assert torch.equal(f.get_tensor("prior"), built)

    monkeypatch.setattr(prior_module, "cram", lambda *a, **k: pytest.fail("the cached prior was built again"))
    assert torch.equal(prior_module.model_prior(tiny_lm, recipe, 2, prefix), built)
    # Another number of vectors or another recipe is another prior.
    assert prior_module.prior_path(tiny_lm, recipe, 1) != path
    assert prior_module.prior_path(tiny_lm, replace(recipe, lr=0.1), 2) != path


def test_compress_with_a_prior_recipe_builds_the_prior_and_starts_from_it(tiny_lm, cache):
    recipe = replace(RECIPES["default"], prior=True, max_steps=300)
    [c] = compress(["the cat sat on the mat"], tiny_lm, n_vectors=2, recipe=recipe)
    assert c.exact and prior_module.prior_path(tiny_lm, recipe, 2).exists()
    start = init_vectors(recipe, 2, tiny_lm.model.get_input_embeddings().weight, seed=0) + prior_module.model_prior(
        tiny_lm, recipe, 2, c.prefix)
    nats, _ = teacher_forced(tiny_lm.model, c.result.token_ids, start, prefix=c.prefix)
    assert c.result.history[0][1] == pytest.approx(sum(nats) / len(nats), rel=1e-5)  # the loss at step 0
