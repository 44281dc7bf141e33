"""A model's shared copied vector m for one-step decoding: trained once on other texts, so a file stores only e.

One-step decoding reads [prefix ; e ; m x T]: each copy of m predicts its own token (Mezentsev and Oseledets,
2025). Crammed per text, m carries part of the text; shared by every text of a model, it is trained once, jointly
with one text vector e per training passage (PASSAGES passages of TOKENS tokens from the prior's source, book text
unless CRAMMING_PRIOR_SOURCE says otherwise, drawn with TEXT_SEED, the prior's seed: the capacity campaigns draw
theirs with seed 0), then frozen, and a text's file holds e alone. Both
start where the default's two-vector runs start, the model's two-vector prior (e its first row, m its second);
AdamW at LR in one cosine over STEPS steps, the model computing in bf16.

Built once per model and kept in the cache as safetensors, its file named by the model's fingerprint and a digest of
how it was built. A file crammed with it records a hash of m itself (copy_hash), and is read back with that very m or
refused: a build on another machine is another m. The default model's ships with the package (copies/), so a first
`--shared-copy` does not wait for the build.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from cramming.core.atomic import atomic_output
from cramming.core.decode import one_step_logits, with_copy
from cramming.core.errors import CrammingError
from cramming.core.precision import autocast, autocast_model
from cramming.model.assets import cache_dir, safe_name
from cramming.model.loading import LoadedModel
from cramming.model.prior import model_prior, source
from cramming.model.texts import load_samples

PASSAGES, TOKENS, TEXT_SEED, STEPS, LR = 16, 32, 1, 300, 0.1
VERSION = 1  # raise it whenever how the copy is built changes
SHIPPED = Path(__file__).parents[1] / "copies"


def copy_digest() -> str:
    """How the shared copy is built, as a short hash: the cached and shipped file's name holds it (a vector file
    records the copy itself, copy_hash)."""
    key = json.dumps([VERSION, source(), PASSAGES, TOKENS, TEXT_SEED, STEPS, LR])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def copy_hash(copy: torch.Tensor) -> str:
    """The shared copy a file was crammed with, as a short hash of its float32 bytes."""
    return hashlib.sha256(copy.float().contiguous().numpy().tobytes()).hexdigest()[:16]


def copy_path(lm: LoadedModel) -> Path:
    """Where this model's shared copy is cached (the same name as the shipped file)."""
    return cache_dir() / "copies" / f"{safe_name(Path(lm.name).name)}-{lm.fingerprint[:16]}-{copy_digest()}.safetensors"


def shared_copy(lm: LoadedModel, prefix_id: int | None, expected: str | None = None) -> torch.Tensor:
    """The [d] shared copied vector of this model: from the cache, or shipped with the package, else built (minutes
    on a CPU, with a progress line) and cached. expected: the copy_hash a file recorded; reading it, nothing is built
    (a build would be another m) and another copy is refused."""
    copy = found_copy(lm)
    if copy is None and expected is None:
        copy = _built(lm, prefix_id)
    if expected is not None and (copy is None or copy_hash(copy) != expected):
        raise CrammingError(f"the file was crammed with a shared copy ({expected}) that this cramming does not have "
                            f"for {lm.name} ({copy_hash(copy) if copy is not None else 'none built'}): it cannot be "
                            "read back with another one")
    return copy


def found_copy(lm: LoadedModel) -> torch.Tensor | None:
    """This model's shared copy from the cache, else shipped with the package (looked up as the prior and the encoder
    are); None when neither has it."""
    path = copy_path(lm)
    for found in (path, SHIPPED / path.name):
        if found.exists():
            return load_file(str(found))["copy"]
    return None


def _built(lm: LoadedModel, prefix_id: int | None) -> torch.Tensor:
    path = copy_path(lm)
    copy, loss = build(lm, prefix_id)
    with atomic_output(path) as tmp:
        save_file({"copy": copy}, str(tmp), metadata={
            "model": lm.name, "model_fingerprint": lm.fingerprint, "digest": copy_digest(), "final_loss": f"{loss:.4f}",
            "passages": str(PASSAGES), "tokens": str(TOKENS), "text_seed": str(TEXT_SEED), "steps": str(STEPS)})
    return copy


def build(lm: LoadedModel, prefix_id: int | None) -> tuple[torch.Tensor, float]:
    """Train m jointly with one e per training passage -> (m [d], the last step's mean cross-entropy, nats)."""
    print(f"building the shared copy of {lm.name}: {PASSAGES} passages of {TOKENS} tokens, {STEPS} steps, once...",
          file=sys.stderr)
    passages = load_samples(source(), PASSAGES, TOKENS, lm.tokenizer, TEXT_SEED)
    device = lm.device
    targets = torch.tensor([lm.tokenizer(p.text, add_special_tokens=False)["input_ids"] for p in passages],
                           device=device)
    start = model_prior(lm, 2, prefix_id).float().to(device)
    e = torch.nn.Parameter(start[0].expand(len(passages), 1, -1).clone())
    m = torch.nn.Parameter(start[1].clone())
    optimizer = torch.optim.AdamW([e, m], lr=LR, betas=(0.9, 0.9), weight_decay=0.0)
    stepper = autocast_model(lm.model, device, True)
    for step in range(STEPS):
        for group in optimizer.param_groups:
            group["lr"] = LR * 0.5 * (1 + math.cos(math.pi * step / STEPS))
        with autocast(device, True):
            logits = one_step_logits(stepper, with_copy(e, m), TOKENS, prefix_id)
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == STEPS - 1:
            print(f"  step {step}: loss {loss.item():.3f}", file=sys.stderr, flush=True)
    return m.detach().float().cpu().contiguous(), loss.item()
