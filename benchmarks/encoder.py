"""Starts that know the text: the encoder's start beside the prior's (`default`) and a random one (`cold`).

    python benchmarks/encoder.py --train-only                                 # train the encoder (resumable)
    python benchmarks/encoder.py --train-only --train-lengths 16,32          # on the shorter passages only
    python benchmarks/encoder.py --lengths 16,32,64,96 --samples 8 --budget 1500
    python benchmarks/encoder.py --end-to-end-steps 300 --lengths 32,64 --samples 8   # the head tuned end to end
    python benchmarks/encoder.py --train-lengths 16,32 --train-set wrong_weight=1 --lengths 64,96   # the committed
                                        # training rows (crammed by the default before wrong_weight 4), read back
    python benchmarks/encoder.py --table

The encoder is trained by encoder_train (the default model, one vector; book and recent passages of 16, 32 and
64 tokens, text seed 3, crammed with the default recipe in bf16, 1000 steps; their rows in
results/encoder-training.sqlite) and measured on held-out book passages: text seed 0, the recipe table's
passages, none of which shares text with a training passage (checked), the model computing in bf16 while
cramming (verified in float32) for every start. Each (start, length, passage) is a row
of results/encoder.sqlite. Per row of the table: exact count within the budget and median steps (a passage not
exact counts at the budget); at step 0, before any step, the median teacher-forced accuracy and how many decode
exactly already; the median cosine between the start and the vectors the run ended with. The encoder's line
gives its fit and its training cost (cramming_seconds: the wall time of its training passages' batches).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from cramming import api
from cramming.core.errors import CrammingError
from cramming.core.recipes import parse_setting
from cramming.experiments.encoder_plan import TEXT_SEED, Training
from cramming.experiments.encoder_training import train_encoder
from cramming.experiments.runner import Spec, run_local
from cramming.files.database import Store
from cramming.files.vector_file import vectors_of
from cramming.model.aliases import DEFAULT_MODEL
from cramming.model.encoder import model_encoder
from cramming.model.loading import load_model
from cramming.model.texts import load_samples
from cramming.reports.encoder_starts import STARTS, start_of, table

HERE = Path(__file__).parent


def check_held_out(lm, training: Training, samples: int, lengths: list[int]) -> None:
    """Stop if a measured passage shares text with a training passage."""
    trained = [s for length in training.lengths
               for s in load_samples("books", training.passages, length, lm.tokenizer, seed=TEXT_SEED)]
    for length in lengths:
        if any(s.shares_text(t) for s in load_samples("books", samples, length, lm.tokenizer, seed=0) for t in trained):
            sys.exit(f"error: a measured {length}-token passage overlaps a training passage")


def spec(name: str, length: int, budget: int, samples: int = 1, label: str | None = None) -> Spec:
    """The grid of one start at one length: the held-out book passages (text seed 0), its rows labelled `label`
    (the start's name by default)."""
    # The base is named, since a label is not a recipe's name: labelled "cold" without it, a table would cram the
    # default (as this did from 75fc540 until session 17, the cold rows at 64 tokens then found "done" as the
    # default's). STARTS["encoder"] names its own base.
    grid = Spec(models=[DEFAULT_MODEL], sources=["books"], lengths=[length], samples=samples, max_steps=budget,
                recipes={label or name: {"base": name, **STARTS[name]}})
    grid.check()
    return grid


def cosine(start: torch.Tensor, row: dict, store: Store) -> float:
    return torch.nn.functional.cosine_similarity(start.flatten(), vectors_of(store.vector_file(row)).flatten(),
                                                 dim=0).item()


def cosines(lm, store: Store) -> Callable[[str, int, int, str, list[dict]], str]:
    """The table's cosine cell: the median cosine between each start (today's encoder) and its final vectors."""
    def cell(start: str, length: int, budget: int, digest: str, rows: list[dict]) -> str:
        if digest != spec(start, length, budget).digest(start, lm, 1):
            return "–"  # another encoder's rows: today's encoder is not where they started
        recipe = spec(start, length, budget).recipe(start)
        begun = api.starts(lm, recipe, [api.tokenize(lm, store.text(r))[1] for r in rows], 1)
        return f"{statistics.median(cosine(s, r, store) for s, r in zip(begun, rows)):.3f}"
    return cell


def run(lm, store: Store, training: Training, args: argparse.Namespace) -> None:
    """Train the encoder (resuming), then cram the held-out passages from each start (resuming)."""
    t0 = time.process_time()
    encoder = train_encoder(lm, 1, training, store_path=Path(args.training_db), on_task=lambda k, m: print(
        f"training {k.source} {k.length} #{k.sample}: exact={m['exact']} steps={m['steps']}",
        file=sys.stderr, flush=True))
    print(f"encoder: {encoder.about}; this run trained it in {(time.process_time() - t0) / 60:.1f} CPU min",
          file=sys.stderr)
    if args.train_only:
        return
    store.record_run(shlex.join(["python", *sys.argv]))
    fit = "ridge" + (f" + {training.end_to_end_steps} end-to-end steps" if training.end_to_end_steps else "")
    for length in args.lengths:
        for name in args.starts.split(","):
            label = f"encoder: {fit}" if name == "encoder" else name  # which encoder, in words
            run_local(spec(name, length, args.budget, args.samples, label), store, device="cpu",
                      batch_size=args.samples, on_task=lambda k, m: print(
                          f"{k.recipe:>8} {k.length} #{k.sample}: exact={m['exact']} steps={m['steps']}",
                          file=sys.stderr, flush=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default=[16, 32, 64, 96], type=lambda t: [int(x) for x in t.split(",")])
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--budget", type=int, default=1500)
    parser.add_argument("--starts", default=",".join(STARTS), help="comma-separated: encoder, default, cold")
    parser.add_argument("--passages", type=int, default=Training.passages, help="training passages per source "
                                                                                 "and length")
    parser.add_argument("--train-lengths", default=list(Training.lengths),
                        type=lambda t: tuple(int(x) for x in t.split(",")), help="training passage lengths")
    parser.add_argument("--train-set", dest="train_settings", action="append", default=[], metavar="FIELD=VALUE",
                        help="a field of the recipe the training passages are crammed with (repeatable), on top "
                             "of the default's, e.g. wrong_weight=1 for the rows crammed by the default before")
    parser.add_argument("--end-to-end-steps", type=int, default=0)
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--table", action="store_true", help="print the table of stored rows, run nothing")
    parser.add_argument("--db", default=str(HERE.parent / "results" / "encoder.sqlite"))
    parser.add_argument("--training-db", default=str(HERE.parent / "results" / "encoder-training.sqlite"),
                        help="the training passages' rows (committed, so training resumes on a fresh checkout)")
    args = parser.parse_args()
    lm = load_model(DEFAULT_MODEL, "cpu")
    try:
        settings = dict(parse_setting(t) for t in args.train_settings)
    except CrammingError as e:
        sys.exit(f"error: {e}")
    training = Training(lengths=tuple(args.train_lengths), passages=args.passages, settings=settings,
                        end_to_end_steps=args.end_to_end_steps)
    check_held_out(lm, training, args.samples, args.lengths)
    store = Store(args.db)
    try:
        if not args.table:
            run(lm, store, training, args)
            if args.train_only:
                return
        encoder = model_encoder(lm, 1)
    except CrammingError as e:
        sys.exit(f"error: {e}")
    print(f"{DEFAULT_MODEL}, 1 vector, held-out book passages (text seed 0); {platform.machine()} CPU.")
    print(f"Encoder: {encoder.about} (cramming_seconds: its training passages' batches, wall time).")
    print(f"Command: {shlex.join(['python', *sys.argv])}\n")
    print(table([r for r in store.rows() if start_of(r["recipe"]) in STARTS and r["length"] in args.lengths], store,
                cosines(lm, store)))

if __name__ == "__main__":
    main()
