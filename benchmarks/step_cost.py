"""What one optimizer step costs, against the floor, and how batching changes throughput.

    python benchmarks/step_cost.py                        # all four tables (~25 min on 2 cores)
    python benchmarks/step_cost.py --tables precision --threads 1
    python benchmarks/step_cost.py --tables parts         # the step by length and its parts (issue 46)

Table 1, per-step cost: the floor is one forward pass (logits only where the text is predicted) plus one
backward pass to the input, on the same [prefix ; vector ; text] sequence; a cram step is the real loop
(`cramming.core.loop.cram`, default recipe) on a text it cannot finish within the steps timed. Beside them, what
the loop avoids: logits at every position, and gradients for the model's weights.

Table 2, batch throughput: sample-steps per second at batch 1, 4 and 16 (32 tokens, 1 vector), and what that
means in samples per hour at the median steps to an exact round trip of the recipe table (or --steps).

Table 3, precision: the floor in float32, under CPU bf16 autocast (weights cast on every call), under autocast
on the twin whose Linear weights are bf16 once (what cramming runs), and with all weights in bf16, at the
batch x tokens shapes cramming runs; and a real cram step under the recipe's
`precision = "bf16"` against float32. Whether bf16 pays depends on the CPU's bf16 units (the header names them):
oneDNN's ONEDNN_VERBOSE=1 log shows the kernel each matmul ran (e.g. brg_matmul:avx512_core_bf16).

Table 4, parts: one step of one 1-vector sample by text length (32-256 tokens) in its parts: the forward pass of
the transformer body, the vocabulary projection and cross-entropy (forward and backward, on the body's output),
the body's backward pass to the input (the whole step's forward and backward less those two), and AdamW's update;
for float32 and bf16 (the twin cramming runs; and bf16 with the vocabulary projection in float32), sdpa and eager
attention, the body compiled by torch.compile or not,
and 1 and 2 threads; each total beside the float32, sdpa, uncompiled one of the same length and threads. Compiled
only at 128 tokens: each shape compiles anew, in about two minutes.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cramming.api import as_model, prefix_token
from cramming.core.decode import with_prefix
from cramming.core.loop import cram, starting_vectors
from cramming.core.precision import autocast_model
from cramming.core.recipes import RECIPES
from cramming.files.database import Store
from cramming.model.aliases import DEFAULT_MODEL
from cramming.model.texts import load_samples

REPEATS = 8


def timed(fn, repeats: int = REPEATS) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def forward_backward(model, ids: torch.Tensor, mem: torch.Tensor, prefix: int, all_logits: bool = False,
                     bf16: bool = False) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        embeds = model.get_input_embeddings()(ids)
        x = torch.cat([with_prefix(model, mem.to(embeds.dtype), prefix), embeds], 1)
        T = ids.shape[1]
        logits = model(inputs_embeds=x, use_cache=False, logits_to_keep=0 if all_logits else T + 1).logits
    F.cross_entropy(logits[:, -T - 1:-1].float().transpose(1, 2), ids).backward()


def cpu() -> str:
    """The CPU's name and its bf16 instructions, from /proc/cpuinfo (Linux)."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines() if ":" in line)
    except OSError:
        return f"{platform.machine()} CPU"
    info = {k.strip(): v.strip() for k, v in info.items()}
    units = [f for f in ("amx_bf16", "avx512_bf16") if f in info.get("flags", "").split()]
    return f"{info.get('model name', 'CPU')} (bf16 units: {', '.join(units) or 'none'})"


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
    parser.add_argument("--tables", default="cost,batch,precision,parts",
                        help="which tables, comma-separated: cost, batch, precision, parts")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--steps", type=float, default=None,
                        help="median steps to exact for samples/hour (default: the default recipe's at 32 tokens "
                             "in benchmarks/results/recipes-quick.sqlite)")
    args = parser.parse_args()
    tables = args.tables.split(",")
    if args.threads:
        torch.set_num_threads(args.threads)
    median_steps = (args.steps or recipe_median_steps(32)) if "batch" in tables else None
    lm = as_model(args.model, device="cpu")
    model, recipe = lm.model, RECIPES["default"]
    prefix = prefix_token(lm.tokenizer, recipe)
    texts = {T: load_samples("books", 16, T, lm.tokenizer, seed=0) for T in (16, 32, 64)}
    ids = {T: [lm.tokenizer(s.text, add_special_tokens=False)["input_ids"] for s in texts[T]] for T in texts}
    steps = 12

    def cram_step(token_ids: list[list[int]], precision: str = "auto") -> float:
        # a vanishing step keeps every sample in the batch for all steps: the cost of a step, not of converging;
        # the start (prior or not) does not change that cost
        frozen = dataclasses.replace(recipe, name="timing", lr=1e-12, final_lr=1e-12, prior=False, max_steps=steps,
                                     precision=precision)
        start = starting_vectors(frozen, 1, model.get_input_embeddings().weight, 0, len(token_ids))
        return statistics.median(cram(model, token_ids, start, frozen, prefix_id=prefix)[0].seconds / steps
                                 for _ in range(3))

    print(f"Default model {lm.name}, float32, {cpu()}, {torch.get_num_threads()} threads; median of {REPEATS} "
          "repeats.\n"
          f"Command: {shlex.join(['python', *sys.argv])}\n")
    if "cost" in tables:
        cost_table(model, recipe, prefix, ids, cram_step)
    if "batch" in tables:
        batch_table(ids, cram_step, median_steps)
    if "precision" in tables:
        precision_table(model, recipe, prefix, lm.tokenizer, cram_step)
    if "parts" in tables:
        parts_table(model, recipe, prefix, lm.tokenizer, args.threads)


