"""How many CPU threads torch uses: by default, the cores that are not busy.

Two processes that each run torch's default of one thread per core on the same cores slow each other far more
than they gain: on 2 busy cores a step of the default model ran ~3.5x slower with 2 threads than with 1
(benchmarks/threads.py). So a run counts the cores it may use, takes off the 1-minute load average (work
already running), and uses what is left, at least one.
"""

from __future__ import annotations

import os

import torch

from cramming.core.errors import CrammingError


def free_cores() -> int:
    """Cores this process may use minus the ones busy with other work, at least 1. The load average lags by a
    minute: two jobs started in the same second both see free cores, so give those --threads."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - round(os.getloadavg()[0]))


def use_threads(threads: int | None = None) -> int:
    """Set torch's CPU threads: `threads`, or free_cores() when None -> the number set."""
    if threads is not None and threads < 1:
        raise CrammingError(f"the number of threads must be at least 1, got {threads}")
    torch.set_num_threads(threads or free_cores())
    return torch.get_num_threads()
