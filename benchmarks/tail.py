"""The failure tail: where the passages that fail or finish late stall, from the rows long_texts.py stored.

    python benchmarks/tail.py --recipe ww4 --length 64                        # the tuning set's rows
    python benchmarks/tail.py --recipe ww4 --length 128 --set-name test --late 2500 --out docs/long-texts

For every passage of one recipe, set and length: its history (teacher-forced accuracy and loss per step,
thinned to at most 200 points) against its cosine restarts (the recipe's schedule, moved by the stall rule's early
restarts its vector file records), and, for the passages that failed or took
more than --late steps, the stored best vectors read again: which positions stay wrong, each position's lead
(the right token's logit minus the best other one), and what each restart did to the accuracy (before it, the
lowest within 200 steps after it, and the best before the next one). Prints a table per passage and draws two
figures (histories; leads of the late and failed passages) into --out.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from cramming import api  # noqa: E402
from cramming.core.loop import target_lead, text_logits  # noqa: E402
from cramming.core.recipes import Recipe  # noqa: E402
from cramming.experiments.long_texts import SETS  # noqa: E402
from cramming.files.database import Store  # noqa: E402
from cramming.files.vector_file import vectors_of  # noqa: E402
from cramming.model.aliases import DEFAULT_MODEL  # noqa: E402
from cramming.model.loading import load_model  # noqa: E402

HERE = Path(__file__).parent


def leads(lm, recipe: Recipe, vectors: torch.Tensor, text: str) -> tuple[list[int], torch.Tensor]:
    """(the text's token ids, each position's lead of the right token over the best other one)."""
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    target = torch.tensor([ids])
    with torch.no_grad():
        embeds = lm.model.get_input_embeddings()(target)
        logits = text_logits(lm.model, vectors[None].float(), embeds, api.prefix_token(lm.tokenizer, recipe))[0]
    return ids, target_lead(logits, target[0])


def around(history: list[list[float]], restart: int, until: int) -> tuple[float, float, float]:
    """Accuracy just before a restart, its lowest within 200 steps after, and its best before `until`."""
    before = [a for s, _, a in history if s < restart]
    after = [a for s, _, a in history if restart <= s < restart + 200]
    later = [a for s, _, a in history if restart <= s < until]
    return (before[-1] if before else float("nan"), min(after, default=float("nan")),
            max(later, default=float("nan")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--set-name", choices=tuple(SETS), default="tuning")
    parser.add_argument("--late", type=int, default=1000, help="a passage exact after more steps than this is late")
    parser.add_argument("--db", default=str(HERE.parent / "results" / "long-texts.sqlite"))
    parser.add_argument("--out", default=str(HERE.parent / "docs" / "long-texts"))
    args = parser.parse_args()
    store = Store(args.db)
    rows = sorted((r for r in store.rows() if r["recipe"] == args.recipe and r["length"] == args.length
                   and r["text_seed"] == SETS[args.set_name] and r["vectors"] == 1),
                  key=lambda r: (r["source"], r["sample"]))
    if not rows:
        sys.exit(f"error: no rows of {args.recipe!r} at {args.length} tokens in the {args.set_name} set")
    recipe = Recipe.from_dict(store.settings(rows[0]))
    budget = rows[0]["budget"]
    lm = load_model(DEFAULT_MODEL, "cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.set_name}-{args.length}-{args.recipe.replace(', ', '-').replace(' ', '-')}"

    print(f"{args.recipe} at {args.length} tokens, {args.set_name} set, budget {budget}; the schedule restarts at "
          f"{recipe.restarts(budget)}")
    print(f"Command: {shlex.join(['python', *sys.argv])}\n")
    print("| passage | exact | steps | best accuracy | wrong positions (token) | smallest lead | "
          "at each restart: accuracy before / lowest after / best after |")
    print("|" + "---|" * 7)
    tail = []
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for r in rows:
        history = store.history(r)
        marks = recipe.restarts(budget, store.metadata(r).get("restarts") or [])  # none recorded: the schedule's
        steps = [h[0] for h in history]
        late = not r["exact"] or r["steps"] > args.late
        ax = axes[int(r["source"] != "alice")]
        ax.plot(steps, [h[2] for h in history], lw=1.2 if late else 0.6,
                color="C3" if not r["exact"] else "C1" if late else "0.7",
                label=f"{r['sample']}" if late else None)
        if not late:
            continue
        vectors = vectors_of(store.vector_file(r))
        ids, lead = leads(lm, recipe, vectors, store.text(r))
        wrong = [i for i, v in enumerate(lead.tolist()) if v <= 0]
        tail.append((r, lead))
        changes = [around(history, m, nxt) for m, nxt in zip(marks, marks[1:] + [budget + 1])]
        shown = ", ".join(f"{i} ({lm.tokenizer.decode([ids[i]])!r})" for i in wrong[:6]) + (" ..." if len(wrong) > 6
                                                                                              else "")
        print(f"| {r['source']} {r['sample']} | {'yes' if r['exact'] else 'no'} | {r['steps']} | "
              f"{r['accuracy_with']:.3f} | {shown or '–'} | {lead.min().item():.2f} | "
              + "; ".join(f"{m}: {b:.3f} / {lo:.3f} / {hi:.3f}" for m, (b, lo, hi) in zip(marks, changes)) + " |")
    for ax, title in zip(axes, ("alice (book prose)", "recent")):
        for m in recipe.restarts(budget):
            ax.axvline(m, color="0.5", ls="--", lw=0.8)
        ax.set_title(f"{title}: failed red, late (> {args.late} steps) orange")
        ax.set_xlabel("step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(title="passage", fontsize=7)
    axes[0].set_ylabel("teacher-forced accuracy")
    fig.suptitle(f"{args.recipe}, {args.length} tokens, {args.set_name} set, budget {budget}")
    fig.tight_layout()
    fig.savefig(out / f"{stem}-histories.png", dpi=110)
    if tail:
        fig, ax = plt.subplots(figsize=(12, 4))
        for r, lead in tail:
            ax.plot(lead.clamp(-10, 10).numpy(), marker=".", lw=0.8,
                    label=f"{r['source']} {r['sample']} ({'exact' if r['exact'] else 'failed'}, {r['steps']} steps)")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xlabel("token position")
        ax.set_ylabel("lead of the right token (logits, clipped to ±10)")
        ax.set_title("late and failed passages, with their best vectors")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / f"{stem}-leads.png", dpi=110)
    print(f"\nfigures: {out}/{stem}-*.png")


if __name__ == "__main__":
    main()