def cost_table(model, recipe, prefix, ids, cram_step) -> None:
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


def batch_table(ids, cram_step, median_steps: float) -> None:
    print(f"\nBatch throughput, 32 tokens, 1 vector; samples/hour = sample-steps/s * 3600 / {median_steps:g} "
          "median steps to exact.\n")
    print("| batch | s/step | sample-steps/s | samples/hour | vs batch 1 |\n|---|---|---|---|---|")
    base = None
    for B in (1, 4, 16):
        per_step = cram_step(ids[32][:B])
        rate = B / per_step
        base = base or rate
        print(f"| {B} | {per_step:.3f} | {rate:.2f} | {rate * 3600 / median_steps:.0f} | {rate / base:.2f} |")


def precision_table(model, recipe, prefix, tokenizer, cram_step) -> None:
    print("\nPrecision: the floor (forward + input-gradient backward) in float32, and as a ratio to it under bf16 "
          "autocast (weights cast on every call), under bf16 autocast on the twin whose Linear weights are bf16 "
          "once (models.autocast_model: what cramming runs), and with all weights bf16; a cram step with "
          "precision = bf16 against one in float32.\n")
    print("| batch x tokens | floor fp32 (s) | bf16 autocast / fp32 | bf16 autocast, twin / fp32 | "
          "bf16 weights / fp32 | cram step fp32 (s) | cram step bf16 / fp32 |\n|---|---|---|---|---|---|---|")
    weights_bf16 = copy.deepcopy(model).to(torch.bfloat16)
    twin = autocast_model(model, torch.device("cpu"), True)
    for B, T in ((1, 32), (1, 64), (1, 128), (4, 64), (2, 96), (4, 128)):
        batch = [tokenizer(s.text, add_special_tokens=False)["input_ids"][:T]
                 for s in load_samples("books", B, T, tokenizer, seed=0)]
        tensor = torch.tensor(batch)
        mem = starting_vectors(dataclasses.replace(recipe, prior=False), 1, model.get_input_embeddings().weight, 0,
                               B).requires_grad_(True)
        fp32 = timed(lambda: forward_backward(model, tensor, mem, prefix))
        autocast = timed(lambda: forward_backward(model, tensor, mem, prefix, bf16=True))
        twinned = timed(lambda: forward_backward(twin, tensor, mem, prefix, bf16=True))
        weights = timed(lambda: forward_backward(weights_bf16, tensor, mem, prefix))
        step32, step16 = cram_step(batch, "fp32"), cram_step(batch, "bf16")
        print(f"| {B} x {T} | {fp32:.3f} | {autocast / fp32:.2f} | {twinned / fp32:.2f} | {weights / fp32:.2f} | "
              f"{step32:.3f} | {step16 / step32:.2f} |", flush=True)


