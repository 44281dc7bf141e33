"""Starts that know the text: predict a text's crammed vectors from the frozen model's own reading of it.

Every text otherwise starts at the same point, the model's prior plus the seed's noise (loop.starting_vectors).
An encoder adds a per-text offset to that point: the model reads [prefix ; text], its hidden states at one layer
are averaged over the text's positions, and a linear head maps that average to an [n, d] offset.

Crammed solutions are not unique (many vectors decode a text), so the head is not fit to "the" solution but to
the one the recipe reaches from the common start: every training text is crammed from the same start with the
same seed, so the target, solution minus start, is a function of the text alone, and ridge regression gives
its conditional mean. Two ways to fit the head (benchmarks/encoder.py measures both on held-out passages):
`fit_ridge`, closed form onto crammed solutions; `fit_end_to_end`, through the frozen model on the cramming loss
itself, starting from the ridge head.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from cramming.core.atomic import atomic_output
from cramming.core.errors import CrammingError
from cramming.core.loop import text_logits
from cramming.model.assets import cache_dir, safe_name
from cramming.model.loading import LoadedModel

if TYPE_CHECKING:
    from cramming.experiments.runner import ModelId

# The default model's one-vector encoder ships (ridge on 127 crammed 16- and 32-token passages; docs/notebook.md).
SHIPPED = Path(__file__).parents[1] / "encoders"  # the package's data, beside its layers


def features(lm: LoadedModel, token_ids: Sequence[Sequence[int]], layer: int, prefix_id: int | None,
             batch: int = 16) -> torch.Tensor:
    """[B, d] how the frozen model reads each text: its hidden state after `layer` blocks, averaged over the
    text's positions (the prefix token, when there is one, comes first and is left out)."""
    blocks = lm.model.config.num_hidden_layers
    if not 0 <= layer <= blocks:
        raise CrammingError(f"{lm.name} has {blocks} blocks: the layer read must be between 0 and {blocks}, "
                            f"got {layer}")
    out = []
    head = [] if prefix_id is None else [prefix_id]
    for i in range(0, len(token_ids), batch):
        ids, mask = padded([head + list(ids) for ids in token_ids[i: i + batch]], lm.device)
        with torch.no_grad():
            hidden = lm.model(input_ids=ids, attention_mask=mask, output_hidden_states=True,
                              use_cache=False).hidden_states[layer].float()
        text = mask.clone()
        text[:, : len(head)] = 0
        out.append((hidden * text[..., None]).sum(1) / text.sum(1, keepdim=True))
    return torch.cat(out).cpu()


