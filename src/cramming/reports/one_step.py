"""Back in one forward pass (the one-step decoder): its horizons beside greedy decoding's, and where the copies look.

benchmarks/one_step.py prints both; docs/build.py puts the horizon table in docs/results.md.
"""

from __future__ import annotations

import torch

from cramming.core.decode import with_prefix
from cramming.core.recipes import stored
from cramming.files.database import Store


def comparison_rows(one_step: Store, capacity: Store) -> list[dict]:
    """The two-vector rows to compare: one-step.sqlite's (one-step on books; greedy and one-step on random words)
    and capacity.sqlite's greedy horizons of the same three book passages at the same budget and precision."""
    return [r for r in one_step.rows() if r["vectors"] == 2] + [
        r for r in capacity.rows() if r["vectors"] == 2 and r["source"] == "books" and r["sample"] < 3
        and r["budget"] == 1000 and r["settings"].get("precision") == "bf16"]


def horizons(rows: list[dict]) -> dict[tuple, dict]:
    """(source, sample, decoder) -> its horizon: the longest exact length, the shortest length no try got back
    (None while the search has not failed yet), the text's cross-entropy (bits, the model without vectors) at the
    longest exact length, and the steps of the exact tries at 32 and 64 tokens."""
    by: dict[tuple, list[dict]] = {}
    for r in rows:
        by.setdefault((r["source"], r["sample"], stored(r["settings"]).decoder), []).append(r)
    out = {}
    for key, rs in sorted(by.items()):
        exact = {r["length"]: r for r in rs if r["exact"]}
        failed = [r["length"] for r in rs if r["length"] not in exact]  # a warm start's failure tried again
        best = exact[max(exact)] if exact else None
        out[key] = {"exact": best["length"] if best else 0, "failed": min(failed, default=None),
                    "ce_bits": best["ce_without_bits"] if best else None,
                    "steps": {n: exact[n]["steps"] for n in (32, 64) if n in exact}}
    return out


def table(rows: list[dict]) -> str:
    """One line per passage: each decoder's horizon (exact / failed at), their ratio, the text's cross-entropy at
    each horizon and the steps of the tries at 32 and 64 tokens."""
    found = horizons(rows)

    def cell(h: dict | None) -> str:
        return f"{h['exact']} / {h['failed'] or 'not yet'}" if h else "not run"

    def bits(h: dict | None) -> str:
        return f"{h['ce_bits']:.0f}" if h and h["ce_bits"] else "–"

    def steps(h: dict | None) -> str:
        return ", ".join(str(int(h["steps"][n])) if n in h["steps"] else "–" for n in (32, 64)) if h else "–"

    lines = ["| source | passage | greedy: exact / failed at | one-step: exact / failed at | one-step / greedy | "
             "text's cross-entropy at the horizon, bits: greedy / one-step | steps at 32, 64 tokens: greedy / "
             "one-step |", "|" + "---|" * 7]
    for source, sample in sorted({k[:2] for k in found}):
        g, o = found.get((source, sample, "greedy")), found.get((source, sample, "one-step"))
        ratio = f"{o['exact'] / g['exact']:.2f}" if g and o and g["exact"] else "–"
        lines.append(f"| {source} | {sample} | {cell(g)} | {cell(o)} | {ratio} | {bits(g)} / {bits(o)} | "
                     f"{steps(g)} / {steps(o)} |")
    return "\n".join(lines)


def attention_shares(lm, vectors: torch.Tensor, n_tokens: int, prefix_id: int | None) -> torch.Tensor:
    """[layers, 3, T]: per layer and copy position, the attention share (mean over heads) on the prefix, on the text
    vectors and on the copies."""
    head = with_prefix(lm.model, vectors[None, :-1].float(), prefix_id)
    x = torch.cat([head, vectors[None, -1:].float().expand(-1, n_tokens, -1)], dim=1)
    with torch.no_grad():
        attentions = lm.model(inputs_embeds=x, use_cache=False, output_attentions=True).attentions
    p, n = (1 if prefix_id is not None else 0), vectors.shape[0] - 1
    out = []
    for a in attentions:  # [1, heads, L, L]
        copies = a[0, :, p + n:, :].mean(0)  # [T, L]
        out.append(torch.stack([copies[:, :p].sum(-1), copies[:, p: p + n].sum(-1), copies[:, p + n:].sum(-1)]))
    return torch.stack(out)
