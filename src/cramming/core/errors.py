class CrammingError(Exception):
    """A user-facing error: bad input, a missing model, a corrupt file. The CLI prints it as one line."""


class NotExact(CrammingError):
    """A vector file saved from a run that was not exact: it holds no exact text (`api.decode` gives its best)."""