def padded(rows: Sequence[Sequence[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists right-padded with 0 -> (ids [B, width], mask [B, width] of 1 at real tokens)."""
    width = max(map(len, rows))
    ids = torch.tensor([list(r) + [0] * (width - len(r)) for r in rows], device=device)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
    return ids, mask


@dataclass
class Encoder:
    """A linear head from a model's reading of a text to the offset of its vectors from the common start."""

    weight: torch.Tensor  # [d_features, n * d]
    bias: torch.Tensor  # [n * d]
    center: torch.Tensor  # [d_features]: features are centered and scaled before the head
    scale: torch.Tensor  # [d_features]
    layer: int
    n_vectors: int
    model: str
    model_fingerprint: str
    tokenizer_fingerprint: str
    about: dict = field(default_factory=dict)  # how it was trained: texts, lengths, fit, held-out scores

    def offsets(self, lm: LoadedModel, token_ids: Sequence[Sequence[int]], prefix_id: int | None) -> torch.Tensor:
        """[B, n, d] offsets of these texts' starts from the common start."""
        self.check(lm)
        x = (features(lm, token_ids, self.layer, prefix_id) - self.center) / self.scale
        return (x @ self.weight + self.bias).reshape(len(token_ids), self.n_vectors, -1)

    def digest(self) -> str:
        """What the head computes, as a short hash: its tensors and the layer it reads."""
        h = hashlib.sha256(str(self.layer).encode())
        for t in (self.weight, self.bias, self.center, self.scale):
            h.update(t.float().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def check(self, lm: LoadedModel | ModelId) -> None:
        if (self.model_fingerprint, self.tokenizer_fingerprint) != (lm.fingerprint, lm.tokenizer_fingerprint):
            raise CrammingError(f"this encoder was trained for {self.model} (fingerprint "
                                f"{self.model_fingerprint[:12]}), not for {lm.name} ({lm.fingerprint[:12]})")

    def save(self, path: str | Path) -> Path:
        tensors = {"weight": self.weight.contiguous(), "bias": self.bias.contiguous(),
                   "center": self.center.contiguous(), "scale": self.scale.contiguous()}
        meta = {"layer": self.layer, "n_vectors": self.n_vectors, "model": self.model,
                "model_fingerprint": self.model_fingerprint, "tokenizer_fingerprint": self.tokenizer_fingerprint,
                "about": self.about}
        with atomic_output(Path(path)) as tmp:
            save_file(tensors, str(tmp), metadata={"cramming_encoder": json.dumps(meta)})
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Encoder:
        try:
            with safe_open(str(path), "pt") as f:  # tensors and metadata in one read
                meta = json.loads((f.metadata() or {})["cramming_encoder"])
                tensors = {k: f.get_tensor(k) for k in ("weight", "bias", "center", "scale")}
            return cls(**tensors, **meta)
        except FileNotFoundError:
            raise CrammingError(f"no such encoder file: {path}") from None
        except (SafetensorError, KeyError, TypeError, json.JSONDecodeError, OSError):
            raise CrammingError(f"{path} is not a cramming encoder file") from None


def encoder_path(lm: LoadedModel | ModelId, n_vectors: int) -> Path:
    """Where the encoder of this model for n vectors is cached (the shipped one has the same name)."""
    name = safe_name(Path(lm.name).name)
    return cache_dir() / "encoders" / f"{name}-{lm.fingerprint[:16]}-{n_vectors}v.safetensors"


def model_encoder(lm: LoadedModel | ModelId, n_vectors: int) -> Encoder:
    """The encoder of this model for n vectors: one trained by `cram encoder train` (in the cache), else the one
    shipped with the package."""
    path = encoder_path(lm, n_vectors)
    for found in (path, SHIPPED / path.name):  # a user's own training wins over the shipped file
        if found.exists():
            encoder = Encoder.load(found)
            encoder.check(lm)
            return encoder
    raise CrammingError(f"no encoder for {lm.name} with {n_vectors} vector(s); train one with: "
                        f"cram encoder train --model {lm.name} --vectors {n_vectors}")


def standardize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(center, scale) of the features' columns; a constant column gets scale 1."""
    center, scale = x.mean(0), x.std(0)
    return center, torch.where(scale > 1e-6, scale, torch.ones_like(scale))


def ridge(x: torch.Tensor, y: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form ridge regression of y [N, k] on x [N, f] -> (weight [f, k], bias [k]); the bias is not
    penalized."""
    x, y = x.double(), y.double()
    x_mean, y_mean = x.mean(0), y.mean(0)
    gram = (x - x_mean).T @ (x - x_mean) + alpha * torch.eye(x.shape[1], dtype=x.dtype)
    weight = torch.linalg.solve(gram, (x - x_mean).T @ (y - y_mean))
    return weight.float(), (y_mean - x_mean @ weight).float()


def choose_alpha(x: torch.Tensor, y: torch.Tensor, alphas: Sequence[float], folds: int = 5, seed: int = 0
                 ) -> tuple[float, dict[float, float]]:
    """The ridge penalty whose held-out predictions are nearest the targets in k-fold cross-validation
    -> (best alpha, {alpha: mean squared error of the held-out folds})."""
    order = list(range(len(x)))
    random.Random(seed).shuffle(order)
    parts = [order[i::folds] for i in range(folds)]
    errors = {}
    for alpha in alphas:
        total = 0.0
        for part in parts:
            held = set(part)
            rest = [i for i in order if i not in held]
            weight, bias = ridge(x[rest], y[rest], alpha)
            total += ((x[part] @ weight + bias - y[part]) ** 2).sum().item()
        errors[alpha] = total / y.numel()
    return min(errors, key=errors.get), errors


def fit_ridge(lm: LoadedModel, x: torch.Tensor, targets: torch.Tensor, *, layer: int,
              alphas: Sequence[float] = (1.0, 10.0, 100.0, 1e3, 1e4, 1e5)) -> Encoder:
    """An encoder fit in closed form: the texts' features x [N, f] (`features` at `layer`) -> targets [N, n, d]
    (each text's solution minus the common start), its penalty chosen by 5-fold cross-validation."""
    center, scale = standardize(x)
    x = (x - center) / scale
    y = targets.reshape(len(targets), -1).float()
    alpha, errors = choose_alpha(x, y, alphas)
    weight, bias = ridge(x, y, alpha)
    return Encoder(weight, bias, center, scale, layer, targets.shape[1], lm.name, lm.fingerprint,
                   lm.tokenizer_fingerprint, {"fit": "ridge", "alpha": alpha, "texts": len(x),
                                               "cv_mse": {str(a): e for a, e in errors.items()},
                                               "target_mse": y.pow(2).mean().item()})


def fit_end_to_end(lm: LoadedModel, encoder: Encoder, x: torch.Tensor, token_ids: Sequence[Sequence[int]],
                   start: torch.Tensor, *, prefix_id: int | None, steps: int, lr: float = 1e-3, batch: int = 8,
                   seed: int = 0, on_step: Callable[[int, float], None] | None = None) -> Encoder:
    """The head trained through the frozen model on the cramming loss itself (cross-entropy of each text given
    its predicted start, the common `start` [n, d] plus the head's offset), from `encoder`'s head. x [N, f]: the
    texts' features at the encoder's layer, computed once (the model reads each text the same way every step)."""
    x = (x - encoder.center) / encoder.scale
    weight = torch.nn.Parameter(encoder.weight.clone())
    bias = torch.nn.Parameter(encoder.bias.clone())
    optimizer = torch.optim.Adam([weight, bias], lr=lr)
    embedding = lm.model.get_input_embeddings()
    rng = random.Random(seed)
    for step in range(steps):
        rows = rng.sample(range(len(token_ids)), min(batch, len(token_ids)))
        target, valid = padded([token_ids[r] for r in rows], lm.device)
        vectors = start.to(lm.device) + (x[rows].to(lm.device) @ weight + bias).reshape(len(rows), *start.shape)
        with torch.no_grad():
            embeds = embedding(target)
        logits = text_logits(lm.model, vectors, embeds, prefix_id)
        ce = F.cross_entropy(logits.float().transpose(1, 2), target, reduction="none")
        loss = ((ce * valid).sum(1) / valid.sum(1)).mean()
        if not math.isfinite(loss.item()):  # before the step, so the head returned is never a diverged one
            raise CrammingError(f"end-to-end training diverged at step {step}; lower its learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if on_step is not None:
            on_step(step, loss.item())
    about = dict(encoder.about, fit="ridge, then end to end", end_to_end_steps=steps, end_to_end_lr=lr)
    return Encoder(weight.detach(), bias.detach(), encoder.center, encoder.scale, encoder.layer, encoder.n_vectors,
                   encoder.model, encoder.model_fingerprint, encoder.tokenizer_fingerprint, about)
