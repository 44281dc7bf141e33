class CrammingError(Exception):
    """A user-facing error: bad input, a missing model, a corrupt file. The CLI prints it as one line."""
