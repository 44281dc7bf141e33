"""Progress of the loop as plain lines, for logs, pipes and Python sessions (the CLI draws a bar on a terminal).
No torch at import: the command line imports this before it knows it will cram."""

from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cramming.core.loop import StepInfo


class PlainProgress:
    """Progress as plain lines on stderr: the first at once, then one every `every` seconds and the last one
    (on_step), for logs, pipes and Python sessions."""

    def __init__(self, label: str = "cramming", every: float = 5.0):
        self.label, self.every, self.start, self.last, self.pending = label, every, time.monotonic(), -math.inf, None

    def line(self, completed: int, total: int | None, description: str, final: bool = False) -> None:
        now = time.monotonic()
        self.pending = (completed, total, description)
        if final or now - self.last >= self.every:
            self.last, self.pending = now, None
            print(f"{self.label} {completed}/{'?' if total is None else total} {description} "
                  f"[{now - self.start:.0f} s]", file=sys.stderr, flush=True)

    def flush(self) -> None:
        """The last state, if it was not printed: a run's last line is never skipped."""
        if self.pending is not None:
            self.line(*self.pending, final=True)

    def __call__(self, s: StepInfo) -> None:
        self.line(s.step, s.max_steps, step_words(s), final=s.active == 0 or s.step == s.max_steps)


def step_words(s: StepInfo) -> str:
    """A step in a few words: loss, accuracy, samples done, torch's threads."""
    import torch  # imported by then: a step has run

    return (f"loss {s.loss:.3f} acc {s.accuracy:.3f} done {s.done}/{s.done + s.active} "
            f"threads {torch.get_num_threads()}")


