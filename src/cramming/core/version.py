"""This cramming's version, as installed (pyproject.toml is the one place it is written)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cramming")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "unknown"
