"""What one optimizer step costs, against the floor, and how batching changes throughput.

    python benchmarks/step_cost.py            # tokens 16, 32, 64; batches 1, 4, 16 (~5 min on 2 cores)

Table 1, per-step cost: the floor is one forward pass (logits only where the text is predicted) plus one
backward pass to the input, on the same [prefix ; vector ; text] sequence; a cram step is the real loop
(`cramming.engine.cram`, default recipe) on a text it cannot finish within the steps timed. Beside them, what
the loop avoids: logits at every position, and gradients for the model's weights.

Table 2, batch throughput: sample-steps per second at batch 1, 4 and 16 (32 tokens, 1 vector), and what that
means in samples per hour at the median steps to an exact round trip of the recipe table (or --steps).
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cramming.api import as_model, prefix_token
from cramming.decode import with_prefix
from cramming.engine import cram, starting_vectors
from cramming.models import DEFAULT_MODEL
from cramming.recipes import RECIPES
from cramming.store import Store
from cramming.texts import load_samples

REPEATS = 8


def timed(fn, repeats: int = REPEATS) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def forward_backward(model, ids: torch.Tensor, mem: torch.Tensor, prefix: int, all_logits: bool) -> None:
    x = torch.cat([with_prefix(model, mem, prefix), model.get_input_embeddings()(ids)], 1)
    T = ids.shape[1]
    logits = model(inputs_embeds=x, use_cache=False, logits_to_keep=0 if all_logits else T + 1).logits[:, -T - 1:-1]
    F.cross_entropy(logits.transpose(1, 2), ids).backward()


def recipe_median_steps(tokens: int) -> float:
    """Median steps to exact of the default recipe at this length, from the quick recipe table's store."""
    db = Path(__file__).parent / "results" / "recipes-quick.sqlite"
    rows = Store(db).rows() if db.exists() else []
    rows = [r for r in rows if r["recipe"] == "default" and r["length"] == tokens and r["exact"]]
    if not rows:
        raise SystemExit(f"no default-recipe rows at {tokens} tokens in {db}: run benchmarks/recipes.py --quick "
                         "first, or give --steps")
    return statistics.median(r["steps"] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--steps", type=float, default=None,
                        help="median steps to exact for samples/hour (default: the default recipe's at 32 tokens "
                             "in benchmarks/results/recipes-quick.sqlite)")
    args = parser.parse_args()
    median_steps = args.steps or recipe_median_steps(32)
    lm = as_model(args.model, device="cpu")
    model, recipe = lm.model, RECIPES["default"]
    prefix = prefix_token(lm.tokenizer, recipe)
    texts = {T: load_samples("books", 16, T, lm.tokenizer, seed=0) for T in (16, 32, 64)}
    ids = {T: [lm.tokenizer(s.text, add_special_tokens=False)["input_ids"] for s in texts[T]] for T in texts}
    steps = 12

    def cram_step(token_ids: list[list[int]]) -> float:
        # a vanishing step keeps every sample in the batch for all steps: the cost of a step, not of converging;
        # the start (prior or not) does not change that cost
        frozen = dataclasses.replace(recipe, name="timing", lr=1e-12, final_lr=1e-12, prior=False, max_steps=steps)
        start = starting_vectors(frozen, 1, model.get_input_embeddings().weight, 0, len(token_ids))
        return statistics.median(cram(model, token_ids, start, frozen, prefix_id=prefix)[0].seconds / steps
                                 for _ in range(3))

    print(f"Default model {lm.name}, float32, {platform.machine()} CPU, {torch.get_num_threads()} threads; "
          f"median of {REPEATS} repeats.\nCommand: python benchmarks/step_cost.py\n")
    print("| tokens | floor: fwd + input-grad bwd (s) | cram step (s) | step / floor | "
          "with logits everywhere (s) | with weight gradients (s) |\n|---|---|---|---|---|---|")
    for T in (16, 32, 64):
        one = torch.tensor([ids[T][0]])
        mem = starting_vectors(dataclasses.replace(recipe, prior=False), 1, model.get_input_embeddings().weight, 0,
                               1).requires_grad_(True)
        floor = timed(lambda: forward_backward(model, one, mem, prefix, all_logits=False))
        everywhere = timed(lambda: forward_backward(model, one, mem, prefix, all_logits=True))
        model.requires_grad_(True)
        weights = timed(lambda: forward_backward(model, one, mem, prefix, all_logits=False))
        model.requires_grad_(False)
        model.zero_grad(set_to_none=True)
        step = cram_step([ids[T][0]])
        print(f"| {T} | {floor:.3f} | {step:.3f} | {step / floor:.2f} | {everywhere:.3f} | {weights:.3f} |")

    print(f"\nBatch throughput, 32 tokens, 1 vector; samples/hour = sample-steps/s * 3600 / {median_steps:g} "
          "median steps to exact.\n")
    print("| batch | s/step | sample-steps/s | samples/hour | vs batch 1 |\n|---|---|---|---|---|")
    base = None
    for B in (1, 4, 16):
        per_step = cram_step(ids[32][:B])
        rate = B / per_step
        base = base or rate
        print(f"| {B} | {per_step:.3f} | {rate:.2f} | {rate * 3600 / median_steps:.0f} | {rate / base:.2f} |")


if __name__ == "__main__":
    main()
