"""The core loop and decoding on a tiny random model: round trip, batching, padding, determinism, schedules."""

import math
from dataclasses import replace

import pytest
import torch

from cramming import CrammingError, Expected, compress, cram, greedy_decode, tokenize, verify
from cramming.core.decode import with_prefix
from cramming.core.loop import starting_vectors, target_lead, text_logits, token_weights
from cramming.core.precision import autocast, autocast_model
from cramming.core.recipes import RECIPES, Recipe

from .conftest import BlowsUp

SHORT = "the cat sat on the mat"
LONGER = "a quick brown fox jumps over the lazy dog"


def run(lm, ids, n_vectors, recipe, steps, prefix=None, seed=0, prior=None, warm_start=None, model=None):
    """cram() from the recipe's start, with its budget set to `steps`, in the model's dtype (float64 trains
    float64 vectors)."""
    start = starting_vectors(recipe, n_vectors, lm.model.get_input_embeddings().weight, seed, len(ids), prior,
                             warm_start).to(lm.model.dtype)
    return cram(model or lm.model, ids, start, replace(recipe, max_steps=steps), prefix_id=prefix)


def init_vectors(recipe, n_vectors, embedding, seed):
    """One sample's random start, without the prior."""
    return starting_vectors(replace(recipe, prior=False), n_vectors, embedding, seed, 1)[0]


def test_round_trip_exact_from_vectors_alone(tiny_lm):
    [c] = compress([SHORT], tiny_lm, n_vectors=2, max_steps=300)
    assert c.exact and c.accuracy == 1.0
    assert 0 < c.steps < 300
    assert c.prefix_id == tiny_lm.tokenizer.bos_token_id  # the default recipe puts BOS before the vectors
    rt = verify(tiny_lm.model, c.vectors, Expected.of(c.token_ids, SHORT), c.prefix_id, tiny_lm.tokenizer)
    assert rt.exact and rt.decoded_text == SHORT and rt.first_mismatch is None
    assert rt.path_margin == pytest.approx(c.path_margin) and rt.path_margin > 0  # the engine's is this decode's
    wrong = verify(tiny_lm.model, c.vectors, Expected.of(c.token_ids, SHORT), None, tiny_lm.tokenizer)
    assert not wrong.exact and wrong.first_mismatch is not None  # the prefix token is part of the decoder's input
    other = verify(tiny_lm.model, c.vectors, Expected.of(c.token_ids, SHORT + "!"), c.prefix_id, tiny_lm.tokenizer)
    assert not other.exact and other.first_mismatch is None  # the same ids, but not the text's bytes


def test_a_file_crammed_in_a_batch_decodes_alone(tiny_lm, tmp_path):
    # exactness is decided one text at a time, as a file is read: every text of a batch that says exact decodes
    # alone, from its file, in float32
    from cramming import decompress

    texts = [SHORT, LONGER, "to be or not to be"]  # exact at about 24, 340 and 21 steps
    crammed = compress(texts, tiny_lm, n_vectors=2, max_steps=1000)
    assert all(c.exact for c in crammed)
    for i, c in enumerate(crammed):
        assert decompress(c.save(tmp_path / f"{i}.safetensors"), model=tiny_lm) == texts[i]


def test_first_token_comes_from_the_last_vector(tiny_lm):
    [c] = compress([SHORT], tiny_lm, n_vectors=2, max_steps=300)
    logits = text_logits(tiny_lm.model, c.vectors[None], torch.zeros(1, 0, tiny_lm.d_model), c.prefix_id)
    assert logits.shape[1] == 0  # no text positions asked for: nothing but the prefix is scored
    x = torch.cat([tiny_lm.model.get_input_embeddings()(torch.tensor([[c.prefix_id]])), c.vectors[None]], 1)
    assert tiny_lm.model(inputs_embeds=x).logits[0, -1].argmax().item() == c.token_ids[0]
    [p] = compress([SHORT], tiny_lm, n_vectors=2, recipe="paper", max_steps=1000)
    assert p.prefix_id is None and p.exact  # the published recipe: the last vector predicts the first token
    assert tiny_lm.model(inputs_embeds=p.vectors[None]).logits[0, -1].argmax().item() == p.token_ids[0]


