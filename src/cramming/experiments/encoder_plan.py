"""What an encoder is trained on and how (encoder_training.py trains it). No torch at import: the command line
shows these defaults in its help."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cramming.experiments.runner import Spec

TEXT_SEED = 3  # the benchmarks measure on seed 0 (books) and seeds 1 and 10 (long_texts): none is trained on


@dataclass
class Training:
    """What an encoder is trained on and how."""

    sources: tuple[str, ...] = ("books", "recent")
    lengths: tuple[int, ...] = (16, 32, 64)
    passages: int = 32  # per source and length
    max_steps: int = 1000  # the cramming budget per passage: one cosine period of `default`
    batch_size: int = 16  # passages crammed together
    # The model's compute type while cramming them: bf16 halves a CPU step at these batch sizes
    # (docs/notebook.md, "CPU bf16"); every solution is still verified by float32 decoding.
    precision: str = "bf16"
    # Further fields of the recipe the passages are crammed with, on top of `default` (e.g. {"wrong_weight": 1}
    # to read rows crammed with an earlier default back instead of cramming them again).
    settings: dict = field(default_factory=dict)
    layer: int = 15  # the hidden state read: after this many blocks
    end_to_end_steps: int = 0  # 0: the ridge head alone
    end_to_end_lr: float = 1e-3

    def spec(self, model: str) -> Spec:
        from cramming.experiments.runner import Spec  # torch: only once a training runs

        return Spec(models=[model], sources=list(self.sources), lengths=list(self.lengths), samples=self.passages,
                    recipes={f"default, {self.precision}": {"base": "default", **self.settings,
                                                             "precision": self.precision}},
                    text_seed=TEXT_SEED,
                    max_steps=self.max_steps)
