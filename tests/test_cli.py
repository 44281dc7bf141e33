"""The `cram` command on the tiny model, as a user runs it: files on disk, exit codes, one-line errors."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from safetensors.torch import save_file

from cramming import load_model
from cramming.vectors import load_vectors

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
    assert meta["recipe"]["name"] == "default" and meta["exact"] is True
    assert meta["prefix_token_id"] == tiny_lm.tokenizer.bos_token_id
    assert len(meta["text_sha256"]) == 64 and len(meta["tokens_sha256"]) == 64 and meta["cramming_version"]


def test_several_files_are_one_batch_one_vector_file_each(run_cli, tiny_dir, tmp_path):
    texts = {"a.txt": "to be or not to be", "b.txt": "all that glitters is not gold"}
    for name, text in texts.items():
        (tmp_path / name).write_text(text)
    out_dir = tmp_path / "vecs"
    code, out, err = compress(run_cli, tiny_dir, "-f", str(tmp_path / "a.txt"), "-f", str(tmp_path / "b.txt"),
                              "-o", str(out_dir), "--json")
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
    assert code == 0 and json.loads(out)["recipe"]["max_steps"] == 2  # the budget it ran with, not the recipe's
    code, _, err = run_cli("decompress", str(vec))
    assert_one_line_error(code, err, "does not match the stored hashes")


def test_recipes_are_selectable(run_cli, tiny_dir, tmp_path):
    for recipe in ("paper", "progressive", "cold", "default"):
        vec = tmp_path / f"{recipe}.safetensors"
        code, out, err = compress(run_cli, tiny_dir, TEXT, "-o", str(vec), "--recipe", recipe, "--max-steps", "3",
                                  "--json")
        assert code == (0 if json.loads(out)["exact"] else 1), err  # exit status and result agree
        assert json.loads(run_cli("info", str(vec), "--json")[1])["recipe"]["name"] == recipe


# Bad input: one line on stderr, exit 2, no traceback, nothing written.

@pytest.mark.parametrize("args, pattern", [
    (["", "-o", "{tmp}/x.safetensors"], "empty"),
    (["zq " * 80, "-o", "{tmp}/x.safetensors"], "at most 63 tokens"),
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