def test_batch_equals_single_with_padding(tiny_lm64):
    texts = [SHORT, LONGER]  # different lengths: the shorter one is padded in the batch
    ids = [tokenize(tiny_lm64, t)[1] for t in texts]
    assert len(ids[0]) != len(ids[1])
    prefix = tiny_lm64.tokenizer.bos_token_id
    cold = RECIPES["cold"]
    batch = run(tiny_lm64, ids, 2, cold, 300, prefix=prefix)
    for sample, alone in zip(batch, (run(tiny_lm64, [i], 2, cold, 300, prefix=prefix)[0] for i in ids)):
        assert sample.exact == alone.exact
        assert sample.steps == alone.steps
        # Before any step the padded batch scores each sample exactly as alone...
        assert sample.history[0] == pytest.approx(alone.history[0], rel=1e-5)
        # ...after it, batched matmuls round differently and Adam carries that along, by a little.
        assert torch.allclose(sample.vectors, alone.vectors, rtol=0.02, atol=0.02)


def test_same_seed_same_vectors_other_seed_other_vectors(tiny_lm):
    ids = [tokenize(tiny_lm, SHORT)[1]]
    seeded = lambda seed: run(tiny_lm, ids, 2, RECIPES["paper"], 50, seed=seed)[0]  # noqa: E731
    a, b, c = seeded(3), seeded(3), seeded(4)
    assert torch.equal(a.vectors, b.vectors) and a.steps == b.steps
    assert not torch.equal(a.vectors, c.vectors)


def test_weights_stay_frozen_and_get_no_gradient(tiny_lm):
    before = {k: v.clone() for k, v in tiny_lm.model.state_dict().items()}
    run(tiny_lm, [tokenize(tiny_lm, SHORT)[1]], 2, RECIPES["cold"], 20, prefix=tiny_lm.tokenizer.bos_token_id)
    for name, p in tiny_lm.model.named_parameters():
        assert not p.requires_grad and p.grad is None, name
        assert torch.equal(p, before[name]), name


def test_budget_exhausted_keeps_best_vectors(tiny_lm):
    [c] = compress([LONGER], tiny_lm, n_vectors=1, max_steps=3)
    assert not c.exact and c.steps <= 3
    assert c.accuracy < 1.0 and math.isfinite(c.loss)
    logits = text_logits(tiny_lm.model, c.vectors[None], tiny_lm.model.get_input_embeddings()(
        torch.tensor([c.token_ids])), c.prefix_id)
    acc = (logits.argmax(-1)[0] == torch.tensor(c.token_ids)).float().mean().item()
    assert acc == pytest.approx(c.accuracy)


def test_greedy_decode_emits_exactly_n_tokens(tiny_lm):
    mem = torch.randn(3, 2, tiny_lm.d_model)
    out = greedy_decode(tiny_lm.model, mem, 7)
    assert out.shape == (3, 7) and out.dtype == torch.long


def test_a_sample_that_diverges_stops_alone_and_the_batch_goes_on(tiny_lm64):
    ids = [tokenize(tiny_lm64, t)[1] for t in (SHORT, LONGER)]
    prefix = tiny_lm64.tokenizer.bos_token_id
    short, longer = run(tiny_lm64, ids, 2, RECIPES["cold"], 300, prefix=prefix, model=BlowsUp(tiny_lm64.model, after=3))
    assert longer.diverged and not longer.exact and len(longer.history) == 4
    assert not math.isfinite(longer.history[-1][1])
    assert longer.steps <= 2 and math.isfinite(longer.loss) and torch.isfinite(longer.vectors).all()  # its best
    assert short.exact and not short.diverged
    [alone] = run(tiny_lm64, ids[:1], 2, RECIPES["cold"], 300, prefix=prefix)
    assert short.steps == alone.steps  # the other sample went on as it would alone


