"""Recipes from configuration: checked overrides from Python, the command line and a spec."""

import json
from dataclasses import replace

import pytest

from cramming import CrammingError
from cramming.recipes import DESCRIPTIONS, RECIPES, Recipe, changed_since, describe, get_recipe, parse_setting
from cramming.runner import Spec, run_local
from cramming.store import Store


def test_an_override_is_checked_and_labelled():
    fast = RECIPES["default"].override({"lr": 0.1, "period": 800, "betas": [0.9, 0.99]})
    assert (fast.lr, fast.period, fast.betas) == (0.1, 800, (0.9, 0.99))
    assert fast.name == "default+lr=0.1+period=800+betas=[0.9, 0.99]"  # the label says what changed
    assert fast.digest() != RECIPES["default"].digest()
    assert RECIPES["default"].override({}, name="default").digest() == RECIPES["default"].digest()
    assert RECIPES["cold"].override({"margin": None}).margin is None and RECIPES["cold"].override({"lr": 1}).lr == 1.0


@pytest.mark.parametrize("changes, message", [
    ({"lrr": 0.1}, "no field 'lrr'"), ({"lr": "fast"}, "lr takes float"), ({"period": 1.5}, "period takes int or null"),
    ({"betas": [0.9]}, "betas takes a list of 2 numbers"), ({"init": "zeros"}, "init takes 'embedding_std' or"),
    ({"prior": 1}, "prior takes bool"), ({"lr": -1.0}, "lr must be > 0"), ({"name": "x"}, "name is its label"),
])
def test_a_bad_override_is_one_line_naming_the_field(changes, message):
    with pytest.raises(CrammingError, match=message):
        RECIPES["default"].override(changes)


def test_from_dict_round_trips_and_parse_setting_reads_json():
    for recipe in RECIPES.values():
        assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
    assert parse_setting("lr=0.1") == ("lr", 0.1) and parse_setting("schedule=cosine") == ("schedule", "cosine")
    assert parse_setting("period=null") == ("period", None) and parse_setting("betas=[0.9,0.99]")[1] == [0.9, 0.99]
    with pytest.raises(CrammingError, match="FIELD=VALUE"):
        parse_setting("lr")
    assert get_recipe("cold", ["lr=0.1"]) == RECIPES["cold"].override({"lr": 0.1})


def test_set_on_the_command_line(run_cli, tiny_dir, tmp_path):
    vec = tmp_path / "v.safetensors"
    code, out, err = run_cli("compress", "the cat sat on the mat", "--model", str(tiny_dir), "--vectors", "2",
                             "--recipe", "cold", "--set", "lr=0.2", "--set", "period=50", "--max-steps", "300",
                             "-o", str(vec), "--json", "--quiet")
    assert code == (0 if json.loads(out)["exact"] else 1), err
    recipe = json.loads(run_cli("info", str(vec), "--json")[1])["recipe"]
    assert (recipe["lr"], recipe["period"], recipe["name"]) == (0.2, 50, "cold+lr=0.2+period=50")
    code, _, err = run_cli("compress", "the cat", "--model", str(tiny_dir), "--set", "period=soon")
    assert code == 2 and err.strip() == "error: recipe 'default': period takes int or null, got 'soon'"


def test_a_spec_table_defines_a_variant_and_keys_its_rows(spec_file, tmp_path):
    path = spec_file(samples=1, lengths=(4,))
    text = path.read_text().replace('recipes = ["default"]\n', "")
    path.write_text(text + '\n[recipes.fast]\nbase = "cold"\nlr = 0.2\n\n[recipes.cold]\n')
    spec = Spec.from_toml(path)
    assert spec.recipe("fast") == replace(RECIPES["cold"].override({"lr": 0.2}, name="fast"), max_steps=300)
    assert spec.recipe("cold") == replace(RECIPES["cold"], max_steps=300)
    store = Store(tmp_path / "r.sqlite")
    assert run_local(spec, store, device="cpu") == 2
    rows = {r["recipe"]: r for r in store.rows()}
    assert rows["fast"]["recipe_digest"] == spec.recipe("fast").digest() != rows["cold"]["recipe_digest"]
    assert store.settings(rows["fast"])["lr"] == 0.2
    # the same settings under another name are the same run: nothing new to do
    path.write_text(text + '\n[recipes.quick]\nbase = "cold"\nlr = 0.2\n')
    assert run_local(Spec.from_toml(path), store, device="cpu") == 0
    path.write_text(text + '\n[recipes.fast]\nbase = "cold"\nlr = "high"\n')
    with pytest.raises(CrammingError, match="lr takes float"):
        Spec.from_toml(path)


def test_precision_is_a_setting_that_keeps_old_keys():
    # 0961b0ecc6f1893f keys the rows of the default of the time (1500 steps; wrong_weight 1) in
    # results/capacity.sqlite, stored before the precision field existed: a field added later enters the digest
    # only when it differs from its default.
    assert replace(RECIPES["default"], max_steps=1500, wrong_weight=1.0).digest() == "0961b0ecc6f1893f"
    assert RECIPES["default"].override({"restart_decay": 0.5}).digest() != RECIPES["default"].digest()
    bf16 = RECIPES["default"].override({"precision": "bf16"})
    assert bf16.digest() != RECIPES["default"].digest() and (bf16.bf16, RECIPES["default"].bf16) == (True, None)
    assert RECIPES["default"].override({"precision": "fp32"}).bf16 is False
    with pytest.raises(CrammingError, match="precision takes 'auto' or 'fp32' or 'bf16'"):
        RECIPES["default"].override({"precision": "fp16"})


def test_a_named_recipe_run_before_a_change_is_described_as_it_ran():
    old = RECIPES["default"].to_dict()
    del old["wrong_weight"]  # stored before the field existed: it ran with the field's default
    assert changed_since(old) == {"wrong_weight": 1.0}
    assert describe(old) == "default with wrong_weight 1.0"
    today = dict(RECIPES["default"].to_dict(), max_steps=1000)  # another budget is not a change
    assert changed_since(today) == {} and describe(today) == DESCRIPTIONS["default"]
    assert changed_since(dict(today, name="mine")) == {} and describe(dict(today, name="mine")) == "default's settings"
    bf16 = dict(today, name="default, bf16", precision="bf16")
    assert describe(bf16) == "default with precision bf16"
