"""How many bits a crammed vector needs: certificates of book passages crammed with and without --margin.

    python benchmarks/bits.py --lengths 16 --samples 8 --margins 0,2          # one length (~15 min, 1 thread)
    python benchmarks/bits.py --lengths 16,32,64 --samples 8 --margins 0,2    # the study (hours)
    python benchmarks/bits.py --lengths 16,32 --margins 0 --precisions fp32,bf16   # cramming under CPU bf16
    python benchmarks/bits.py --lengths 64 --margins 2 --storages int3,int4        # crammed through k bits
    python benchmarks/bits.py --lengths 64 --margins 1 --precisions bf16 --anneal 6,5,4,3   # bits taken away in turn
    python benchmarks/bits.py --lengths 32 --samples 5 --margins 0 --precisions bf16 --text-seed 6 \\
        --ranks 128,256,full,64,32,16 --db results/basis.sqlite       # K coefficients in the model's basis

Each (length, margin, precision, storage): the passages (book text, text seed 0, the recipes benchmark's
passages) crammed as one batch into one vector of the default model with the default recipe and the budget, the
model computing in that precision while cramming (the round trip is always verified in float32 on the CPU), the
vectors trained through that storage form (compress --storage) and exact as stored, or with --ranks, K
coefficients in the model's shared basis in their place (compress --rank; full: the vectors); each exact one certified
(cramming.experiments.certify). With --anneal, the exact ones of each row are then crammed on through k bits for
each k in
turn, each stage warm-started from the last (a short run at a low learning rate), one row per stage. The table
gives, per row: exact count, median steps and the batch's wall time; the smallest greedy-path margin (median); the
effective bits (median, min-max); how many survive fp32 -> bf16 storage and a bf16-autocast model; the noise radius
(median); the smallest stored payload that still decodes exactly (the effective bits' intK) beside the text's UTF-8
bytes (medians); the utilization recomputed with the effective bits in place of the paper's assumed 16: information
gain (bits) / (d x effective bits), beside gain / (d x 16); and how many passages meet the goal: a file, as stored,
smaller than the text's UTF-8 bytes that decodes exactly in float32 and under a bf16-autocast model.

Every certified passage is a row of results/bits.sqlite (committed; its runs table says what wrote it), so a rerun
skips the rows it holds and the table (`--table`, and README's through docs/build.py) is read from the rows.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from cramming import compress, load_model
from cramming.core.forms import payload_bytes
from cramming.core.metrics import measure
from cramming.core.recipes import RECIPES, Recipe
from cramming.experiments.certify import certify
from cramming.files.database import Store
from cramming.model.aliases import DEFAULT_MODEL
from cramming.model.texts import load_samples
from cramming.reports.bits import COLUMNS, bytes_table, open_store, rank_table, table

DB = Path(__file__).parent.parent / "results" / "bits.sqlite"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="16,32,64", type=lambda t: [int(x) for x in t.split(",")])
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--margins", default="0,2", type=lambda t: [float(x) for x in t.split(",")])
    parser.add_argument("--precisions", default="fp32", type=lambda t: t.split(","),
                        help="the model's compute type while cramming: fp32, bf16 (comma-separated)")
    parser.add_argument("--storages", default="fp32", type=lambda t: t.split(","),
                        help="the forms the vectors are crammed through and stored in: fp32, bf16, int4, ...")
    parser.add_argument("--ranks", default="full", type=lambda t: [None if x == "full" else int(x) for x in
                                                                   t.split(",")],
                        help="K coefficients in the model's basis (comma-separated; full: the vectors themselves)")
    parser.add_argument("--budget", type=int, default=1500, help="step budget per text")
    parser.add_argument("--text-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--anneal", default="", type=lambda t: [int(x) for x in t.split(",") if x],
                        help="bit counts, e.g. 6,5,4,3: each exact row crammed on through each in turn, warm-started")
    parser.add_argument("--anneal-lr", type=float, default=0.03, help="the peak learning rate of each annealing stage")
    parser.add_argument("--anneal-budget", type=int, default=500, help="step budget of each annealing stage")
    parser.add_argument("--db", type=Path, default=DB, help="the results file rows go to (and are read from)")
    parser.add_argument("--table", action="store_true", help="print the table of the stored rows, run nothing")
    args = parser.parse_args()
    store = open_store(args.db)
    if args.table:
        print(tables(store))
        return
    torch.set_num_threads(args.threads)
    store.record_run(shlex.join(["python", *sys.argv]))
    lm = load_model(DEFAULT_MODEL, "cpu")
    recipe = replace(RECIPES["default"], max_steps=args.budget)
    tmp = Path(tempfile.mkdtemp())
    for length in args.lengths:
        texts = [s.text for s in load_samples("books", args.samples, length, lm.tokenizer, args.text_seed)]
        for margin, precision, form, rank in [(m, p, f, k) for m in args.margins for p in args.precisions
                                              for f in args.storages for k in args.ranks]:
            run = recipe.override({"precision": precision, **({"rank": rank} if rank else {})}, "default")
            if stored(store, length, margin, precision, form, run) == len(texts):
                continue  # a rerun resumes: this row is done
            crammed = compress(texts, lm, n_vectors=1, recipe=run, min_margin=margin, storage_form=form)
            save(store, lm, tmp, length, margin, precision, form, run, crammed)
            refine = recipe.override({"precision": precision, "lr": args.anneal_lr, "max_steps": args.anneal_budget},
                                     "default")
            for k in args.anneal:  # each exact one crammed on through k bits, from where the last form left it
                crammed = [c for c in crammed if c.exact]
                if not crammed:
                    break
                crammed = compress([c.text for c in crammed], lm, n_vectors=1, recipe=refine, min_margin=margin,
                                   storage_form=f"int{k}", warm_start=[c.vectors for c in crammed])
                save(store, lm, tmp, length, margin, precision, f"int{k}, annealed", refine, crammed)
    print(tables(store))


def tables(store: Store) -> str:
    """The certificates' table, and where there are rows crammed in the model's basis, the tables by K and of bytes."""
    if store.db.execute("SELECT COUNT(*) FROM certificates WHERE rank IS NOT NULL").fetchone()[0]:
        return "\n\n".join([table(store), rank_table(store), bytes_table(store)])
    return table(store)


def settings(recipe) -> str:
    """A recipe as a row keys it: its settings as run, as sorted JSON."""
    return json.dumps(recipe.to_dict(), sort_keys=True)


def stored(store: Store, length: int, margin: float, precision: str, form: str, recipe) -> int:
    """The certificates already stored for a group, its recipe known by digest (settings stored before a field was
    added or renamed spell it otherwise)."""
    found = store.db.execute("SELECT recipe_settings FROM certificates WHERE length = ? AND margin = ? AND "
                             "precision = ? AND storage = ?", (length, margin, precision, form)).fetchall()
    return sum(Recipe.from_dict(json.loads(s)).digest() == recipe.digest() for (s,) in found)


def save(store: Store, lm, tmp: Path, length: int, margin: float, precision: str, form: str, recipe,
         crammed: list) -> None:
    """Certify the exact ones of a batch and store a row per passage (the batch in one transaction)."""
    rows = []
    for i, c in enumerate(crammed):
        cert = certify(c.save(tmp / f"{length}-{margin}-{precision}-{form}-{i}.safetensors"), model=lm) \
            if c.exact else None
        bits = cert.effective_bits if cert else None
        measured = measure(c, lm)
        rows.append((length, margin, precision, form, i, settings(recipe), c.text,
                     c.exact, c.steps, c.seconds, measured.information_gain_bits if c.exact else None,
                     cert.min_margin if cert else None, bits, cert.exact["bf16"] if cert else None,
                     cert.exact["bf16 model"] if cert else None, cert.noise_radius if cert else None,
                     cert.payload_bytes[f"int{bits}"] if bits else None,
                     payload_bytes(*c.vectors.shape, cert.storage) if cert else None,
                     cert.text_bytes if cert else None, lm.d_model, recipe.rank, measured.ce_without_bits))
    with store.db:
        store.db.executemany(f"INSERT OR REPLACE INTO certificates VALUES ({', '.join('?' * len(COLUMNS))})", rows)


if __name__ == "__main__":
    main()
