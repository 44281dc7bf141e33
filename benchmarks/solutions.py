"""Where crammed vectors end: norms, pairwise cosines and the shared part of one recipe's stored solutions.

    python benchmarks/solutions.py --db benchmarks/results/recipes-full.sqlite --recipe default
    python benchmarks/solutions.py --db results/encoder-training.sqlite --recipe "default, bf16" --pca 16

Reads the vector files a results database holds (benchmarks/recipes.py writes them) and compares them with
the model's token embeddings. The mean of the solutions, and which coordinates keep one sign across texts, say
how much of a solution does not depend on its text: the part cramming.model.prior starts from.

--pca H (a shared low-dimensional basis, issue 47): the principal components of all the exact solutions but H drawn
at random (seed 0); the variance the top K explain, and, for each of the H held out, its projection onto the mean
plus the top K: how far it moves (relative to the solution's norm) and whether it still decodes exactly.
"""

from __future__ import annotations

import argparse
import shlex
import sys

import torch

from cramming.api import prefix_token
from cramming.core.decode import Expected, verify
from cramming.core.recipes import stored
from cramming.files.database import Store
from cramming.files.vector_file import vectors_of
from cramming.model.aliases import DEFAULT_MODEL
from cramming.model.loading import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True)
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="the model's name as rows store it")
    parser.add_argument("--pca", type=int, metavar="H", help="hold out H solutions, fit the basis on the rest")
    args = parser.parse_args()
    store = Store(args.db)
    rows = [r for r in store.rows() if r["recipe"] == args.recipe and r["model"] == args.model and r["vectors"] == 1]
    if len(rows) < 2:
        sys.exit(f"{args.db} holds {len(rows)} one-vector rows of {args.recipe!r} on {args.model}; need 2")
    V = torch.stack([vectors_of(store.vector_file(r)).reshape(-1) for r in rows])
    unit = V / V.norm(dim=1, keepdim=True)
    cos = unit @ unit.T
    n = len(V)
    mean = V.mean(0)
    agree = (torch.sign(V) == torch.sign(mean)).float().mean(0)
    lm = load_model(args.model)
    embeddings = lm.model.get_input_embeddings().weight.float()
    print(f"Command: {shlex.join(['python', *sys.argv])}\n")
    print("| solutions | norm min / median / max | mean pairwise cosine | norm of their mean | "
          "coordinates with one sign in every solution | token embedding norm (mean) |")
    print("|---|---|---|---|---|---|")
    norms = V.norm(dim=1)
    print(f"| {n} ({args.recipe}; lengths {sorted({r['length'] for r in rows})}) | {norms.min():.1f} / "
          f"{norms.median():.1f} / {norms.max():.1f} | {(cos.sum() - n) / (n * n - n):.3f} | {mean.norm():.1f} | "
          f"{int((agree == 1).sum())} of {V.shape[1]} | {embeddings.norm(dim=1).mean():.2f} |")

    if args.pca:
        pca(store, [r for r in rows if r["exact"]], lm, args.pca)


def pca(store: Store, rows: list[dict], lm, held_out: int) -> None:
    """The basis of all exact solutions but `held_out`, and the held-out ones projected onto it."""
    V = torch.stack([vectors_of(store.vector_file(r)).reshape(-1) for r in rows])
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0)).tolist()
    test, train = order[:held_out], order[held_out:]
    mean = V[train].mean(0)
    _, S, basis = torch.linalg.svd(V[train] - mean, full_matrices=False)
    explained = (S ** 2).cumsum(0) / (S ** 2).sum()
    print(f"\nA basis of {len(train)} exact solutions, {held_out} held out.\n")
    print("| K | variance explained | held out, projected: median distance / norm | exact |\n|---|---|---|---|")
    for K in sorted({8, 16, 32, 64, len(train) - 1} & set(range(1, len(train)))):
        B = basis[:K]
        moved, exact = [], 0
        for i in test:
            projected = mean + ((V[i] - mean) @ B.T) @ B
            moved.append(((projected - V[i]).norm() / V[i].norm()).item())
            ids = lm.tokenizer(store.text(rows[i]), add_special_tokens=False)["input_ids"]
            prefix = prefix_token(lm.tokenizer, stored(rows[i]["settings"]))
            exact += verify(lm.model, projected.reshape(1, -1), Expected.of(ids), prefix).exact
        print(f"| {K} | {explained[K - 1]:.3f} | {sorted(moved)[len(moved) // 2]:.3f} | {exact}/{held_out} |")


if __name__ == "__main__":
    main()
