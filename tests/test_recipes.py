"""Recipes from configuration: checked overrides from Python, the command line and a spec."""

import json
from dataclasses import replace

import pytest

from cramming import CrammingError
from cramming.core.recipes import DESCRIPTIONS, RECIPES, REGISTRY, Recipe, get_recipe, parse_setting, stored
from cramming.experiments.runner import Spec, run_local
from cramming.files.database import Store


def test_an_override_is_checked_and_labelled():
    fast = RECIPES["default"].override({"lr": 0.1, "period": 800, "betas": [0.9, 0.99]})
    assert (fast.lr, fast.period, fast.betas) == (0.1, 800, (0.9, 0.99))
    default = RECIPES["default"].name  # its latest version, default@N
    assert fast.name == f"{default}+lr=0.1+period=800+betas=[0.9, 0.99]"  # the label says what changed
    assert fast.base == default and fast.overrides() == {"lr": 0.1, "period": 800, "betas": (0.9, 0.99)}
    assert fast.label() == f"{default} with lr 0.1, betas (0.9, 0.99), period 800"  # in field order
    assert fast.digest() != RECIPES["default"].digest()
    assert RECIPES["default"].override({}, name="default").digest() == RECIPES["default"].digest()
    assert RECIPES["cold"].override({"loss_margin": None}).loss_margin is None
    assert RECIPES["cold"].override({"lr": 1}).lr == 1.0


