"""Threads under load: one `cram compress` alone, and two side by side, at 1 and 2 threads each.

    python benchmarks/threads.py            # the four runs (~5 min on 2 cores)
    python benchmarks/threads.py --auto     # and the default (--threads unset) started beside a busy job

Each job crams README's 28-token sentence into one vector of the default model with the default recipe, in its
own process, exactly as a user runs it; a pair is started together. The table gives each job's steps, its
cramming seconds (from --json) and seconds per step: two jobs that each use every core slow each other more
than they gain. --auto starts one job, waits until the load average shows it (~70 s), then starts a second
with no --threads, which takes the free cores (threads.py) and says how many in its progress line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

SENTENCE = ("The old lighthouse keeper climbed the spiral stairs every evening, lit the great lamp, and watched the "
            "ships pass safely through the narrow strait.")


def start(threads: int | None, out: str, text: str = SENTENCE) -> subprocess.Popen:
    args = [sys.executable, "-m", "cramming", "compress", text, "-o", out, "--json"]
    args += ["--threads", str(threads)] if threads else []
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(job: subprocess.Popen) -> tuple[dict, str]:
    out, err = job.communicate()
    if job.returncode not in (0, 1):
        sys.exit(f"cram compress failed: {err.strip().splitlines()[-1]}")
    return json.loads(out), err


def row(label: str, result: dict, threads: str) -> str:
    return (f"| {label} | {threads} | {result['steps']} | {result['seconds']:.1f} | "
            f"{result['seconds'] / max(1, result['steps']):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--auto", action="store_true", help="also the default thread count beside a busy job")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    print(f"{os.cpu_count()} cores, {platform.machine()} CPU; the default model, README's 28-token sentence, "
          f"1 vector, the default recipe.\nCommand: python benchmarks/threads.py{' --auto' if args.auto else ''}\n")
    print("| run | threads per job | steps | cramming s | s/step |\n|---|---|---|---|---|")
    for threads in (2, 1):
        result, _ = finish(start(threads, f"{tmp}/alone.safetensors"))
        print(row("alone", result, str(threads)), flush=True)
    for threads in (2, 1):
        pair = [start(threads, f"{tmp}/pair{k}.safetensors") for k in range(2)]
        for k, job in enumerate(pair):
            print(row(f"side by side, job {k + 1}", finish(job)[0], str(threads)), flush=True)
    if args.auto:
        busy = start(1, f"{tmp}/busy.safetensors", " ".join([SENTENCE] * 4))  # ~110 tokens: minutes, never done
        time.sleep(70)  # the 1-minute load average needs about this long to count the busy job
        result, err = finish(start(None, f"{tmp}/auto.safetensors"))
        chosen = err.split("threads ")[1].split()[0] if "threads " in err else "?"
        print(row("beside a busy 1-thread job, no --threads", result, f"{chosen} (chosen)"), flush=True)
        busy.kill()


if __name__ == "__main__":
    main()
