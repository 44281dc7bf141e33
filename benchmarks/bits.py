"""How many bits a crammed vector needs: certificates of book passages crammed with and without --margin.

    python benchmarks/bits.py --lengths 16 --samples 8 --margins 0,2          # one length (~15 min, 1 thread)
    python benchmarks/bits.py --lengths 16,32,64 --samples 8 --margins 0,2    # the study (hours)
    python benchmarks/bits.py --lengths 16,32 --margins 0 --precisions fp32,bf16   # cramming under CPU bf16
    python benchmarks/bits.py --lengths 64 --margins 2 --storages int3,int4        # crammed through k bits
    python benchmarks/bits.py --lengths 64 --margins 1 --precisions bf16 --anneal 6,5,4,3   # bits taken away in turn

Each (length, margin, precision, storage): the passages (book text, text seed 0, the recipes benchmark's
passages) crammed as one batch into one vector of the default model with the default recipe and the budget, the
model computing in that precision while cramming (the round trip is always verified in float32 on the CPU), the
vectors trained through that storage form (compress --storage) and exact as stored; each exact one certified
(cramming.certify). With --anneal, the exact ones of each row are then crammed on through k bits for each k in
turn, each stage warm-started from the last (a short run at a low learning rate), one row per stage. The table
gives, per row: exact count, median steps and the batch's wall time; the smallest greedy-path margin (median); the
effective bits (median, min-max); how many survive fp32 -> bf16 storage and a bf16-autocast model; the noise radius
(median); the smallest stored payload that still decodes exactly (the effective bits' intK) beside the text's UTF-8
bytes (medians); the utilization recomputed with the effective bits in place of the paper's assumed 16: information
gain (bits) / (d x effective bits), beside gain / (d x 16); and how many passages meet the goal: a file, as stored,
smaller than the text's UTF-8 bytes that decodes exactly in float32 and under a bf16-autocast model.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from cramming import compress, load_model
from cramming.certify import certify
from cramming.metrics import measure
from cramming.models import DEFAULT_MODEL
from cramming.recipes import RECIPES
from cramming.storage import payload_bytes
from cramming.texts import load_samples


def median(values: list[float]) -> str:
    return f"{statistics.median(values):g}" if values else "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="16,32,64", type=lambda t: [int(x) for x in t.split(",")])
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--margins", default="0,2", type=lambda t: [float(x) for x in t.split(",")])
    parser.add_argument("--precisions", default="fp32", type=lambda t: t.split(","),
                        help="the model's compute type while cramming: fp32, bf16 (comma-separated)")
    parser.add_argument("--storages", default="fp32", type=lambda t: t.split(","),
                        help="the forms the vectors are crammed through and stored in: fp32, bf16, int4, ...")
    parser.add_argument("--budget", type=int, default=1500, help="step budget per text")
    parser.add_argument("--text-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--anneal", default="", type=lambda t: [int(x) for x in t.split(",") if x],
                        help="bit counts, e.g. 6,5,4,3: each exact row crammed on through each in turn, warm-started")
    parser.add_argument("--anneal-lr", type=float, default=0.03, help="the peak learning rate of each annealing stage")
    parser.add_argument("--anneal-budget", type=int, default=500, help="step budget of each annealing stage")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model(DEFAULT_MODEL, "cpu")
    recipe = replace(RECIPES["default"], max_steps=args.budget)
    tmp = Path(tempfile.mkdtemp())
    print(f"{lm.name}, 1 vector, default recipe, {args.budget} steps; book passages, text seed {args.text_seed}; "
          f"{platform.machine()} CPU, {args.threads} thread(s).\nCommand: {shlex.join(['python', *sys.argv])}\n")
    print("| tokens | --margin | precision | storage | exact | median steps | wall (s) | min margin "
          "| effective bits (min-max) | survive bf16 storage | survive bf16 model | noise radius "
          "| smallest exact file / text (bytes) | utilization at 16 bits / at effective bits "
          "| the goal: file as stored smaller than the text, exact in fp32 and under a bf16 model |")
    print("|" + "---|" * 15)
    for length in args.lengths:
        texts = [s.text for s in load_samples("books", args.samples, length, lm.tokenizer, args.text_seed)]
        for margin, precision, form in [(m, p, f) for m in args.margins for p in args.precisions
                                        for f in args.storages]:
            crammed = compress(texts, lm, n_vectors=1, recipe=recipe.override({"precision": precision}, "default"),
                               min_margin=margin, storage_form=form)
            row(lm, tmp, length, margin, precision, form, crammed, len(texts))
            refine = recipe.override({"precision": precision, "lr": args.anneal_lr, "max_steps": args.anneal_budget},
                                     "default")
            for k in args.anneal:  # each exact one crammed on through k bits, from where the last form left it
                crammed = [c for c in crammed if c.exact]
                if not crammed:
                    break
                crammed = compress([c.text for c in crammed], lm, n_vectors=1, recipe=refine, min_margin=margin,
                                   storage_form=f"int{k}", warm_start=[c.vectors for c in crammed])
                row(lm, tmp, length, margin, precision, f"int{k}, annealed", crammed, len(texts))


def row(lm, tmp: Path, length: int, margin: float, precision: str, form: str, crammed: list, n_texts: int) -> None:
    """Certify the exact ones of a batch and print the table's row for it."""
    exact = [c for c in crammed if c.exact]
    certs = [certify(c.save(tmp / f"{length}-{margin}-{precision}-{form}-{i}.safetensors"), model=lm)
             for i, c in enumerate(exact)]
    gains = [measure(c, lm).information_gain_bits for c in exact]
    bits = [c.effective_bits for c in certs if c.effective_bits]
    files = [c.payload_bytes[f"int{c.effective_bits}"] for c in certs if c.effective_bits]
    d = lm.d_model
    goal = sum(c.exact["stored"] and c.exact["bf16 model"] and payload_bytes(1, d, c.storage) < c.text_bytes
               for c in certs)
    print(f"| {length} | {margin:g} | {precision} | {form} | {len(exact)}/{n_texts} | "
          f"{median([c.steps for c in exact])} | {max(c.seconds for c in crammed):.0f} | "
          f"{median([c.min_margin for c in certs])} | {median(bits)} ({min(bits, default='–')}-"
          f"{max(bits, default='–')}) | {sum(c.exact['bf16'] for c in certs)}/{len(certs)} | "
          f"{sum(c.exact['bf16 model'] for c in certs)}/{len(certs)} | "
          f"{median([c.noise_radius or 0.0 for c in certs])} | {median(files)} / "
          f"{median([c.text_bytes for c in certs])} | {median([g / (d * 16) for g in gains])} / "
          f"{median([g / (d * c.effective_bits) for g, c in zip(gains, certs) if c.effective_bits])} | "
          f"{goal}/{n_texts} |", flush=True)

if __name__ == "__main__":
    main()