def test_compress_marks_a_diverged_text(tiny_lm):
    [ok, blown] = compress([SHORT, LONGER], tiny_lm, n_vectors=2, max_steps=300,
                           warm_start=[None, torch.full((2, tiny_lm.d_model), float("nan"))])
    assert ok.status == "exact" and blown.status == "diverged" and blown.summary()["status"] == "diverged"
    assert blown.steps == 0 and not blown.exact


def test_patience_counts_steps_without_a_rise_in_accuracy_as_the_paper_does(tiny_lm):
    # A tiny step: the loss keeps falling while teacher-forced accuracy stays flat. The paper's rule (reset when
    # accuracy improves) gives up after `patience` flat steps; a rule on the loss would run the whole budget.
    ids = [tokenize(tiny_lm, LONGER)[1]]
    slow = Recipe(name="slow", lr=1e-4, weight_decay=0.0, patience=5)
    [r] = run(tiny_lm, ids, 1, slow, 200)
    losses, accs = [h[1] for h in r.history], [h[2] for h in r.history]
    last = len(r.history) - 1
    assert last < 200 and not r.exact
    rise = max(s for s in range(last + 1) if accs[s] > max(accs[:s], default=-1.0))
    assert last - rise == 5  # stopped exactly `patience` steps after the last rise
    assert losses[-1] < min(losses[: rise + 1])  # the loss still improved in those steps


def test_a_stalled_sample_starts_its_next_period_on_its_own(tiny_lm64):
    # A step too small to change any argmax: accuracy never rises, so the stall rule restarts the schedule every
    # `stall` steps after the period's first best, each time at the start of the sample's next period.
    ids = [tokenize(tiny_lm64, LONGER)[1]]
    flat = Recipe(name="flat", lr=1e-7, weight_decay=0.0, schedule="cosine", period=100, period_mult=2.0, stall=3)
    [r] = run(tiny_lm64, ids, 1, flat, 20)
    assert len({h[2] for h in r.history}) == 1 and r.restarts == [3, 7, 11, 15, 19]
    # Each skipped to its next period, of 3200 steps from 3100 by step 19: the next one starts at 3100+3200-3081.
    assert flat.restarts(20, r.restarts) == r.restarts and flat.restarts(4000, r.restarts)[-1] == 3219
    with pytest.raises(CrammingError, match="stall must be >= 1 and needs a cosine schedule with a period"):
        replace(RECIPES["paper"], stall=10)  # a constant step has no next period
    # Restarts are per sample: in a batch beside a sample that learns, each follows its path alone.
    learning = replace(RECIPES["cold"], prefix_token=False, period=30, stall=5)
    ids = [tokenize(tiny_lm64, t)[1] for t in (SHORT, LONGER)]
    batch = run(tiny_lm64, ids, 1, learning, 40)
    assert batch[0].restarts != batch[1].restarts
    for sample, one in zip(batch, ids):
        [alone] = run(tiny_lm64, [one], 1, learning, 40)
        assert sample.restarts == alone.restarts
        assert [h[1] for h in sample.history] == pytest.approx([h[1] for h in alone.history], rel=1e-3)
    [plain] = run(tiny_lm64, ids[1:], 1, replace(learning, stall=None), 40)
    assert batch[1].restarts and plain.restarts == [] and plain.history != batch[1].history


def test_a_sample_that_ends_on_a_step_starts_no_period_there(tiny_lm):
    # Accuracy stays flat: the patience rule ends the sample at step 3, the step the stall rule would fire on too.
    flat = Recipe(name="flat", lr=1e-7, weight_decay=0.0, schedule="cosine", period=100, period_mult=2.0, stall=3,
                  patience=3)
    [r] = run(tiny_lm, [tokenize(tiny_lm, LONGER)[1]], 1, flat, 20)
    assert len(r.history) == 4 and r.restarts == []  # it ended at step 3: no period begins there


