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
