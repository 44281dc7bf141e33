"""How long reading a text back takes: greedy decoding (one forward step a token, with the KV cache) against
one-step decoding (one forward pass over [prefix ; text vector ; T copies]), on the default model.

    python benchmarks/decode_time.py                       # 32, 64 and 128 tokens, 1 thread
    python benchmarks/decode_time.py --lengths 32,256 --threads 2

The time of a decode does not depend on what the vectors hold, so random vectors of the embeddings' scale
stand in for crammed ones: each length is decoded `--repeats` times each way, alternating, after one warm-up
of each, and the table gives the median seconds and their ratio from this one run.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import sys
import time

import torch

from cramming.core.decode import greedy_decode, one_step_decode
from cramming.model.aliases import DEFAULT_MODEL
from cramming.model.loading import load_model


def seconds(decode, lm, vectors: torch.Tensor, n_tokens: int, prefix_id: int | None) -> float:
    start = time.perf_counter()
    decode(lm.model, vectors, n_tokens, prefix_id)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="32,64,128", help="comma-separated token counts")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model(DEFAULT_MODEL, "cpu")
    weight = lm.model.get_input_embeddings().weight
    vectors = torch.randn(1, 2, weight.shape[1], generator=torch.Generator().manual_seed(0)) * weight.std().item()
    prefix = lm.tokenizer.bos_token_id
    print(f"{DEFAULT_MODEL}, float32, {args.threads} thread(s), {platform.machine()} CPU; two vectors (one-step: "
          "the text's and the copied one; greedy: both before the text)")
    print(f"Command: {shlex.join(['python', *sys.argv])}\n")
    print("| tokens | greedy (s, median) | one-step (s, median) | one-step speed-up |")
    print("|---|---|---|---|")
    for n_tokens in (int(t) for t in args.lengths.split(",")):
        times = {greedy_decode: [], one_step_decode: []}
        for decode in times:  # warm-up
            seconds(decode, lm, vectors, n_tokens, prefix)
        for _ in range(args.repeats):
            for decode in times:
                times[decode].append(seconds(decode, lm, vectors, n_tokens, prefix))
        greedy, one = (statistics.median(times[d]) for d in (greedy_decode, one_step_decode))
        print(f"| {n_tokens} | {greedy:.3f} | {one:.4f} | {greedy / one:.0f}x |", flush=True)


if __name__ == "__main__":
    main()