def test_the_context_check_counts_the_prefix_token(tiny_lm):
    long = " ".join(["the cat sat on the mat"] * 20)
    text, ids = tokenize(tiny_lm, long, n_vectors=2, max_tokens=62)  # 62 tokens and 2 vectors fill 64 positions
    assert len(ids) == 62 and tiny_lm.max_positions == 64
    with pytest.raises(CrammingError, match="2 vector.s. and the prefix token it can take at most 61 tokens"):
        compress([text], tiny_lm, n_vectors=2, max_steps=1)  # `default` puts BOS before the vectors: 65 positions
    [c] = compress([text], tiny_lm, n_vectors=2, max_steps=1, recipe="paper")  # no prefix token: it fits
    assert len(c.token_ids) == 62


def test_gradient_clipping_is_per_sample(tiny_lm64):
    # Clipped together, one sample's large gradient would shrink the other's steps; alone and in a batch a
    # sample must follow the same path.
    ids = [tokenize(tiny_lm64, t)[1] for t in (SHORT, LONGER)]
    clipped = replace(RECIPES["progressive"], grad_clip=0.01, weight_decay=0.0)
    batch = run(tiny_lm64, ids, 1, clipped, 12)
    for sample, one in zip(batch, ids):
        [alone] = run(tiny_lm64, [one], 1, clipped, 12)
        assert [h[1] for h in sample.history] == pytest.approx([h[1] for h in alone.history], rel=1e-4)


def test_the_options_are_keyword_only(tiny_lm):
    ids = [tokenize(tiny_lm, SHORT)[1]]
    with pytest.raises(TypeError):
        cram(tiny_lm.model, ids, torch.zeros(1, 2, tiny_lm.d_model), RECIPES["paper"], 3)  # noqa
    with pytest.raises(TypeError):
        compress([SHORT], tiny_lm, 2)  # noqa


@pytest.mark.parametrize("field, value", [("lr", 0.0), ("lr", float("nan")), ("final_lr", -1e-3),
                                          ("schedule", "linear"), ("init", "zeros"), ("warmup_steps", -1),
                                          ("period", 0), ("period_mult", 0.5), ("grad_clip", 0.0),
                                          ("max_steps", -1), ("patience", 0), ("restart_decay", 0.0),
                                          ("restart_decay", 1.5), ("stall", 0), ("stall", -3),
                                          ("wrong_weight", 0.0)])
def test_a_bad_recipe_fails_when_it_is_made(field, value):
    with pytest.raises(CrammingError, match=f"recipe 'bad': {field} must be"):
        replace(RECIPES["default"], name="bad", **{field: value})


@pytest.mark.parametrize("bad", [0, -1])
def test_vector_count_must_be_positive(tiny_lm, bad):
    with pytest.raises(CrammingError, match="at least 1"):
        compress([SHORT], tiny_lm, n_vectors=bad)


def test_text_checks(tiny_lm):
    with pytest.raises(CrammingError, match="empty"):
        tokenize(tiny_lm, "")
    with pytest.raises(CrammingError, match="at most 62 tokens"):
        tokenize(tiny_lm, "zq " * 80, n_vectors=2)
    text, ids = tokenize(tiny_lm, LONGER, max_tokens=3)
    assert len(ids) == 3 and LONGER.startswith(text) and text != LONGER


def test_init_depends_on_the_recipe():
    emb = torch.randn(100, 16) * 3.0
    paper = init_vectors(RECIPES["paper"], 4, emb, seed=0)
    assert paper.shape == (4, 16) and 1.0 < paper.std().item() < 6.0
    prog = init_vectors(RECIPES["progressive"], 4, emb, seed=0)
    assert prog.min() >= 0 and prog.max() < 0.02


