"""A pilot for issue 47: cram a text's coefficients inside a fixed basis of other texts' solutions.

    python benchmarks/basis_pilot.py --rank 110 --steps 200        # and --rank 32, 16
    python benchmarks/basis_pilot.py --rank 110 --steps 200 --basis random             # K random directions
    python benchmarks/basis_pilot.py --rank 110 --steps 400 --tokens 64 --basis random # 64-token book passages

The basis: the exact one-vector solutions of the encoder's training passages (results/encoder-training.sqlite: text
seed 3, book and recent passages of 16 and 32 tokens, the default in bf16), 16 held out at random (seed 0), their
mean and the top K principal directions of the other 111 (benchmarks/solutions.py --pca shows that no held-out
solution lies in that span). For the first four held-out 16-token passages, only z (K numbers each) is trained:
vectors = mean + z B, starting at z = 0 (the mean), AdamW at --lr in one cosine over --steps, the model in bf16 (the
twin cramming runs), plain cross-entropy; a passage is exact when greedy decoding in float32 gives it back. Prints
the steps at which each came back. Until `--rank` (issue 47) lands in the loop, this is the measurement's script.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys

import torch
import torch.nn.functional as F

from cramming import api, load_model
from cramming.core.decode import Expected, verify
from cramming.core.loop import batch_targets, text_logits
from cramming.core.precision import autocast, autocast_model
from cramming.core.recipes import RECIPES
from cramming.files.database import Store
from cramming.files.vector_file import vectors_of
from cramming.model.texts import load_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rank", type=int, required=True, help="K, the basis' directions used")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=2.0)
    parser.add_argument("--db", default="results/encoder-training.sqlite")
    parser.add_argument("--basis", choices=("pca", "random"), default="pca",
                        help="the solutions' top K directions, or K seeded random orthonormal ones")
    parser.add_argument("--tokens", type=int, default=16,
                        help="16: four held-out passages; otherwise four book passages of that many tokens (seed 5)")
    args = parser.parse_args()
    store = Store(args.db)
    rows = [r for r in store.rows() if r["exact"] and r["vectors"] == 1]
    V = torch.stack([vectors_of(store.vector_file(r)).reshape(-1) for r in rows])
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0)).tolist()
    test, train = [i for i in order[:16] if rows[i]["length"] == 16][:4], order[16:]
    mean = V[train].mean(0)
    if args.basis == "pca":
        basis = torch.linalg.svd(V[train] - mean, full_matrices=False)[2][: args.rank]
    else:
        drawn = torch.randn(V.shape[1], args.rank, generator=torch.Generator().manual_seed(0))
        basis = torch.linalg.qr(drawn)[0].T
    lm = load_model(rows[0]["model"])
    prefix = api.prefix_token(lm.tokenizer, RECIPES["default"])
    texts = ([store.text(rows[i]) for i in test] if args.tokens == 16 else
             [p.text for p in load_samples("books", 4, args.tokens, lm.tokenizer, seed=5)])
    ids = [lm.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    _, targets, _, embeds = batch_targets(lm.model, ids)
    twin = autocast_model(lm.model, torch.device("cpu"), True)
    z = torch.nn.Parameter(torch.zeros(len(ids), args.rank))
    optimizer = torch.optim.AdamW([z], lr=args.lr, betas=(0.9, 0.9), weight_decay=0.0)
    done: dict[int, int] = {}
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = args.lr * (0.001 + 0.999 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        vectors = (mean + z @ basis).reshape(len(ids), 1, -1)
        with autocast(torch.device("cpu"), True):
            logits = text_logits(twin, vectors, embeds, prefix)
        ce = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")
        right = (logits.argmax(-1) == targets).all(1)
        for j in range(len(ids)):
            if j not in done and right[j] and verify(lm.model, vectors[j].detach(), Expected.of(ids[j]), prefix).exact:
                done[j] = step
        optimizer.zero_grad()
        ce.mean(1).sum().backward()
        optimizer.step()
    print(f"Command: {shlex.join(['python', *sys.argv])}")
    print(f"K={args.rank}: exact {len(done)}/{len(ids)} at steps {sorted(done.values())}; |z| "
          + ", ".join(f"{n:.0f}" for n in z.norm(dim=1).tolist()))


if __name__ == "__main__":
    main()
