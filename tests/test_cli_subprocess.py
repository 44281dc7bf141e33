"""The `cram` command in a subprocess, typed as a user types it in a shell: inputs and where their vectors go,
progress on slow commands, paths that travel, messages meant for people."""

import csv
import io
import json
import shlex
import shutil
import subprocess
import sys

import pytest
import torch

from cramming import api, compress

from .conftest import GRID_TEXTS, cram
from .test_cli import assert_one_line_error

TEXTS = {"a": "the cat sat on the mat", "b": "to be or not to be"}


def tiny_args(tiny_dir, *args: str) -> list[str]:
    return ["compress", "--model", str(tiny_dir), "--vectors", "2", "--max-steps", "300", "--threads", "1", *args]


def refused(done: subprocess.CompletedProcess, pattern: str) -> None:
    assert_one_line_error(done.returncode, done.stderr, pattern)


def test_two_inputs_of_one_name_never_share_an_output(tiny_dir, tmp_path):
    for folder, text in TEXTS.items():
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.txt").write_text(text)
    args = tiny_args(tiny_dir, "-f", "a/x.txt", "-f", "b/x.txt")
    done = cram(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for folder, text in TEXTS.items():  # each beside its input
        assert cram("decompress", f"{folder}/x.txt.cram.safetensors", cwd=tmp_path).stdout == text
    done = cram(*args, "-o", "vecs", cwd=tmp_path)  # one folder for both: refused before any work
    refused(done, "a/x.txt and b/x.txt would both write vecs/x.txt.cram.safetensors")
    assert not (tmp_path / "vecs").exists()


def test_a_shell_glob_after_f_is_one_batch(tiny_dir, tmp_path):
    (tmp_path / "texts").mkdir()
    for name, text in TEXTS.items():
        (tmp_path / "texts" / f"{name}.txt").write_text(text)
    command = shlex.join([sys.executable, "-m", "cramming", *tiny_args(tiny_dir)]) + " -f texts/*.txt -o vecs --json"
    done = subprocess.run(command, shell=True, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["exact"] for line in done.stdout.splitlines()] == [True, True]
    for name, text in TEXTS.items():
        assert cram("decompress", f"vecs/{name}.txt.cram.safetensors", cwd=tmp_path).stdout == text
        meta = json.loads(cram("info", f"vecs/{name}.txt.cram.safetensors", "--json", cwd=tmp_path).stdout)
        assert meta["run_conditions"]["batch_size"] == 2  # crammed together, and the file says so


def test_a_bare_file_name_is_not_crammed_as_text(tmp_path):
    (tmp_path / "para.txt").write_text("a paragraph of text")
    done = cram("compress", "para.txt", "-o", "x.safetensors", cwd=tmp_path)
    refused(done, "'para.txt' is a file here: to cram its text, use -f para.txt")
    assert not (tmp_path / "x.safetensors").exists()
    refused(cram("compress", "two", "words", cwd=tmp_path), "quote the text as one argument")


def test_certify_and_run_show_progress(tiny_dir, tmp_path, spec_file):
    vec = tmp_path / "v.safetensors"
    assert cram(*tiny_args(tiny_dir, TEXTS["a"], "-o", str(vec))).returncode == 0
    done = cram("certify", str(vec), "--threads", "1")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith("checks 0/17 loading the model") and lines[-1].startswith("checks 17/17 done")
    ran = cram("run", str(spec_file()), "--db", str(tmp_path / "grid.sqlite"), "--threads", "1")
    assert ran.returncode == 0, ran.stderr
    tasks = [line for line in ran.stderr.splitlines() if line.startswith("tasks ")]
    assert tasks[0].startswith("tasks 0/4") and tasks[-1].startswith("tasks 4/4 "), ran.stderr  # the last never skipped
    assert "4 row(s) added" in ran.stderr


def test_run_hears_every_step_of_the_batch_in_flight(tiny_dir, tmp_path, spec_file):
    from cramming.experiments.runner import Spec, run_local
    from cramming.files.database import Store

    steps = []
    run_local(Spec.from_toml(spec_file(samples=1, lengths=(4,))), Store(tmp_path / "g.sqlite"),
              on_step=lambda s: steps.append(s.step))
    assert steps[0] == 0 and steps == list(range(len(steps))) and len(steps) > 1


def test_measure_reads_a_vector_file_and_saves_what_it_crams(tiny_dir, tmp_path, monkeypatch, run_cli):
    vec = tmp_path / "m.safetensors"
    done = cram("measure", TEXTS["a"], "--model", str(tiny_dir), "--vectors", "2", "--max-steps", "300",
                "-o", str(vec), "--json", "--threads", "1")
    assert done.returncode == 0, done.stderr
    crammed = json.loads(done.stdout)
    assert cram("decompress", str(vec)).stdout == TEXTS["a"]
    monkeypatch.setattr(api, "_compress", lambda *a, **k: pytest.fail("crammed again"))
    code, out, err = run_cli("measure", "--vec", str(vec), "--json")
    assert code == 0, err
    again = json.loads(out)
    assert again["seconds"] is None and again["steps"] == crammed["steps"] and again["tokens"] == crammed["tokens"]
    assert again["information_gain_bits"] == pytest.approx(crammed["information_gain_bits"], rel=1e-4)


def test_the_python_api_takes_threads_and_shows_progress(tiny_lm, capsys):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []
        [c] = compress([TEXTS["a"]], tiny_lm, n_vectors=2, max_steps=300, threads=1, progress=True,
                       on_step=lambda s: seen.append(torch.get_num_threads()))
        assert c.exact and set(seen) == {1} and torch.get_num_threads() == 2  # set for the call, then restored
    finally:
        torch.set_num_threads(before)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("cramming 0/300 loss ") and "done 1/1" in lines[-1]


def test_a_model_directory_is_stored_by_its_full_path(tiny_dir, tmp_path):
    shutil.copytree(tiny_dir, tmp_path / "tiny")
    (tmp_path / "elsewhere").mkdir()
    assert cram(*tiny_args("./tiny", TEXTS["a"], "-o", "v.safetensors"), cwd=tmp_path).returncode == 0
    meta = json.loads(cram("info", "v.safetensors", "--json", cwd=tmp_path).stdout)
    assert meta["model"] == str((tmp_path / "tiny").resolve())
    assert cram("decompress", "../v.safetensors", cwd=tmp_path / "elsewhere").stdout == TEXTS["a"]
    (tmp_path / "tiny").rename(tmp_path / "moved")  # the model moved: the error says how to name it
    refused(cram("decompress", "v.safetensors", cwd=tmp_path), "give the model (--model")
    assert cram("decompress", "v.safetensors", "--model", "moved", cwd=tmp_path).stdout == TEXTS["a"]


def test_results_export_the_text_settings_and_history(run_cli, spec_file, tmp_path):
    db = tmp_path / "r.sqlite"
    assert run_cli("run", str(spec_file(samples=1, lengths=(4,))), "--db", str(db), "--quiet")[0] == 0
    code, out, err = run_cli("results", "--db", str(db), "--format", "csv")
    assert code == 0, err
    [row] = list(csv.DictReader(io.StringIO(out.decode())))
    assert any(t.startswith(row["text"]) for t in GRID_TEXTS) and json.loads(row["settings"])["max_steps"] == 300
    history = json.loads(row["history"])
    assert history[0][0] == 0 and len(history[0]) == 3
    code, out, _ = run_cli("results", "--db", str(db), "--format", "json")
    [full] = json.loads(out)
    assert full["text"] == row["text"] and full["history"] == history


def test_messages_meant_for_people(tiny_dir, tmp_path):
    from cramming import __version__

    version = cram("--version")
    assert version.returncode == 0 and version.stdout == f"cramming {__version__}\n"
    refused(cram("compress", "--bogus"), "No such option: --bogus")
    refused(cram("compress", "x", "--vectors", "many"), "Invalid value for '--vectors'")
    deep = tmp_path / ("a-folder-whose-name-alone-is-longer-than-a-terminal-line-" * 2) / "v.safetensors"
    done = cram(*tiny_args(tiny_dir, TEXTS["a"], "-o", str(deep)))  # its table of results, to a pipe
    assert done.returncode == 0 and any(str(deep) in line for line in done.stdout.splitlines()), done.stdout


def test_capacity_says_sample_and_marks_both_capacities_that_hit_the_top(run_cli, tiny_dir, tmp_path):
    (tmp_path / "t.jsonl").write_text(json.dumps({"text": TEXTS["a"]}))
    code, out, err = run_cli("capacity", "--source", f"file:{tmp_path / 't.jsonl'}", "--samples", "1",
                             "--strategy", "horizon", "--max-tokens", "4", "--max-steps", "300", "--model",
                             str(tiny_dir), "--db", str(tmp_path / "h.sqlite"), "--quiet")
    assert code == 0, err
    line = " ".join(out.decode().split())
    assert "capacity mean ≥ 4.0" in line and "over 1 sample;" in line, line
    assert "decoding capacity (paper) ≥ 4" in line, line


@pytest.mark.parametrize("args", [["--help"], ["models"], ["compress", ""], ["compress", "x", "--set", "lr=fast"],
                                  ["compress", "-f", "/nonexistent/file.txt"], ["run", "--help"]])
def test_help_models_and_bad_input_answer_without_loading_torch(args):
    # torch and transformers take ~3 s of CPU to import: the CLI loads them only once it is about to cram
    code = ("import sys\nfrom cramming.cli import main\nsys.argv = ['cram', *" + repr(args) + "]\ntry:\n    main()\n"
            "except SystemExit:\n    pass\nheavy = sorted({'torch', 'transformers'} & set(sys.modules))\n"
            "assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
