"""The `cram` command on the tiny model, as a user runs it: files on disk, exit codes, one-line errors."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import save_file

from cramming import RECIPES, CrammingError, Recipe, api, load_model
from cramming.core.threads import free_cores, use_threads
from cramming.files.vector_file import load_vectors

from .conftest import build_tiny_model

TEXT = "the cat sat on the mat"


def compress(run_cli, tiny_dir, *args):
    return run_cli("compress", "--model", str(tiny_dir), "--vectors", "2", "--max-steps", "300", *args)


def assert_one_line_error(code, err, pattern):
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and pattern in lines[0], err


def no_leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


def test_compress_decompress_round_trip(run_cli, tiny_dir, tmp_path):
    vec = tmp_path / "cat.safetensors"
    code, out, err = compress(run_cli, tiny_dir, TEXT, "-o", str(vec), "--json")
    assert code == 0, err
    row = json.loads(out)
    assert row["exact"] is True and row["tokens"] > 3 and row["steps"] > 0 and row["accuracy"] == 1.0
    assert row["path"] == str(vec) and row["seconds"] >= 0
    code, out, err = run_cli("decompress", str(vec), "--model", str(tiny_dir))
    assert code == 0, err
    assert out == TEXT.encode()  # exactly the text, no newline added
    target = tmp_path / "back.txt"
    assert run_cli("decompress", str(vec), "-o", str(target))[0] == 0  # model taken from the file
    assert target.read_bytes() == TEXT.encode()


def test_metadata(run_cli, tiny_dir, tiny_lm, tmp_path):
    vec = tmp_path / "v.safetensors"
    assert compress(run_cli, tiny_dir, TEXT, "-o", str(vec), "--seed", "5")[0] == 0
    code, out, _ = run_cli("info", str(vec), "--json")
    meta = json.loads(out)
    assert code == 0
    assert meta["model"] == str(tiny_dir) and meta["model_fingerprint"] == tiny_lm.fingerprint
    assert meta["tokenizer_fingerprint"] == tiny_lm.tokenizer_fingerprint
    assert meta["n_vectors"] == 2 and meta["shape"] == [2, tiny_lm.d_model] and meta["seed"] == 5
    assert meta["recipe"]["name"] == meta["recipe"]["base"] == RECIPES["default"].name and meta["exact"] is True
    assert meta["prefix_token_id"] == tiny_lm.tokenizer.bos_token_id
    assert len(meta["text_sha256"]) == 64 and len(meta["tokens_sha256"]) == 64 and meta["cramming_version"]
    # the recipe as run: its version, the precision resolved (never "auto"), the margin and storage form; and what
    # else decided the outcome: the decoding's precision, the batch, the device
    assert meta["recipe"]["precision"] == "fp32" and meta["recipe"]["required_margin"] == 0.0
    assert meta["recipe"]["storage"] == "fp32" and meta["run_conditions"] == {
        "device": "cpu", "batch_size": 1, "decoding_precision": "fp32", "compute": "fp32"}


def test_several_files_are_one_batch_one_vector_file_each(run_cli, tiny_dir, tmp_path):
    texts = {"a.txt": "to be or not to be", "b.txt": "all that glitters is not gold"}
    for name, text in texts.items():
        (tmp_path / name).write_text(text)
    out_dir = tmp_path / "vecs"
    # b.txt needs the second cosine period on the tiny model (exact at step 1158)
    code, out, err = run_cli("compress", "--model", str(tiny_dir), "--vectors", "2", "--max-steps", "2000",
                             "-f", str(tmp_path / "a.txt"), "-f", str(tmp_path / "b.txt"), "-o", str(out_dir), "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["exact"] for r in rows] == [True, True]
    for name, text in texts.items():
        assert run_cli("decompress", str(out_dir / f"{name}.cram.safetensors"))[1] == text.encode()


def test_tokens_keeps_the_first_tokens(run_cli, tiny_dir, tmp_path):
    vec = tmp_path / "t.safetensors"
    code, out, _ = compress(run_cli, tiny_dir, "a quick brown fox jumps over the lazy dog", "-o", str(vec),
                            "--tokens", "4", "--json")
    assert code == 0 and json.loads(out)["tokens"] == 4
    text = run_cli("decompress", str(vec))[1].decode()
    assert "a quick brown fox jumps over the lazy dog".startswith(text) and len(text) < 20


def test_budget_out_exits_1_and_saves_best(run_cli, tiny_dir, tmp_path):
    vec = tmp_path / "b.safetensors"
    code, out, err = run_cli("compress", "--model", str(tiny_dir), "--vectors", "1", "--max-steps", "2",
                             "a quick brown fox jumps over the lazy dog", "-o", str(vec), "--json")
    assert code == 1
    row = json.loads(out)
    assert row["exact"] is False and row["accuracy"] < 1.0 and vec.exists()
    assert "not exact" in err
    code, out, _ = run_cli("info", str(vec), "--json")
    meta = json.loads(out)
    assert code == 0 and meta["recipe"]["max_steps"] == 2  # the budget it ran with, not the recipe's
    assert meta["exact"] is False and 0 <= meta["first_mismatch"] < row["tokens"]


def test_a_file_that_is_not_exact_says_so_before_decoding(run_cli, tiny_dir, tmp_path, monkeypatch):
    vec = tmp_path / "b.safetensors"
    text = "a quick brown fox jumps over the lazy dog"
    assert compress(run_cli, tiny_dir, text, "-o", str(vec), "--vectors", "1", "--max-steps", "2")[0] == 1
    meta = json.loads(run_cli("info", str(vec), "--json")[1])
    with monkeypatch.context() as patch:  # refused from its metadata: no model is loaded
        patch.setattr(api, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
        code, _, err = run_cli("decompress", str(vec))
    assert_one_line_error(code, err, "not exact")
    assert "--inexact" in err
    # --inexact shows the best decode, says where it leaves the text, and exits 1
    code, out, err = run_cli("decompress", str(vec), "--inexact")
    assert code == 1 and out and f"from token {meta['first_mismatch']} of {meta['n_tokens']}" in err
    assert err.startswith("warning: not exact")
    tokens = load_model(str(tiny_dir)).tokenizer(text, add_special_tokens=False)["input_ids"]
    decoded = load_model(str(tiny_dir)).tokenizer(out.decode(), add_special_tokens=False)["input_ids"]
    assert decoded[: meta["first_mismatch"]] == tokens[: meta["first_mismatch"]]
    assert decoded[meta["first_mismatch"]] != tokens[meta["first_mismatch"]]


def test_inexact_on_an_exact_file_is_a_plain_decompress(run_cli, tiny_dir, tmp_path):
    vec = tmp_path / "v.safetensors"
    assert compress(run_cli, tiny_dir, TEXT, "-o", str(vec))[0] == 0
    assert run_cli("decompress", str(vec), "--inexact") == (0, TEXT.encode(), "")


def test_a_damaged_vector_file_is_refused_as_corrupted_at_once(run_cli, tiny_dir, tmp_path, monkeypatch):
    vec = tmp_path / "v.safetensors"
    assert compress(run_cli, tiny_dir, TEXT, "-o", str(vec))[0] == 0
    data = bytearray(vec.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")  # the tensor's bytes follow the header
    middle = (start + len(data)) // 2
    data[middle: middle + 16] = bytes(b ^ 0x5A for b in data[middle: middle + 16])
    vec.write_bytes(bytes(data))
    monkeypatch.setattr(api, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    for command in ("decompress", "info"):
        code, _, err = run_cli(command, str(vec))
        assert_one_line_error(code, err, "is corrupted")


def test_progress_lines_when_stderr_is_not_a_terminal(run_cli, tiny_dir, tmp_path):
    code, out, err = compress(run_cli, tiny_dir, TEXT, "-o", str(tmp_path / "v.safetensors"), "--threads", "1",
                              "--json")
    assert code == 0
    plan, first, *_, last = err.splitlines()
    assert plan.startswith("cramming 1 text(s) of up to ") and "into 2 vector(s) each" in plan, err
    assert first.startswith("cramming 0/300 loss ") and "done 0/1 threads 1 [" in first, err
    assert "done 1/1" in last, err  # the last step is always shown, however soon it came
    code, out, err = compress(run_cli, tiny_dir, TEXT, "-o", str(tmp_path / "w.safetensors"), "--json", "--quiet")
    assert code == 0 and err == ""


def test_threads():
    assert use_threads(1) == 1
    assert 1 <= use_threads() == free_cores() <= (os.cpu_count() or 1)
    with pytest.raises(CrammingError, match="threads must be at least 1"):
        use_threads(0)


def test_recipes_are_selectable(run_cli, tiny_dir, tmp_path):
    for recipe in ("paper", "progressive", "cold", "default", "default@6"):
        vec = tmp_path / f"{recipe}.safetensors"
        code, out, err = compress(run_cli, tiny_dir, TEXT, "-o", str(vec), "--recipe", recipe, "--max-steps", "3",
                                  "--json")
        row = json.loads(out)  # 3 steps: too few for any recipe on this text (the default needs 24)
        version = recipe if "@" in recipe else RECIPES[recipe].name  # a name runs its latest version
        assert code == 1 and row["exact"] is False and row["steps"] <= 3 and row["recipe"] == version, err
        assert row["steps_run"] == 3  # what it cost; steps: the step of the vectors it kept
        meta = json.loads(run_cli("info", str(vec), "--json")[1])
        assert meta["recipe"]["name"] == meta["recipe"]["base"] == version and meta["recipe"]["max_steps"] == 3
        assert meta["exact"] is False


def test_a_file_records_the_stall_rule_s_restarts(run_cli, tiny_dir, tmp_path):
    # A step too small to move any argmax: the stall rule starts a new period every 3 flat steps, and the file says
    # when, so a study of the schedule reads each sample's periods (Recipe.restarts) from what it stored.
    vec = tmp_path / "flat.safetensors"
    compress(run_cli, tiny_dir, TEXT, "-o", str(vec), "--recipe", "cold", "--set", "lr=1e-7", "--set", "stall=3",
             "--max-steps", "8", "--json")
    meta = json.loads(run_cli("info", str(vec), "--json")[1])
    assert meta["restarts"] == [3, 7] and Recipe.from_dict(meta["recipe"]).restarts(8, meta["restarts"]) == [3, 7]


# Bad input: one line on stderr, exit 2, no traceback, nothing written.

@pytest.mark.parametrize("args, pattern", [
    (["", "-o", "{tmp}/x.safetensors"], "empty"),
    (["zq " * 80, "-o", "{tmp}/x.safetensors"], "and the prefix token it can take at most 62 tokens"),
    ([TEXT, "--vectors", "0", "-o", "{tmp}/x.safetensors"], "at least 1"),
    ([TEXT, "--recipe", "nope", "-o", "{tmp}/x.safetensors"], "unknown recipe"),
    (["-f", "{tmp}/missing.txt"], "no such file"),
    (["-f", "{tmp}/latin1.txt", "-o", "{tmp}/x.safetensors"], "not UTF-8"),
    ([], "no text given"),
])
def test_bad_compress_input(run_cli, tiny_dir, tmp_path, args, pattern):
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, _, err = run_cli("compress", "--model", str(tiny_dir), "--max-steps", "5", *args)
    assert_one_line_error(code, err, pattern)
    assert not (tmp_path / "x.safetensors").exists() and no_leftovers(tmp_path)


@pytest.mark.parametrize("args, pattern", [
    (["compress", "", "-o", "{tmp}/x.safetensors"], "empty"),
    (["compress", "-f", "{tmp}/missing.txt"], "no such file"),
    (["compress", TEXT, "--tokens", "0"], "at least 1"),
    (["compress", TEXT, "--vectors", "0"], "at least 1"),
    (["compress", TEXT, "--recipe", "nope"], "unknown recipe"),
    (["compress", TEXT, "--threads", "0"], "threads must be at least 1"),
    (["measure", "", "--json"], "empty"),
    (["measure", TEXT, "--recipe", "nope"], "unknown recipe"),
    (["texts", "file:{tmp}/missing.txt"], "no such file"),
    (["texts", "gutenberg"], "unknown text source"),
    (["texts", "books", "--n", "0"], "at least 1"),
    (["capacity", "--source", "file:{tmp}/missing.txt"], "no such file"),
    (["capacity", "--recipe", "nope"], "unknown recipe"),
])
def test_input_errors_come_before_the_model_loads(run_cli, tiny_dir, tmp_path, monkeypatch, args, pattern):
    monkeypatch.setattr(api, "load_model", lambda *a, **k: pytest.fail("a model was loaded before the check"))
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, _, err = run_cli(*args, "--model", str(tiny_dir))
    assert_one_line_error(code, err, pattern)


def test_the_random_source_without_its_word_list_fails_at_once(run_cli, tiny_dir, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wordfreq" else real(name, *a))
    monkeypatch.setattr(api, "load_model", lambda *a, **k: pytest.fail("a model was loaded before the check"))
    code, _, err = run_cli("texts", "random", "--model", str(tiny_dir))
    assert_one_line_error(code, err, "pip install 'cramming[texts]'")


def test_o_into_a_missing_directory_creates_it(run_cli, tiny_dir, tmp_path):
    vec = tmp_path / "new" / "deeper" / "v.safetensors"
    assert compress(run_cli, tiny_dir, TEXT, "-o", str(vec))[0] == 0
    assert run_cli("decompress", str(vec))[1] == TEXT.encode()


def test_an_unknown_model_with_no_hub_to_ask_fails_at_once(tmp_path):
    # No HF_HUB_OFFLINE: the tool itself finds the hub unreachable (as on this machine) and looks only in the
    # local cache, instead of letting the hub client retry for ~50 s.
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env["HF_ENDPOINT"] = "https://127.0.0.1:9"  # nothing listens there, wherever the test runs
    done = subprocess.run([sys.executable, "-m", "cramming", "compress", "--model", "no-such-model-xyz", TEXT,
                           "-o", str(tmp_path / "x.safetensors")], capture_output=True, text=True, env=env)
    assert_one_line_error(done.returncode, done.stderr, "the hub cannot be reached")
    assert list(tmp_path.iterdir()) == []


def test_unknown_model(run_cli, tmp_path):
    # A hub id, offline as a user without a network would set it: a real process, since the hub library reads
    # HF_HUB_OFFLINE when it is imported.
    done = subprocess.run([sys.executable, "-m", "cramming", "compress", "--model", "no-such-model-xyz", TEXT,
                           "-o", str(tmp_path / "x.safetensors")], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert_one_line_error(done.returncode, done.stderr, "unknown model")
    code, _, err = run_cli("compress", "--model", str(tmp_path / "nowhere"), TEXT)
    assert_one_line_error(code, err, "unknown model")
    assert list(tmp_path.iterdir()) == []


def test_vectors_from_another_model_or_tokenizer_are_refused(run_cli, tiny_dir, other_tiny_dir, tmp_path):
    vec = tmp_path / "v.safetensors"
    assert compress(run_cli, tiny_dir, TEXT, "-o", str(vec))[0] == 0
    code, out, err = run_cli("decompress", str(vec), "--model", str(other_tiny_dir))
    assert_one_line_error(code, err, "was made with model")
    assert out == b""
    # Same weights, another tokenizer of the same size.
    other_tok = build_tiny_model(tmp_path / "src", corpus=["zebras quietly jump over vexing fog"] * 8)
    retok = tmp_path / "retok"
    shutil.copytree(tiny_dir, retok)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(other_tok / name, retok / name)
    assert load_model(str(retok)).vocab_size == load_model(str(tiny_dir)).vocab_size
    code, _, err = run_cli("decompress", str(vec), "--model", str(retok))
    assert_one_line_error(code, err, "another tokenizer")


def test_corrupt_vector_files_are_refused(run_cli, tiny_dir, tmp_path):
    vec = tmp_path / "v.safetensors"
    assert compress(run_cli, tiny_dir, TEXT, "-o", str(vec))[0] == 0
    data = vec.read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00not a safetensors file")
    save_file({"weights": load_vectors(vec)[0]}, str(tmp_path / "foreign.safetensors"))
    for name, pattern in [("truncated", "not a readable vector file"), ("garbage", "not a readable vector file"),
                          ("foreign", "not a cramming vector file"), ("missing", "no such vector file")]:
        code, out, err = run_cli("decompress", str(tmp_path / f"{name}.safetensors"))
        assert_one_line_error(code, err, pattern)
        code, out, err = run_cli("info", str(tmp_path / f"{name}.safetensors"))
        assert_one_line_error(code, err, pattern)


def test_failed_decompress_keeps_existing_output(run_cli, tiny_dir, other_tiny_dir, tmp_path):
    vec, target = tmp_path / "v.safetensors", tmp_path / "keep.txt"
    target.write_text("precious")
    assert compress(run_cli, tiny_dir, TEXT, "-o", str(vec))[0] == 0
    code, _, err = run_cli("decompress", str(vec), "--model", str(other_tiny_dir), "-o", str(target))
    assert code == 2 and target.read_text() == "precious" and no_leftovers(tmp_path)


def test_models_names_the_default_for_what_it_is(run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # one line per row
    code, out, _ = run_cli("models")
    assert code == 0 and b"smollm2-135m-instruct-q4_1 (default); also smollm2-135m" in out
    assert b"SmolLM2-135M-Instruct" in out and b"Q4_1" in out


def test_measure_json_has_the_metric_keys(run_cli, tiny_dir):
    code, out, err = run_cli("measure", "--model", str(tiny_dir), "--vectors", "2", "--max-steps", "300", TEXT,
                             "--json")
    assert code == 0, err
    row = json.loads(out)
    for key in ("ce_without_bits", "ce_with_bits", "information_gain_bits", "information_gain_nats", "token_gain",
                "accuracy_without", "accuracy_with", "exact", "theoretical_capacity", "utilization", "steps",
                "seconds", "tokens"):
        assert key in row, key
    assert row["exact"] is True and row["accuracy_with"] == 1.0
    assert row["information_gain_bits"] == pytest.approx(row["ce_without_bits"] - row["ce_with_bits"])


def test_vector_files_get_the_usual_mode(run_cli, tiny_dir, tmp_path):
    vec = tmp_path / "m.safetensors"
    assert compress(run_cli, tiny_dir, TEXT, "-o", str(vec))[0] == 0
    umask = os.umask(0)
    os.umask(umask)
    assert vec.stat().st_mode & 0o777 == 0o666 & ~umask


def test_texts_out_writes_each_passage_as_a_file_compress_reads(run_cli, tiny_dir, tmp_path):
    book = tmp_path / "my book.txt"
    book.write_text(" ".join(f"Sentence number {i} tells of the {i}th lighthouse keeper." for i in range(60)))
    args = ("texts", f"file:{book}", "--n", "2", "--tokens", "12", "--seed", "3", "--model", str(tiny_dir))
    code, out, err = run_cli(*args, "--json")
    assert code == 0, err
    passages = [json.loads(line)["text"] for line in out.splitlines()]
    code, out, err = run_cli(*args, "--out", str(tmp_path / "passages"))
    assert code == 0, err
    paths = [Path(line) for line in out.decode().splitlines()]
    assert [p.name for p in paths] == ["my_book-seed3-0-12t.txt", "my_book-seed3-1-12t.txt"]
    assert [p.read_text(encoding="utf-8") for p in paths] == passages  # the text as crammed, nothing added
    code, out, err = run_cli("compress", "-f", str(paths[0]), "--model", str(tiny_dir), "--json", "--max-steps", "1")
    assert json.loads(out.decode().splitlines()[0])["tokens"] == 12, err
    assert json.loads(out.decode().splitlines()[0])["path"] == str(paths[0]) + ".cram.safetensors"  # beside it
    code, _, err = run_cli(*args, "--out", str(book))  # a file where the directory should be
    assert_one_line_error(code, err, "cannot write the passages")