@pytest.mark.parametrize("changes, message", [
    ({"lrr": 0.1}, "no field 'lrr'"), ({"lr": "fast"}, "lr takes float"), ({"period": 1.5}, "period takes int or null"),
    ({"betas": [0.9]}, "betas takes a list of 2 numbers"), ({"init": "zeros"}, "init takes 'embedding_std' or"),
    ({"prior": 1}, "prior takes bool"), ({"lr": -1.0}, "lr must be > 0"),
    ({"name": "x"}, "name and base are its labels"),
    ({"base": "default@1"}, "name and base are its labels"),
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
    assert (recipe["lr"], recipe["period"], recipe["name"]) == (0.2, 50, f"{RECIPES['cold'].name}+lr=0.2+period=50")
    assert recipe["base"] == RECIPES["cold"].name
    code, _, err = run_cli("compress", "the cat", "--model", str(tiny_dir), "--set", "period=soon")
    default = RECIPES["default"].name
    assert code == 2 and err.strip() == f"error: recipe '{default}': period takes int or null, got 'soon'"


def test_a_spec_table_defines_a_variant_and_keys_its_rows(spec_file, tmp_path):
    path = spec_file(samples=1, lengths=(4,))
    text = path.read_text().replace('recipes = ["default"]\n', "")
    path.write_text(text + '\n[recipes.fast]\nbase = "cold"\nlr = 0.2\n\n[recipes.cold]\n')
    spec = Spec.from_toml(path)
    assert spec.recipe("fast") == replace(RECIPES["cold"].override({"lr": 0.2}, name="fast"), max_steps=300)
    assert spec.recipe("cold") == replace(RECIPES["cold"], name="cold", max_steps=300)
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


def test_the_registry_keeps_every_version_as_it_ran():
    # A named recipe never changes meaning: each version's settings are fixed (their digests here), a name means
    # its latest version, and adding a version is the only way to change what a name runs.
    assert {key: entry.digest() for key, entry in REGISTRY.items()} == {
        "paper@1": "9040f42d113ec4a4", "progressive@1": "5e98a994cef26057", "default@1": "21e98abda4ad4ef0",
        "default@2": "71d7f05e7f3affaa", "default@3": "f4f40ecebcd9c4c1", "default@4": "a51e77f356615ec1",
        "cold@1": "a51e77f356615ec1", "default@5": "a58a5bbfb1dbc8d7", "default@6": "3a4bf844203b963d",
        "default@7": "5805a55945b188c6"}
    assert all(entry.name == entry.base == key and key in DESCRIPTIONS for key, entry in REGISTRY.items())
    assert RECIPES["default"] is REGISTRY["default@7"] and get_recipe("default@6") is REGISTRY["default@6"]
    with pytest.raises(CrammingError, match="unknown recipe 'default@99'"):
        get_recipe("default@99")


def test_a_row_stored_before_versions_reads_as_the_version_it_ran():
    old = RECIPES["default"].to_dict()
    for label in ("base", "required_margin", "storage", "wrong_weight"):  # stored before these fields existed
        del old[label]
    old["name"] = "default"
    old["margin"] = old.pop("loss_margin")  # the loss margin's first name, as rows before the rename hold it
    assert stored(old).loss_margin == 2.0 and stored(old).digest() == REGISTRY["default@6"].digest()
    assert stored(old).base == "default@6" and stored(old).label() == "default@6"  # wrong_weight 1 then
    today = dict(RECIPES["default"].to_dict(), name="default", max_steps=1000)  # another budget is not a change
    del today["base"]
    assert stored(today).label() == "default@7" and stored(dict(today, name="mine")).label() == "default@7"
    bf16 = dict(today, name="default, bf16", precision="bf16")
    assert stored(bf16).label() == "default@7 with precision bf16"
    assert stored(bf16).describe() == f"{stored(bf16).label()} ({DESCRIPTIONS['default@7']})"
    assert stored(RECIPES["cold"].override({"lr": 0.1}).to_dict()).label() == "cold@1 with lr 0.1"  # a base: kept


def test_margin_storage_and_resolved_precision_are_part_of_the_recipe_as_run():
    default = RECIPES["default"]
    assert default.resolved("cpu").precision == "fp32" and default.resolved("cuda").precision == "bf16"
    assert default.resolved("cpu").digest() == default.digest()  # fp32 hashes as the "auto" of rows on CPUs
    assert default.resolved("cuda").digest() == default.override({"precision": "bf16"}).digest()
    assert default.override({"required_margin": 1.0}).digest() != default.digest()
    assert default.override({"storage": "8"}).storage == "int8" != default.storage
    assert default.override({"storage": "int8"}).digest() != default.digest()
    with pytest.raises(CrammingError, match="unknown storage form"):
        default.override({"storage": "int1"})


def test_two_margins_batch_sizes_or_precisions_never_share_a_row(spec_file, tmp_path):
    path = spec_file(samples=2, lengths=(4,))
    text = path.read_text().replace('recipes = ["default"]\n', "")
    store = Store(tmp_path / "r.sqlite")
    runs = [("[recipes.default]\n", 1), ("[recipes.default]\n", 2), ("[recipes.default]\nrequired_margin = 0.5\n", 1),
            ('[recipes.default]\nprecision = "bf16"\n', 1), ("[recipes.default]\nprecision = \"fp32\"\n", 1)]
    added = []
    for table, batch in runs:
        path.write_text(text + table)
        added.append(run_local(Spec.from_toml(path), store, device="cpu", batch_size=batch))
    assert added == [2, 2, 2, 2, 0]  # fp32 is what auto resolves to on a CPU: the same run as the first
    rows = store.rows()
    assert {(r["batch_size"], r["settings"]["required_margin"], r["settings"]["precision"]) for r in rows} == {
        (1, 0.0, "fp32"), (2, 0.0, "fp32"), (1, 0.5, "fp32"), (1, 0.0, "bf16")}
    assert all(r["conditions"]["device"] == "cpu" and r["conditions"]["decoding_precision"] == "fp32"
               and r["conditions"]["batch_size"] <= r["batch_size"] for r in rows)
    assert all(store.metadata(r)["recipe"]["precision"] == r["settings"]["precision"] != "auto" for r in rows)
    assert {r["settings"]["precision"]: r["conditions"]["compute"] for r in rows} == {
        "fp32": "fp32", "bf16": "bf16 body, eager attention, fp32 vocabulary projection"}  # how bf16 ran here


def test_restarts_are_the_schedule_s_period_starts_before_the_budget():
    default = RECIPES["default"]  # periods of 1000, 2000, 4000, ...
    assert default.restarts(5000) == [1000, 3000] and default.restarts(1000) == [] and default.restarts(1001) == [1000]
    assert RECIPES["cold"].restarts(5000) == [600, 1800, 4200] and RECIPES["paper"].restarts(5000) == []
    # An early restart (the stall rule's) starts the next period then and moves the rest of the schedule with it.
    assert RECIPES["cold"].restarts(5000, early=[300]) == [300, 1500, 3900]  # periods of 1200 and 2400 follow
    assert RECIPES["cold"].restarts(5000, early=[300, 400]) == [300, 400, 2800]  # the 1200-step period skipped
    warm = RECIPES["cold"].override({"warmup_steps": 100})
    assert warm.restarts(2000) == [700, 1900] and all(warm.lr_factor(s) == pytest.approx(1.0) for s in (700, 1900))
