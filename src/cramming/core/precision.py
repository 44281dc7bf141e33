"""The model's compute precision: bf16 autocast, and a bf16 twin of a frozen model that spares autocast its casts."""

from __future__ import annotations

import copy
import itertools
import weakref

import torch


def _bf16_on(device: torch.device, bf16: bool | None) -> bool:
    return device.type == "cuda" if bf16 is None else bf16


def autocast(device: torch.device, bf16: bool | None = None):
    """bf16 autocast on CUDA (vectors and optimizer state stay float32), plain float32 elsewhere; bf16 says
    otherwise (a certificate decodes under CPU bf16 to see whether the vectors survive it)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=_bf16_on(device, bf16))


_TWINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compute(device: torch.device, bf16: bool | None) -> str:
    """How the model computes while cramming, in words a row's run conditions record (autocast_model)."""
    if not _bf16_on(device, bf16):
        return "fp32"
    return "bf16 body, eager attention, fp32 vocabulary projection" if device.type == "cpu" else "bf16"


class Float32Head(torch.nn.Module):
    """The vocabulary projection in float32, outside autocast, of whatever hidden states come in."""

    def __init__(self, head: torch.nn.Module):
        super().__init__()
        self.head = head

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        with torch.autocast(hidden.device.type, enabled=False):
            return self.head(hidden.float())


def autocast_model(model: torch.nn.Module, device: torch.device, bf16: bool | None = None) -> torch.nn.Module:
    """The module to run under autocast(device, bf16). With bf16 on: a twin of model that shares every tensor
    but the Linear weights, which it holds in bf16 once (built on first use, then kept while model lives).
    Autocast casts a frozen weight again on every call (its cache keeps only weights that require grad); the
    twin's weights are those very casts, so the transformer body's outputs and gradients are autocast's bit for
    bit, for 2 bytes a weight. On a CPU two parts run otherwise, each measured to cost less there
    (benchmarks/step_cost.py, parts table): the vocabulary projection in float32 (bf16 took 2-3 times as long, at
    every length, on 1 and 2 threads) and eager attention (its bf16 backward beat sdpa's by 15-35%)."""
    if not _bf16_on(device, bf16):
        return model
    if model not in _TWINS:
        shared = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
        twin = copy.deepcopy(model, shared)
        head = twin.get_output_embeddings()
        for module in twin.modules():
            if isinstance(module, torch.nn.Linear) and not (device.type == "cpu" and module is head):
                # a tied embedding stays float32: only this module's copy
                module.weight = torch.nn.Parameter(module.weight.detach().to(torch.bfloat16), requires_grad=False)
        if device.type == "cpu":
            if head is not None:
                twin.set_output_embeddings(Float32Head(head))
            twin.set_attn_implementation("eager")
        _TWINS[model] = twin
    return _TWINS[model]
