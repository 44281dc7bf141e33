"""cramming: fit a text into a few input vectors of a frozen language model, and decode it back exactly."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cramming")  # pyproject.toml is the one place the version is written
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "unknown"

from .api import Compressed, compress, decompress, info, tokenize  # noqa: E402
from .decode import Expected, greedy_decode, verify  # noqa: E402
from .engine import CramResult, cram, starting_vectors  # noqa: E402
from .errors import CrammingError  # noqa: E402
from .models import DEFAULT_MODEL, LoadedModel, load_model  # noqa: E402
from .recipes import RECIPES, Recipe  # noqa: E402

__all__ = ["Compressed", "compress", "decompress", "info", "tokenize", "greedy_decode", "verify", "Expected", "RECIPES",
           "CramResult", "Recipe", "cram", "starting_vectors", "CrammingError", "DEFAULT_MODEL", "LoadedModel",
           "load_model"]
