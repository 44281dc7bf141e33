"""What can be checked of a run's inputs without a model, checked before one loads (which takes seconds); no
torch at import, so the command line answers a bad input at once."""

from __future__ import annotations

from collections.abc import Sequence

from cramming.core.errors import CrammingError


def check_options(texts: Sequence[str], *, n_vectors: int, max_tokens: int | None) -> None:
    """What can be checked without a model, checked before one loads (which takes seconds)."""
    if n_vectors < 1:
        raise CrammingError(f"the number of vectors must be at least 1, got {n_vectors}")
    if not texts:
        raise CrammingError("no text given")
    if any(not text for text in texts):
        raise CrammingError("the text is empty")
    if max_tokens is not None and max_tokens < 1:
        raise CrammingError(f"the number of tokens to keep must be at least 1, got {max_tokens}")
