"""Cramming K coefficients in the model's shared basis (recipe field `rank`): the basis, its build, its files."""

import pytest
import torch

from cramming import CrammingError, compress
from cramming.core.basis import Basis
from cramming.core.recipes import RECIPES

SHORT = "the cat sat on the mat"


@pytest.fixture
def small_build(monkeypatch):
    """The tiny model's basis from a small build (8 passages of 8 tokens): its solutions span at most 7 directions,
    the rest of the 128 are the seeded completion."""
    from cramming.model import basis

    monkeypatch.setattr(basis, "PASSAGES", 8)
    monkeypatch.setattr(basis, "TOKENS", 8)
    return basis


def test_expand_and_project_are_each_other_s_inverse_in_the_span():
    g = torch.Generator().manual_seed(0)
    components = torch.linalg.qr(torch.randn(12, 5, generator=g, dtype=torch.float64))[0].T.float()
    basis = Basis(torch.randn(2, 6, generator=g), components, "x")
    z = torch.randn(3, 1, 5, generator=g)
    vectors = basis.expand(z)
    assert vectors.shape == (3, 2, 6) and vectors.dtype == torch.float32
    assert torch.allclose(basis.project(vectors), z, atol=1e-5)
    assert torch.allclose(basis.project(basis.mean), torch.zeros(1, 5), atol=1e-6)  # the mean: z = 0
    away = torch.randn(12, generator=g, dtype=torch.float64)
    away -= components.double().T @ (components.double() @ away)  # a direction outside the span
    outside = vectors[0] + away.float().view(2, 6)
    assert torch.allclose(basis.expand(basis.project(outside)), vectors[0], atol=1e-5)  # the nearest point in it
    assert basis.cut(3).rank == 3 and torch.equal(basis.cut(3).components, components[:3])


def test_a_text_crammed_in_the_basis_is_stored_as_k_numbers_and_read_back(tiny_lm, tmp_path, small_build, run_cli):
    from cramming import decompress, info
    from cramming.experiments.certify import certify
    from cramming.files.vector_file import load_vectors

    recipe = RECIPES["default"].override({"rank": 64})
    [c] = compress([SHORT], tiny_lm, n_vectors=1, recipe=recipe, max_steps=600)
    assert c.exact and c.vectors.shape == (1, 64)  # what is trained and stored: z
    built = small_build.found_basis(tiny_lm.name, tiny_lm.fingerprint, 1)  # built and cached on first use
    assert built.components.shape == (128, 128) and built.mean.shape == (1, 128)
    assert torch.allclose(built.components.double() @ built.components.double().T, torch.eye(128, dtype=torch.float64),
                          atol=1e-5)  # orthonormal, the completion included
    path = c.save(tmp_path / "z.safetensors")
    stored, meta = load_vectors(path)
    assert torch.equal(stored, c.vectors) and meta["rank"] == 64 and meta["basis"] == built.digest
    assert (meta["n_vectors"], meta["d_model"]) == (1, 128)
    about = info(path)
    assert about["shape"] == [1, 128] and about["payload_bytes"] == 64 * 4  # K float32 numbers, not 128
    assert decompress(path, model=tiny_lm) == SHORT
    cert = certify(path, model=tiny_lm, copies=4)
    assert cert.exact["stored"] and cert.rank == 64 and cert.payload_bytes["fp16"] == 64 * 2
    code, out, _ = run_cli("decompress", str(path), "--model", str(tiny_lm.name))
    assert code == 0 and out.decode().strip() == SHORT
    with pytest.raises(CrammingError, match="cannot be read in another one"):
        small_build.model_basis(tiny_lm, 1, c.prefix_id, 64, expected="0" * 16)


def test_a_rank_the_basis_does_not_have_is_refused(tiny_lm, small_build, run_cli):
    with pytest.raises(CrammingError, match="rank must be between 1 and 128"):
        compress([SHORT], tiny_lm, recipe=RECIPES["default"].override({"rank": 129}), max_steps=5)
    with pytest.raises(CrammingError, match="rank must be >= 1"):
        RECIPES["default"].override({"rank": 0})
    code, _, err = run_cli("compress", SHORT, "--model", str(tiny_lm.name), "--rank", "0")
    assert code != 0 and "rank must be >= 1" in err and "Traceback" not in err


def test_warm_starts_in_a_basis_are_its_coefficients(tiny_lm, small_build):
    from cramming import api

    recipe = RECIPES["default"].override({"rank": 16})
    basis = small_build.model_basis(tiny_lm, 1, api.prefix_token(tiny_lm.tokenizer, recipe), 16)
    z = torch.randn(1, 16)
    start = api.starts(tiny_lm, recipe, [[1, 2], [3]], 1, warm_start=[z, None], basis=basis)
    assert start.shape == (2, 1, 16) and torch.equal(start[0], z)
    plain = api.starts(tiny_lm, recipe, [[3]], 1)  # the recipe's own start, projected
    assert torch.allclose(start[1], basis.project(plain)[0], atol=1e-6)
    with pytest.raises(CrammingError, match="must have shape"):
        api.starts(tiny_lm, recipe, [[1]], 1, warm_start=[torch.zeros(1, 128)], basis=basis)


def test_the_shipped_basis_was_built_by_todays_builder(monkeypatch):
    # A changed build (its recipe, passages, budget) needs a new VERSION and a rebuilt basis: the file records them,
    # and its name holds the digest of today's constants.
    import json

    from safetensors import safe_open

    from cramming.model import basis

    monkeypatch.delenv("CRAMMING_PRIOR_SOURCE")  # the shipped one is built from book text (conftest: a file)
    [shipped] = sorted(basis.SHIPPED.glob("*.safetensors"))  # the default model's, for one vector
    digest = basis.basis_path("m", "0" * 16, 1).name.rsplit("-", 1)[1]
    assert shipped.name.endswith(f"-1v-{digest}")
    with safe_open(str(shipped), "pt") as f:
        meta = f.metadata()
        assert f.get_tensor("components").shape == (576, 576) and f.get_tensor("mean").shape == (1, 576)
    assert json.loads(meta["recipe"]) == json.loads(json.dumps(basis.builder().to_dict()))
    assert (meta["source"], meta["passages"], meta["tokens"], meta["text_seed"], meta["version"]) == tuple(
        map(str, ("books", basis.PASSAGES, basis.TOKENS, basis.TEXT_SEED, basis.VERSION)))