def parts(model, ids: torch.Tensor, mem: torch.Tensor, prefix: int, bf16: bool, body=None,
          float32_head: bool = True) -> dict[str, float]:
    """One step's parts (seconds, medians): body forward, head forward + backward, body backward, AdamW. With bf16:
    the twin's body (core.precision.autocast_model), and the vocabulary projection in float32 outside autocast
    (float32_head, as the twin runs it on a CPU) or in bf16 under autocast (as it ran before)."""
    stepper = autocast_model(model, torch.device("cpu"), bf16)
    body = stepper.model if body is None else body  # a compiled module has no truth value
    head_bf16 = model.get_output_embeddings().weight.detach().to(torch.bfloat16)
    T = ids.shape[1]
    with torch.no_grad():
        embeds = model.get_input_embeddings()(ids)

    def forward() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            x = torch.cat([with_prefix(model, mem.to(embeds.dtype), prefix), embeds], 1)
            return body(inputs_embeds=x, use_cache=False).last_hidden_state[:, -T - 1:-1]

    def head(hidden: torch.Tensor) -> torch.Tensor:
        if bf16 and not float32_head:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = F.linear(hidden, head_bf16)
        else:
            logits = model.get_output_embeddings()(hidden.float())
        return F.cross_entropy(logits.float().transpose(1, 2), ids)

    hidden = forward().detach().requires_grad_(True)
    optimizer = torch.optim.AdamW([mem], lr=0.1, betas=(0.9, 0.9), weight_decay=0.0)
    mem.grad = torch.zeros_like(mem)
    out = {"body forward": timed(forward), "head fwd + bwd": timed(lambda: head(hidden).backward()),
           "step": timed(lambda: head(forward()).backward()), "AdamW": timed(optimizer.step)}
    out["body backward"] = out["step"] - out["body forward"] - out["head fwd + bwd"]
    out["step"] += out["AdamW"]
    return out


def parts_table(model, recipe, prefix, tokenizer, threads: int | None) -> None:
    print("\nParts of one step, one sample, 1 vector (seconds, medians); ratio: the step against float32, sdpa, "
          "uncompiled at the same length and threads.\n")
    print("| tokens | threads | precision | attention | compiled | step (s) | ratio | body forward | head fwd + bwd "
          "| body backward | AdamW |\n|---|---|---|---|---|---|---|---|---|---|---|")
    # bf16 as it ran before (bf16 head, sdpa), each change alone, and as the twin runs on a CPU now (both)
    configs = (("fp32", "sdpa", False), ("fp32", "eager", False), ("bf16, bf16 head", "sdpa", False),
               ("bf16, bf16 head", "eager", False), ("bf16, fp32 head", "sdpa", False),
               ("bf16, fp32 head", "eager", False), ("fp32", "sdpa", True), ("bf16, fp32 head", "eager", True))
    start = starting_vectors(dataclasses.replace(recipe, prior=False), 1, model.get_input_embeddings().weight, 0, 1)
    text = tokenizer(load_samples("books", 1, 256, tokenizer, seed=0)[0].text, add_special_tokens=False)["input_ids"]
    compiled: dict[tuple, object] = {}
    for n_threads in ([threads] if threads else [1, 2]):
        torch.set_num_threads(n_threads)
        for T in (32, 64, 128, 256):
            ids = torch.tensor([text[:T]])
            base = None
            for precision, attention, compile_it in configs:
                if compile_it and T != 128:  # a compile is minutes a shape: at the length issue 46 aims at only
                    continue
                bf16 = precision.startswith("bf16")
                for m in (model, autocast_model(model, torch.device("cpu"), True)):  # the twin has its own config
                    m.set_attn_implementation(attention)
                body = None
                if compile_it:
                    twin = autocast_model(model, torch.device("cpu"), bf16).model
                    body = compiled.setdefault((precision,), torch.compile(twin, dynamic=False))
                mem = start.clone().requires_grad_(True)
                try:
                    got = parts(model, ids, mem, prefix, bf16, body, float32_head=not precision.endswith("bf16 head"))
                except Exception as err:  # torch.compile needs a working C++ toolchain: say so, go on
                    print(f"| {T} | {n_threads} | {precision} | {attention} | yes | failed: "
                          f"{type(err).__name__} | | | | | |", flush=True)
                    continue
                base = base or got["step"]
                print(f"| {T} | {n_threads} | {precision} | {attention} | {'yes' if compile_it else 'no'} | "
                      f"{got['step']:.3f} | {got['step'] / base:.2f} | {got['body forward']:.3f} | "
                      f"{got['head fwd + bwd']:.3f} | {got['body backward']:.3f} | {got['AdamW']:.5f} |", flush=True)
    model.set_attn_implementation("sdpa")  # each as cramming runs it
    autocast_model(model, torch.device("cpu"), True).set_attn_implementation("eager")


if __name__ == "__main__":
    main()
