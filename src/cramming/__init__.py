"""cramming: fit a text into a few input vectors of a frozen language model, and decode it back exactly.

The package in layers, each importing only from those before it (tests/test_layers.py checks it):
core (recipes, the loop, decoding and verification, storage forms, the paper's metrics), model (loading,
assets, text sources, the prior and the encoder), files (vector files, the results database), api (compress,
decompress and the other entry points), experiments (grids, capacity searches, encoder training, certificates),
reports (tables and figures), and the `cram` command line (cli.py). The names below load on first use, so that
`import cramming` (and `cram --help`) does not import torch.
"""

import importlib

from cramming.core.version import __version__

_EXPORTS = {
    "cramming.api": ["Compressed", "compress", "decompress", "info", "tokenize"],
    "cramming.core.decode": ["Expected", "greedy_decode", "verify"],
    "cramming.core.errors": ["CrammingError"],
    "cramming.core.loop": ["CramResult", "cram", "starting_vectors"],
    "cramming.core.recipes": ["RECIPES", "Recipe"],
    "cramming.model.aliases": ["DEFAULT_MODEL"],
    "cramming.model.loading": ["LoadedModel", "load_model"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = [*_WHERE, "__version__"]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'cramming' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value  # looked up once
    return value
