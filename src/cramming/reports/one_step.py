"""Back in one forward pass (the one-step decoder): its horizons beside greedy decoding's, and where the copies look.

benchmarks/one_step.py prints both; docs/build.py puts the horizon table in docs/results.md.
"""

from __future__ import annotations

import torch

from cramming.core.decode import one_step_inputs
from cramming.core.recipes import stored
from cramming.files.database import Store

WAYS = ("greedy, 1 vector", "one-step, shared copy, 1 vector", "greedy, 2 vectors", "one-step, 2 vectors")


def way(row: dict) -> str:
    """How a row's text comes back, and from how many stored vectors: "one-step, shared copy, 1 vector"."""
    recipe = stored(row["settings"])
    shared = ", shared copy" if recipe.shared_copy else ""
    return f"{recipe.decoder}{shared}, {row['vectors']} vector{'s' if row['vectors'] > 1 else ''}"


def comparison_rows(one_step: Store, capacity: Store) -> list[dict]:
    """The rows to compare: one-step.sqlite's (one-step on books; greedy and one-step on random words) and
    capacity.sqlite's greedy horizons of the same passages (the first three of each source) in one and two vectors,
    at the same budget (1000 steps a try) and precision (bf16)."""
    sources = {r["source"] for r in one_step.rows()}
    return one_step.rows() + [
        r for r in capacity.rows() if r["vectors"] in (1, 2) and r["source"] in sources and r["sample"] < 3
        and r["budget"] == 1000 and r["settings"].get("precision") == "bf16"]


def horizons(rows: list[dict]) -> dict[tuple, dict]:
    """(source, sample, way) -> its horizon: the longest exact length, the shortest length no try got back (None
    while the search has not failed yet), the text's cross-entropy (bits, the model without vectors) at the
    longest exact length, and the steps of the exact tries at 32 and 64 tokens."""
    by: dict[tuple, list[dict]] = {}
    for r in rows:
        by.setdefault((r["source"], r["sample"], way(r)), []).append(r)
    out = {}
    for key, rs in sorted(by.items()):
        exact = {r["length"]: r for r in rs if r["exact"]}
        best = exact[max(exact)] if exact else None
        # above the longest exact length: a shorter failure was a warm start's, or a passage that comes back
        # longer but not shorter (a horizon is not monotone in the length)
        failed = [r["length"] for r in rs if r["length"] > (best["length"] if best else 0)]
        out[key] = {"exact": best["length"] if best else 0, "failed": min(failed, default=None),
                    "ce_bits": best["ce_without_bits"] if best else None,
                    "steps": {n: exact[n]["steps"] for n in (32, 64) if n in exact}}
    return out


def table(rows: list[dict]) -> str:
    """Two tables, one line per passage and a column per way back (WAYS, those with rows): the horizon (the longest
    exact length / the shortest failed one, and the text's cross-entropy at the longest exact one); then the steps
    of the exact tries at 32 and 64 tokens."""
    found = horizons(rows)
    ways = [w for w in WAYS if any(k[2] == w for k in found)]
    passages = sorted({k[:2] for k in found})

    def horizon(h: dict | None) -> str:
        return f"{h['exact']} / {h['failed'] or 'not yet'} ({h['ce_bits']:.0f} bits)" if h and h["exact"] else \
            ("none exact" if h else "not run")

    def steps(h: dict | None) -> str:
        return ", ".join(str(int(h["steps"][n])) if n in h["steps"] else "–" for n in (32, 64)) if h else "not run"

    lines = []
    for title, cell in (("horizon: exact / failed at (the text's cross-entropy at the exact one)", horizon),
                        ("steps to exact at 32, 64 tokens", steps)):
        lines += ["| source | passage | " + " | ".join(f"{w}: {title}" for w in ways) + " |",
                  "|" + "---|" * (2 + len(ways))]
        lines += [f"| {source} | {sample} | " + " | ".join(cell(found.get((source, sample, w))) for w in ways) + " |"
                  for source, sample in passages]
        lines.append("")
    return "\n".join(lines[:-1])


def attention_shares(lm, vectors: torch.Tensor, n_tokens: int, prefix_id: int | None) -> torch.Tensor:
    """[layers, 3, T]: per layer and copy position, the attention share (mean over heads) on the prefix, on the text
    vectors and on the copies."""
    x = one_step_inputs(lm.model, vectors[None].float(), n_tokens, prefix_id)
    with torch.no_grad():
        attentions = lm.model(inputs_embeds=x, use_cache=False, output_attentions=True).attentions
    p, n = (1 if prefix_id is not None else 0), vectors.shape[0] - 1
    out = []
    for a in attentions:  # [1, heads, L, L]
        copies = a[0, :, p + n:, :].mean(0)  # [T, L]
        out.append(torch.stack([copies[:, :p].sum(-1), copies[:, p: p + n].sum(-1), copies[:, p + n:].sum(-1)]))
    return torch.stack(out)
