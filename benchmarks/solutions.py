"""Where crammed vectors end: norms, pairwise cosines and the shared part of one recipe's stored solutions.

    python benchmarks/solutions.py --db benchmarks/results/recipes-full.sqlite --recipe default

Reads the vector files a results database holds (benchmarks/recipes.py writes them) and compares them with
the model's token embeddings. The mean of the solutions, and which coordinates keep one sign across texts, say
how much of a solution does not depend on its text: the part cramming.model.prior starts from.
"""

from __future__ import annotations

import argparse
import shlex
import sys

import torch

from cramming.files.database import Store
from cramming.files.vector_file import vectors_of
from cramming.model.aliases import DEFAULT_MODEL
from cramming.model.loading import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True)
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="the model's name as rows store it")
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
    embeddings = load_model(args.model).model.get_input_embeddings().weight.float()
    print(f"Command: {shlex.join(['python', *sys.argv])}\n")
    print("| solutions | norm min / median / max | mean pairwise cosine | norm of their mean | "
          "coordinates with one sign in every solution | token embedding norm (mean) |")
    print("|---|---|---|---|---|---|")
    norms = V.norm(dim=1)
    print(f"| {n} ({args.recipe}; lengths {sorted({r['length'] for r in rows})}) | {norms.min():.1f} / "
          f"{norms.median():.1f} / {norms.max():.1f} | {(cos.sum() - n) / (n * n - n):.3f} | {mean.norm():.1f} | "
          f"{int((agree == 1).sum())} of {V.shape[1]} | {embeddings.norm(dim=1).mean():.2f} |")


if __name__ == "__main__":
    main()
