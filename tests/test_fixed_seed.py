"""Refactors keep results: a fixed-seed run on the tiny model gives the results stored before them.

The tiny model and its tokenizer ship as test data (tests/data/tiny, built once by conftest.build_tiny_model), so
the weights do not move with the installed transformers' initialisation. A float32 run's last bits are still
decided by torch and transformers (its modelling code), the instruction set ATen dispatches to, and the processor,
whose vendor and model choose the BLAS's kernels (MKL takes other paths on AMD than on Intel, and
MKL_ENABLE_INSTRUCTIONS and the like override that); cramming amplifies a last bit into a step sooner or later.
So each reference, tests/data/fixed_seed-*.safetensors, holds those conditions in its metadata, and a run is
compared with the reference made under its own conditions only: outcomes (steps, exact) exactly, the first 10
losses of each text to a relative 1e-5, and the vectors to float32 rounding. Where no reference was made under
this machine's conditions the test skips and says so; `python -m tests.test_fixed_seed` writes one. Regenerate a
reference only for a change meant to alter results, and say so in the commit.

The invariants that hold on every CPU (a text alone and in a padded batch, the same seed twice) are asserted
in float64 by test_engine.py; this test guards against a refactor changing results on a machine it knows.
The references of commits before 2026-12-05 were keyed by /proc/cpuinfo's model number alone (and one had no
key); they were replaced by ones written under recorded conditions, on the shipped model.
"""

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from cramming import compress

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny"  # the shipped tiny model and tokenizer
TEXTS = ["the cat sat on the mat", "a quick brown fox jumps over the lazy dog"]
RECIPES = ("paper", "progressive", "cold", "default")


def reference(lm) -> dict[str, torch.Tensor]:
    """Each recipe's vectors and steps for both texts as one batch, 2 vectors, 60 steps, seed 3, one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a matmul split over other threads rounds differently
    try:
        out = {}
        for name in RECIPES:
            for i, c in enumerate(compress(TEXTS, lm, n_vectors=2, recipe=name, max_steps=60, seed=3)):
                out[f"{name}/{i}/vectors"] = c.vectors
                out[f"{name}/{i}/steps"] = torch.tensor([c.steps, int(c.exact)])
                out[f"{name}/{i}/losses"] = torch.tensor([loss for _, loss, _ in c.history[:10]])
        return out
    finally:
        torch.set_num_threads(threads)


def differences(now: dict[str, torch.Tensor], stored: dict[str, torch.Tensor]) -> list[str]:
    """The entries of a run that its reference does not hold (steps exactly, vectors to float32 rounding)."""
    if sorted(now) != sorted(stored):
        return ["the entries themselves"]
    return [key for key in now if not (torch.equal(now[key], stored[key]) if key.endswith("steps")
                                       else torch.allclose(now[key], stored[key], rtol=1e-5, atol=1e-6))]


@pytest.fixture(scope="module")
def shipped_lm():
    from cramming import load_model

    return load_model(str(TINY), "cpu")


FLOAT_ENV = ("MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "DNNL_MAX_CPU_ISA")  # they swap kernels (ATen's: "isa")


def cpu() -> str:
    """The processor's vendor, family and model from /proc/cpuinfo (Linux; elsewhere "unknown")."""
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.exists() else ""
    fields = [re.search(rf"^{name}\s*:\s*(.+)$", text, re.M) for name in ("vendor_id", "cpu family", "model")]
    return " ".join(f.group(1).strip() for f in fields) if all(fields) else "unknown"


def conditions() -> dict[str, str]:
    """What decides a float32 run's last bits here (see the docstring)."""
    return {"torch": torch.__version__, "transformers": transformers.__version__, "cpu": cpu(),
            "isa": torch.backends.cpu.get_cpu_capability(),
            "env": " ".join(f"{k}={os.environ[k]}" for k in FLOAT_ENV if k in os.environ)}


def reference_path(found: dict[str, str]) -> Path:
    digest = hashlib.sha256(json.dumps(found, sort_keys=True).encode()).hexdigest()[:8]
    readable = re.sub(r"[^A-Za-z0-9.]+", "-", f"{found['cpu']} {found['isa']}")
    return DATA / f"fixed_seed-{readable}-{digest}.safetensors"


def test_the_shipped_tiny_model_is_the_one_the_tests_build(shipped_lm, tiny_lm):
    built_with = json.loads((TINY / "config.json").read_text())["transformers_version"]
    if built_with != transformers.__version__:
        pytest.skip(f"the shipped tiny model was built under transformers {built_with}, this is "
                    f"{transformers.__version__}, whose initialisation may differ")
    assert shipped_lm.fingerprint == tiny_lm.fingerprint
    assert shipped_lm.tokenizer_fingerprint == tiny_lm.tokenizer_fingerprint


def test_a_fixed_seed_run_gives_the_stored_vectors(shipped_lm):
    here = conditions()
    path = reference_path(here)
    if not path.exists():
        known = [safe_open(str(p), "pt").metadata() for p in sorted(DATA.glob("fixed_seed-*.safetensors"))]
        pytest.skip(f"no fixed-seed reference for this machine's conditions {here} (references exist for {known}); "
                    "`python -m tests.test_fixed_seed` writes one")
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == here, f"{path.name} was written under other conditions"
    wrong = differences(reference(shipped_lm), load_file(str(path)))
    assert not wrong, f"under {here}, entries that differ from {path.name}: {wrong}"


if __name__ == "__main__":  # python -m tests.test_fixed_seed: write the reference (see the docstring)
    import tempfile

    from cramming import load_model

    from .conftest import CORPUS

    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        passages = Path(tmp) / "passages.txt"
        passages.write_text(". ".join(CORPUS * 3) + ".")
        patch.setenv("CRAMMING_PRIOR_SOURCE", f"file:{passages}")
        patch.setenv("CRAMMING_CACHE", str(Path(tmp) / "cache"))
        lm = load_model(str(TINY), "cpu")
        path = reference_path(conditions())
        save_file({k: v.contiguous() for k, v in reference(lm).items()}, str(path), metadata=conditions())
        print(f"wrote {path}")
