"""Recompute the measured metrics of stored rows with today's metrics code (metrics.gains), from the text and the
vectors each row stores.

A row's key, steps, time and exactness are what ran, and stay; what a row measured about its vectors
(cross-entropy with and without them, the gains, utilization) is a reading that a fix to the measurement
changes, and the vectors are kept so that it can be taken again. Only rows whose model and tokenizer
fingerprints are those of the model loaded now are touched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cramming.api import file_decoder, file_reading
from cramming.core.metrics import gains
from cramming.files.database import MEASURED, Store
from cramming.files.vector_file import vector_metadata, vectors_of
from cramming.model.loading import LoadedModel


@dataclass
class Remeasured:
    """What a remeasure did to one model's rows."""

    model: str
    rows: int  # rows of this model measured again
    changed: int  # of them, rows whose information gain moved by more than 0.01 bits
    mean_gain_change: float  # mean change of information gain over the rows (bits; negative: it was overstated)


def remeasure(store: Store, lm: LoadedModel) -> Remeasured:
    """Measure every row of `lm` in `store` again and rewrite its metric columns, in one transaction."""
    rows = [r for r in store.rows() if (r["model_fingerprint"], r["tokenizer_fingerprint"])
            == (lm.fingerprint, lm.tokenizer_fingerprint)]
    updates, moves = [], []
    for r in rows:
        data = store.vector_file(r)
        ids = lm.tokenizer(store.text(r), add_special_tokens=False)["input_ids"]  # the ids it was crammed as
        meta = vector_metadata(data)
        found = gains(ids, vectors_of(data), meta.get("prefix_token_id"), lm, file_decoder(meta),
                      file_reading(meta, lm))
        updates.append((r, {m: found[m] for m in MEASURED}))
        moves.append(found["information_gain_bits"] - r["information_gain_bits"])
    store.update_metrics(updates)
    changed = sum(abs(m) > 0.01 for m in moves)
    return Remeasured(lm.name, len(rows), changed, sum(moves) / len(moves) if moves else math.nan)


def models_in(store: Store) -> list[str]:
    """The model names of a store's rows, in order."""
    return sorted({r["model"] for r in store.rows()})
