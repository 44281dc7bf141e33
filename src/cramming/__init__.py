"""cramming: fit a text into a few input vectors of a frozen language model, and decode it back exactly."""

__version__ = "0.1.0"

from .api import Compressed, compress, decompress, info, tokenize  # noqa: E402
from .decode import greedy_decode, round_trip  # noqa: E402
from .engine import RECIPES, CramResult, Recipe, cram  # noqa: E402
from .errors import CrammingError  # noqa: E402
from .models import DEFAULT_MODEL, LoadedModel, load_model  # noqa: E402

__all__ = ["Compressed", "compress", "decompress", "info", "tokenize", "greedy_decode", "round_trip", "RECIPES",
           "CramResult", "Recipe", "cram", "CrammingError", "DEFAULT_MODEL", "LoadedModel", "load_model"]
