"""Beyond Llama: the round trip, batching and decoding on tiny random GPT-2 and GPT-NeoX (Pythia) models, as
PEFT's test matrix runs each method on several architectures."""

import pytest
import torch

from cramming import compress, decompress, greedy_decode, load_model
from cramming.core.loop import text_logits

from .conftest import build_tiny_model

TEXTS = ["the cat sat on the mat", "all that glitters is not gold"]  # of different lengths: one is padded


@pytest.fixture(scope="module", params=["gpt2", "gpt_neox"])
def lm(request, tmp_path_factory):
    path = build_tiny_model(tmp_path_factory.mktemp(request.param), architecture=request.param)
    loaded = load_model(str(path), "cpu")
    assert loaded.model.config.model_type == request.param
    return loaded


@pytest.mark.parametrize("recipe", ["default", "paper"])
def test_round_trip_in_a_batch_and_from_the_file(lm, recipe, tmp_path):
    crammed = compress(TEXTS, lm, n_vectors=4, recipe=recipe, max_steps=1000)
    for c, text in zip(crammed, TEXTS):
        assert c.exact, (recipe, text, c.accuracy)
        path = c.save(tmp_path / f"{len(text)}.safetensors")
        assert decompress(path, model=lm) == text


def test_a_padded_batch_scores_each_sample_as_alone(lm):
    batch = compress(TEXTS, lm, n_vectors=2, recipe="cold", max_steps=0)
    for sample, text in zip(batch, TEXTS):
        [alone] = compress([text], lm, n_vectors=2, recipe="cold", max_steps=0)
        assert sample.history[0] == pytest.approx(alone.history[0], rel=1e-5)


def test_greedy_decoding_with_the_cache_matches_a_full_forward(lm):
    mem = torch.randn(2, 2, lm.d_model)
    prefix = lm.tokenizer.bos_token_id
    decoded = greedy_decode(lm.model, mem, 6, prefix)
    embeds = lm.model.get_input_embeddings()(decoded)
    logits = text_logits(lm.model, mem, embeds, prefix)  # teacher-forced on the decoded tokens, no cache
    assert torch.equal(logits.argmax(-1), decoded)