def test_schedules():
    prog = replace(RECIPES["progressive"], max_steps=1000)
    assert prog.lr_factor(0) == pytest.approx(1 / 100)
    assert prog.lr_factor(99) == pytest.approx(1.0)
    assert prog.lr_factor(1000) == pytest.approx(1e-3 / 0.1)
    assert RECIPES["paper"].lr_factor(777) == 1.0
    cycling = Recipe(name="c", lr=0.2, schedule="cosine", final_lr=0.002, period=100)
    assert cycling.lr_factor(0) == pytest.approx(1.0)
    assert cycling.lr_factor(50) == pytest.approx((1 + 0.01) / 2)  # halfway down the first cycle
    assert cycling.lr_factor(99) < 0.02 and cycling.lr_factor(100) == pytest.approx(1.0)  # restart
    assert cycling.lr_factor(250) == pytest.approx(cycling.lr_factor(50))
    growing = Recipe(name="g", lr=0.2, schedule="cosine", final_lr=0.002, period=100, period_mult=2.0)
    assert growing.lr_factor(99) < 0.02 and growing.lr_factor(100) == pytest.approx(1.0)
    assert growing.lr_factor(200) == pytest.approx(cycling.lr_factor(50))  # halfway through 200
    assert growing.lr_factor(299) < 0.02 and growing.lr_factor(300) == pytest.approx(1.0)
    assert growing.lr_factor(500) == pytest.approx(cycling.lr_factor(50))  # halfway through 400
    assert growing.lr_factor(700) == pytest.approx(1.0)
    gentler = replace(growing, restart_decay=0.5)  # each restart peaks at half the one before
    assert gentler.lr_factor(0) == pytest.approx(1.0) and gentler.lr_factor(99) == pytest.approx(growing.lr_factor(99))
    assert gentler.lr_factor(100) == pytest.approx(0.5) and gentler.lr_factor(300) == pytest.approx(0.25)
    assert gentler.lr_factor(299) == pytest.approx(0.01, abs=1e-3)  # every cycle still ends at final_lr
    assert [growing.next_restart(s) for s in (0, 99, 100, 299, 300)] == [100, 100, 300, 300, 700]


def test_margin_loss_trains_only_the_tokens_not_yet_safely_right(tiny_lm):
    ids = [tokenize(tiny_lm, LONGER)[1]]
    margined = lambda margin: run(tiny_lm, ids, 2, Recipe(name="m", lr=0.05, weight_decay=0.0, loss_margin=margin),  # noqa: E731
                                  20)[0]
    start = init_vectors(Recipe(name="m", lr=0.05), 2, tiny_lm.model.get_input_embeddings().weight, seed=0)
    closed = margined(-math.inf)  # every token already leads by more than -inf: nothing left to train
    assert torch.equal(closed.vectors, start) and closed.history[-1][1] == closed.history[0][1]
    wide = margined(math.inf)
    [plain] = run(tiny_lm, ids, 2, Recipe(name="p", lr=0.05, weight_decay=0.0), 20)
    assert torch.equal(wide.vectors, plain.vectors)  # every token open: plain cross-entropy
    assert not torch.equal(wide.vectors, start)
    [c] = compress([SHORT], tiny_lm, n_vectors=2, recipe=Recipe(name="m", lr=0.05, loss_margin=1.0), max_steps=300)
    assert c.exact


def test_wrong_weight_weighs_the_wrong_tokens_and_nothing_else(tiny_lm):
    ids, prefix = [tokenize(tiny_lm, LONGER)[1]], tiny_lm.tokenizer.bos_token_id
    plain, weighted = (run(tiny_lm, ids, 2, replace(RECIPES["cold"], wrong_weight=w), 300, prefix=prefix)[0]
                       for w in (1.0, 4.0))
    assert weighted.history[0] == plain.history[0]  # the same start, scored the same
    assert weighted.history[1:] != plain.history[1:]  # then another path: the wrong tokens pulled harder
    # the field at its default leaves the loop as it was, bit for bit (the fixed-seed reference checks the rest)
    [again] = run(tiny_lm, ids, 2, replace(RECIPES["cold"], wrong_weight=1.0), 300, prefix=prefix)
    assert again.history == plain.history and torch.equal(again.vectors, plain.vectors)


