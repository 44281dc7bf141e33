"""What can be checked of a run's inputs without a model, checked before one loads (which takes seconds); no
torch at import, so the command line answers a bad input at once."""

from __future__ import annotations

from collections.abc import Sequence

from cramming.core.errors import CrammingError


def check_vectors(n_vectors: int, decoder: str = "greedy", shared_copy: bool = False) -> None:
    """Enough vectors for the way back: one at least; two for one-step decoding (the text's, then the copied one),
    unless the copied one is the model's shared vector."""
    if n_vectors < 1:
        raise CrammingError(f"the number of vectors must be at least 1, got {n_vectors}")
    if decoder == "one-step" and not shared_copy and n_vectors < 2:
        raise CrammingError("one-step decoding needs at least 2 vectors: the text's, then the one copied at every "
                            "position (--vectors 2), or the model's shared copy (--shared-copy)")


def check_options(texts: Sequence[str], *, n_vectors: int, max_tokens: int | None, decoder: str = "greedy",
                  shared_copy: bool = False) -> None:
    """What can be checked without a model, checked before one loads (which takes seconds)."""
    check_vectors(n_vectors, decoder, shared_copy)
    if not texts:
        raise CrammingError("no text given")
    if any(not text for text in texts):
        raise CrammingError("the text is empty")
    if max_tokens is not None and max_tokens < 1:
        raise CrammingError(f"the number of tokens to keep must be at least 1, got {max_tokens}")
