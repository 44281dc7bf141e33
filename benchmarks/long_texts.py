"""Long texts, no sample left behind: recipes on a tuning set and a test set of passages no choice looked at.

    python benchmarks/long_texts.py --sets                       # the passages of both sets
    python benchmarks/long_texts.py --lengths 64 --budget 3000   # default and cold on the tuning set
    python benchmarks/long_texts.py --recipes default,cold --set-name test --lengths 64,96,128 --budget 5000
    python benchmarks/long_texts.py --variant r1=default --set r1.period=1500 --recipes r1 --lengths 64
    python benchmarks/long_texts.py --variant gentle=default --set gentle.restart_decay=0.3 --recipes gentle \\
        --only alice=1,2,9          # only the passages a change after step 1000 can change
    python benchmarks/long_texts.py --table                      # the table of every stored row

The sets: 10 passages of Alice's Adventures in Wonderland (book prose; `alice`) and 10 Wikipedia leads of
2025-2026 (`recent`) per length, one vector of the default model. The tuning set is text seed 1, the test set
text seed 10, the first seed after 1 whose passages share no text with the tuning set's at 64, 96 and 128 tokens
(checked on every run; --sets prints both sets). The `alice` passages of one set are the same passages at every
length (a shorter one is the first tokens of a longer one); the `recent` ones are not: that source draws whole
leads long enough for the length asked, so its passages at 64, 96 and 128 tokens are different documents, and
no comparison across lengths holds passage by passage for them.
Every (recipe as run, length, passage) is a row of results/long-texts.sqlite (committed), so a run resumes
where it stopped. Because the default's schedule does not depend on the budget, a run at 5000 steps also says
which passages a 1500- or 3000-step budget would have got back: the table counts exact passages within each.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
from pathlib import Path

from cramming.core.errors import CrammingError
from cramming.core.recipes import RECIPES
from cramming.experiments.long_texts import PASSAGES, SETS, SOURCES, check_apart, set_spec
from cramming.experiments.runner import recipe_tables, run_local
from cramming.files.database import Store
from cramming.model.aliases import DEFAULT_MODEL
from cramming.model.loading import load_model
from cramming.model.texts import load_samples
from cramming.reports.long_texts import long_text_rows, recipes_in, table

HERE = Path(__file__).parent


def only(choices: list[str]) -> dict[str, list[int]]:
    """--only SOURCE=i,j,... (repeatable) -> the passages to run per source; none given: all of both sources."""
    if not choices:
        return {source: list(range(PASSAGES)) for source in SOURCES}
    chosen = {}
    for text in choices:
        source, _, numbers = text.partition("=")
        try:
            chosen[source] = [int(n) for n in numbers.split(",")]
        except ValueError:
            raise CrammingError(f"--only takes SOURCE=i,j,..., got {text!r}") from None
        if source not in SOURCES or not all(0 <= n < PASSAGES for n in chosen[source]):
            raise CrammingError(f"--only takes a source of {', '.join(SOURCES)} and passages 0-{PASSAGES - 1}")
    return chosen


def show_sets(lengths: list[int], tokenizer) -> None:
    for name, seed in SETS.items():
        for source in SOURCES:
            print(f"\n## {name} set, {source}, text seed {seed}, {max(lengths)} tokens (shorter lengths: their "
                  f"first tokens)")
            for s in load_samples(source, PASSAGES, max(lengths), tokenizer, seed=seed):
                print(f"{s.index}. {s.text[:160]!r}...")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", action="store_true", help="print both sets' passages (checked apart), run nothing")
    parser.add_argument("--set-name", choices=tuple(SETS), default="tuning", help="the set to run on")
    parser.add_argument("--recipes", default="default,cold", help="comma-separated recipe names")
    parser.add_argument("--lengths", default=[64], type=lambda t: [int(x) for x in t.split(",")])
    parser.add_argument("--budget", type=int, default=3000, help="step budget per passage")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=BASE",
                        help="a variant of recipe BASE under NAME, its changes from --set (repeatable)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="NAME.FIELD=VALUE",
                        help="change a field of a --variant (repeatable; values are JSON where they parse)")
    parser.add_argument("--only", action="append", default=[], metavar="SOURCE=i,j,...",
                        help="run only these passages of a source (repeatable), e.g. those a restart changes")
    parser.add_argument("--batch-size", type=int, default=PASSAGES, help="passages crammed together")
    parser.add_argument("--db", default=str(HERE.parent / "results" / "long-texts.sqlite"))
    parser.add_argument("--table", action="store_true", help="print the table of stored rows, run nothing")
    args = parser.parse_args()
    tokenizer = load_model(DEFAULT_MODEL, "cpu").tokenizer
    try:
        tables = recipe_tables(args.variant, args.settings)
        check_apart(sorted({64, 96, 128, *args.lengths}), tokenizer)
        if args.sets:
            show_sets(sorted({64, 96, 128, *args.lengths}), tokenizer)
            return
        Path(args.db).parent.mkdir(parents=True, exist_ok=True)
        store = Store(args.db)
        names = args.recipes.split(",")
        unknown = [n for n in names if n not in tables and n not in RECIPES]
        if unknown:  # before any run: a variant's name must not hold a comma, which --recipes splits on
            sys.exit(f"error: no recipe or --variant named {unknown[0]!r} (names are comma-separated)")
        if not args.table:
            store.record_run(shlex.join(["python", *sys.argv]))
            chosen = only(args.only)
            for length in args.lengths:
                for name in names:
                    for source, passages in chosen.items():
                        spec = set_spec(args.set_name, source, passages, length, name, tables.get(name, {}),
                                        args.budget)
                        run_local(spec, store, device="cpu", batch_size=args.batch_size, on_task=lambda k, m: print(
                            f"{k.recipe:>12} {k.source} {k.length} tokens passage {k.sample}: exact={m['exact']} "
                            f"steps={m['steps']}", file=sys.stderr, flush=True))
    except CrammingError as e:
        sys.exit(f"error: {e}")
    rows = long_text_rows(store)
    print(f"{DEFAULT_MODEL}, 1 vector; {PASSAGES} passages each of alice (book prose) and recent per set and "
          f"length; {platform.machine()} CPU.")
    print(f"Command: {shlex.join(['python', *sys.argv])}\n")
    print(table(rows))
    print("\n" + recipes_in(rows))


if __name__ == "__main__":
    main()
