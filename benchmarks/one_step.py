"""Back in one forward pass: the one-step horizons beside the greedy ones, and where the copies look.

    python benchmarks/one_step.py                 # results/one-step.sqlite and results/capacity.sqlite
    python benchmarks/one_step.py --out docs/one-step

The rows are the horizon searches of examples/capacity/smollm2-2v-one-step.toml (book passages, one-step),
smollm2-2v-random.toml (random words, greedy and one-step), smollm2-1v-shared-copy.toml (both, one-step with the
model's shared copy) and, from results/capacity.sqlite, smollm2-2v-default.toml and smollm2-1v-default.toml (greedy):
the default model, default@7 with the model computing in bf16 (verified in float32), 1000 steps a try, each try
warm-started from the last exact length's vectors. Per passage and way back: its horizon (the longest exact length,
the shortest failed one), the text's cross-entropy under the model at that length (the bits the vectors must carry
at least for greedy decoding), and the steps of the tries at 32 and 64 tokens.

Then, for each book passage's longest exact one-step vectors, the model in float32 with eager attention reads
[prefix ; e ; m x T] once: per layer, the share of the copies' attention (over heads and copy positions) on the
prefix token, on the text vector e, and on the copies themselves (earlier ones and its own). The figure draws it,
with the share on e by copy position in the layer that looks at e most.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from cramming import api  # noqa: E402
from cramming.core.recipes import stored  # noqa: E402
from cramming.files.database import Store  # noqa: E402
from cramming.files.vector_file import vectors_of  # noqa: E402
from cramming.model.loading import load_model  # noqa: E402
from cramming.reports.one_step import attention_shares, comparison_rows, table, way  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default=str(ROOT / "results" / "one-step.sqlite"))
    parser.add_argument("--greedy-books", default=str(ROOT / "results" / "capacity.sqlite"),
                        help="the greedy two-vector book horizons")
    parser.add_argument("--out", default=str(ROOT / "docs" / "one-step"))
    args = parser.parse_args()
    for path in (args.db, args.greedy_books):
        if not Path(path).is_file():
            sys.exit(f"error: no database at {path}")
    rows = comparison_rows(Store(args.db), Store(args.greedy_books))
    one_step = [r for r in rows if way(r) == "one-step, 2 vectors"]  # each file's own copied vector, its last
    print(f"Two vectors of the default model, default@7 in bf16 (verified in float32), 1000 steps a try; "
          f"{platform.machine()} CPU.")
    print(f"Command: {shlex.join(['python', *sys.argv])}\n")
    print(table(rows))

    lm = load_model(one_step[0]["model"], "cpu")
    lm.model.set_attn_implementation("eager")  # sdpa gives no attention weights
    prefix = api.prefix_token(lm.tokenizer, stored(one_step[0]["settings"]))
    shares = []
    for sample in sorted({r["sample"] for r in one_step if r["source"] == "books"}):
        rs = [r for r in one_step if r["source"] == "books" and r["sample"] == sample and r["exact"]]
        best = max(rs, key=lambda r: r["length"])
        shares.append((sample, best["length"], attention_shares(lm, vectors_of(Store(args.db).vector_file(best)),
                                                               best["length"], prefix)))
    mean = torch.stack([s.mean(-1) for _, _, s in shares]).mean(0)  # [layers, 3]
    print("\nWhere the copies look (book passages, their longest exact one-step vectors; mean over heads, copy "
          "positions and passages): share of attention per layer on the prefix / the text vector e / the copies")
    print("\n| layer | prefix | e | copies |\n|---|---|---|---|")
    for layer, (p, e, c) in enumerate(mean.tolist()):
        print(f"| {layer} | {p:.2f} | {e:.2f} | {c:.2f} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for i, name in enumerate(("prefix token", "text vector e", "the copies of m")):
        axes[0].plot(mean[:, i].numpy(), marker=".", label=name)
    axes[0].set_xlabel("layer")
    axes[0].set_ylabel("share of the copies' attention")
    axes[0].set_title("where the copies look, per layer (3 book passages)")
    axes[0].legend()
    top = int(mean[:, 1].argmax())
    for sample, length, s in shares:
        axes[1].plot(s[top, 1].numpy(), lw=1, label=f"passage {sample} ({length} tokens)")
    axes[1].set_xlabel("copy position (the text token it predicts)")
    axes[1].set_ylabel("share of attention on e")
    axes[1].set_title(f"layer {top}, the one that looks at e most")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(out / "attention.png", dpi=110)
    print(f"\nfigure: {out / 'attention.png'}")


if __name__ == "__main__":
    main()