def test_a_prefix_recipe_needs_a_prefix_token(tiny_lm):
    with pytest.raises(CrammingError, match="prefix token"):
        run(tiny_lm, [tokenize(tiny_lm, SHORT)[1]], 1, RECIPES["cold"], 1)


def test_paper_recipe_is_as_published():
    p = RECIPES["paper"]
    assert (p.lr, p.betas, p.weight_decay, p.init, p.schedule, p.max_steps, p.patience) == (
        1e-2, (0.9, 0.9), 0.01, "embedding_std", "constant", 5000, 2000)


def test_a_prior_recipe_starts_from_the_random_start_plus_the_prior(tiny_lm):
    ids = [tokenize(tiny_lm, SHORT)[1]]
    with pytest.raises(CrammingError, match="prior needs prefix_token"):  # the prior is crammed with one
        Recipe(name="p", lr=0.05, prior=True)
    recipe = Recipe(name="p", lr=0.05, prior=True, prefix_token=True)
    prefix = tiny_lm.tokenizer.bos_token_id
    with pytest.raises(CrammingError, match="prior"):
        run(tiny_lm, ids, 2, recipe, 1, prefix=prefix)
    with pytest.raises(CrammingError, match="shape"):
        run(tiny_lm, ids, 2, recipe, 1, prefix=prefix, prior=torch.zeros(1, 128))
    prior = torch.randn(2, 128)
    [r] = run(tiny_lm, ids, 2, recipe, 0, prefix=prefix, prior=prior)
    start = init_vectors(recipe, 2, tiny_lm.model.get_input_embeddings().weight, seed=0)
    assert torch.allclose(r.vectors, start + prior)


def test_bf16_twin_runs_autocasts_body_bit_for_bit_and_projects_in_float32_on_a_cpu(tiny_lm):
    # The twin holds the body's Linear weights in bf16 once (autocast casts them on every call): the same numbers.
    # On a CPU it projects onto the vocabulary in float32 and attends eagerly, each cheaper there (step_cost.py).
    model, cpu = tiny_lm.model, torch.device("cpu")
    twin = autocast_model(model, cpu, True)
    assert autocast_model(model, cpu, False) is model and autocast_model(model, cpu, True) is twin  # built once
    assert twin.model.layers[0].mlp.down_proj.weight.dtype == torch.bfloat16
    assert twin.lm_head.head.weight is model.lm_head.weight and model.lm_head.weight.dtype == torch.float32
    assert twin.get_input_embeddings().weight is model.get_input_embeddings().weight  # shared, float32
    assert twin.config._attn_implementation == "eager" and model.config._attn_implementation == "sdpa"
    ids = torch.tensor([tokenize(tiny_lm, LONGER)[1]])
    embeds = model.get_input_embeddings()(ids)
    T = ids.shape[1]

    def reference(vectors: torch.Tensor) -> torch.Tensor:
        """autocast on the model itself, attending eagerly, then the float32 projection."""
        model.set_attn_implementation("eager")
        try:
            with autocast(cpu, True):
                x = torch.cat([with_prefix(model, vectors, 0).to(embeds.dtype), embeds], dim=1)
                hidden = model.model(inputs_embeds=x, use_cache=False).last_hidden_state[:, -T - 1:-1]
            with torch.autocast("cpu", enabled=False):
                return model.lm_head(hidden.float())
        finally:
            model.set_attn_implementation("sdpa")

    outputs = []
    for run_it in (reference, lambda v: text_logits(twin, v, embeds, prefix_id=0)):
        vectors = torch.randn(1, 2, embeds.shape[-1], generator=torch.Generator().manual_seed(0)).requires_grad_()
        with autocast(cpu, True):
            logits = run_it(vectors)
        logits.float().logsumexp(-1).sum().backward()
        outputs.append((logits.detach(), vectors.grad))
    assert outputs[1][0].dtype == torch.float32
    assert torch.equal(outputs[0][0], outputs[1][0]) and torch.equal(outputs[0][1], outputs[1][1])


def test_bf16_precision_crams_in_bf16_and_verifies_in_float32(tiny_lm):
    twin = autocast_model(tiny_lm.model, torch.device("cpu"), True)
    seen = []
    hooks = [module.model.layers[0].mlp.down_proj.register_forward_hook(
        lambda _, args, out, module=module: seen.append((module, out.dtype))) for module in (tiny_lm.model, twin)]
    try:
        [c] = compress([SHORT], tiny_lm, n_vectors=2, max_steps=300,
                       recipe=RECIPES["default"].override({"precision": "bf16"}))
    finally:
        for hook in hooks:
            hook.remove()
    # training steps in bf16 on the twin, the greedy check in float32 on the model itself
    assert (twin, torch.bfloat16) in seen and (tiny_lm.model, torch.float32) in seen
    assert c.exact and c.vectors.dtype == torch.float32
    assert verify(tiny_lm.model, c.vectors, Expected.of(c.token_ids, SHORT), c.prefix_id, tiny_lm.tokenizer).exact


def test_target_lead_is_the_targets_margin_over_every_other_token():
    logits = torch.randn(3, 5, 50, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    targets = torch.randint(0, 50, (3, 5), generator=torch.Generator().manual_seed(1))
    targets[0] = logits[0].argmax(-1)  # right: the lead is the gap to the runner-up
    logits[1, 0, 7] = logits[1, 0].max()
    targets[1, 0] = 7
    logits[1, 0, 8] = logits[1, 0, 7]  # a tie with the target: no lead
    slow = logits.gather(-1, targets[..., None])[..., 0] - logits.scatter(-1, targets[..., None], -math.inf).amax(-1)
    lead = target_lead(logits, targets)
    assert lead.dtype == torch.float32 and torch.equal(lead, slow.float())
    assert (lead[0] > 0).all() and lead[1, 0] == 0 and (lead[2] < 0).any()


def test_token_weights_keep_a_token_float32_decodes_wrong_in_the_loss():
    lead = torch.tensor([[3.0, 2.5, -1.0, 0.5, math.inf]])  # the last position is padding
    ok = torch.tensor([[True, True, True, True, False]])
    recipe = Recipe(name="w", lr=0.1, loss_margin=2.0, wrong_weight=4.0)
    none = torch.zeros_like(ok)
    assert token_weights(lead, ok, none, recipe).tolist() == [[0.0, 0.0, 4.0, 1.0, 0.0]]
    forced = none.clone()
    forced[0, 1] = True  # safely right by bf16's lead, wrong in float32's decode
    assert token_weights(lead, ok, forced, recipe).tolist() == [[0.0, 4.0, 4.0, 1.0, 0.0]]
    plain = Recipe(name="p", lr=0.1)  # no margin: every real token trains, wrong_weight 1
    assert token_weights(lead, ok, forced, plain).tolist() == [[1.0, 1.0, 1.0, 1.0, 0.0]]


def test_a_failed_verification_puts_its_first_wrong_token_into_the_loss(tiny_lm, monkeypatch):
    # the bf16 plateau: the argmax is right everywhere, the float32 check fails; the sample must not sit on a
    # zero loss. Stand in a check that fails once at token 2, and see token 2 forced from the next step on.
    import cramming.core.loop as engine

    real_verify, real_weights, seen = engine.verify, engine.token_weights, []
    calls = {"n": 0}

    def failing_once(model, vectors, expected, prefix_id=None, *args, **kwargs):
        calls["n"] += 1
        check = real_verify(model, vectors, expected, prefix_id, *args, **kwargs)
        return replace(check, exact=False, first_mismatch=2) if calls["n"] == 1 else check

    def spy(lead, ok, forced, recipe):
        seen.append(forced[0].nonzero().flatten().tolist())
        return real_weights(lead, ok, forced, recipe)

    monkeypatch.setattr(engine, "verify", failing_once)
    monkeypatch.setattr(engine, "token_weights", spy)
    [c] = compress([SHORT], tiny_lm, n_vectors=2, recipe=RECIPES["cold"], max_steps=300)
    assert c.exact and calls["n"] >= 2
    first_check = next(i for i, f in enumerate(seen) if f) - 1  # the step whose check failed
    assert all(f == [] for f in seen[: first_check + 1]) and all(f == [2] for f in seen[first_check + 1:])


def test_one_step_decoding_crams_and_reads_back_in_one_forward_pass(tiny_lm, tmp_path):
    # the one-step layout: [prefix ; text vector ; T copies of the last vector], each copy's position predicting
    # its own token; the file records the decoder, and decompress reads it back in one pass
    from cramming import decompress
    from cramming.core.decode import one_step_decode

    recipe = RECIPES["cold"].override({"decoder": "one-step"})
    [c] = compress([SHORT], tiny_lm, n_vectors=2, recipe=recipe, max_steps=600)
    assert c.exact and c.recipe.decoder == "one-step"
    calls = []
    hook = tiny_lm.model.register_forward_hook(lambda *args: calls.append(1))
    try:
        ids = one_step_decode(tiny_lm.model, c.vectors[None], len(c.token_ids), c.prefix_id)
    finally:
        hook.remove()
    assert ids[0].tolist() == c.token_ids and len(calls) == 1  # every token from one forward pass
    assert greedy_decode(tiny_lm.model, c.vectors[None], len(c.token_ids), c.prefix_id)[0].tolist() != c.token_ids
    assert decompress(c.save(tmp_path / "v.safetensors"), model=tiny_lm) == SHORT
    with pytest.raises(CrammingError, match="one-step decoding needs at least 2 vectors"):
        compress([SHORT], tiny_lm, n_vectors=1, recipe=recipe, max_steps=10)


def test_one_step_with_the_model_s_shared_copy_stores_only_the_text_s_vectors(tiny_lm, tmp_path):
    # The copied vector is the model's, trained once on other passages and frozen: a file holds the text's own
    # vector alone, names the copy's build, and reads back with that copy only.
    from cramming import decompress
    from cramming.core.decode import one_step_decode, with_copy
    from cramming.files.vector_file import load_vectors
    from cramming.model.copy_vector import copy_hash, copy_path, shared_copy

    recipe = RECIPES["cold"].override({"decoder": "one-step", "shared_copy": True})
    [c] = compress([SHORT], tiny_lm, n_vectors=1, recipe=recipe, max_steps=600)
    assert c.exact and c.vectors.shape == (1, tiny_lm.d_model) and copy_path(tiny_lm).exists()  # built, cached
    vectors, meta = load_vectors(c.save(tmp_path / "v.safetensors"))
    assert vectors.shape[0] == 1 and meta["shared_copy"] == copy_hash(c.reading.copy)  # m itself, not how it was built
    assert decompress(tmp_path / "v.safetensors", model=tiny_lm) == SHORT
    m = shared_copy(tiny_lm, c.prefix_id)
    assert torch.equal(c.reading.copy, m)  # read from the cache: the copy it was crammed with
    T = len(c.token_ids)
    assert one_step_decode(tiny_lm.model, with_copy(c.vectors, m)[None], T, c.prefix_id)[0].tolist() == c.token_ids
    other = with_copy(c.vectors, torch.zeros_like(m))[None]
    assert one_step_decode(tiny_lm.model, other, T, c.prefix_id)[0].tolist() != c.token_ids
    with pytest.raises(CrammingError, match="cannot be read back with another one"):
        shared_copy(tiny_lm, c.prefix_id, expected="0" * 16)
    with pytest.raises(CrammingError, match="shared_copy needs decoder one-step"):
        RECIPES["cold"].override({"shared_copy": True})
