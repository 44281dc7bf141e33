"""The package's layers: each folder imports only from its own layer and those below it, and nothing but
`python -m cramming` imports the CLI. Type hints under `if TYPE_CHECKING:` are not dependencies."""

import ast
import shutil
from pathlib import Path

import cramming

PACKAGE = Path(cramming.__file__).parent
# lowest first: the core (recipe, loop, decoding and verification, storage forms, metrics) imports nothing above it
LAYERS = ["core", "model", "files", "api", "experiments", "reports", "cli"]
RANK = {name: i for i, name in enumerate(LAYERS)} | {"__main__": len(LAYERS) - 1, "__init__": len(LAYERS) - 1}


def layer(module: str) -> str:
    """cramming.core.loop -> core; cramming.api -> api; cramming (the package's facade) -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported(path: Path, package: Path) -> list[str]:
    """The cramming modules a file imports at run time, by dotted name."""
    here = ["cramming", *path.relative_to(package).with_suffix("").parts]
    out = []
    for node in ast.walk(_without_type_checking(ast.parse(path.read_text(encoding="utf-8")))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . / from .. of this module's package
                base = ".".join(here[: len(here) - node.level] + ([base] if base else []))
            if base == "cramming" or base.startswith("cramming."):
                for alias in node.names:  # from cramming import api: the module cramming.api
                    sub = f"{base}.{alias.name}"
                    out.append(sub if (package / Path(*sub.split(".")[1:])).with_suffix(".py").exists()
                               or (package / Path(*sub.split(".")[1:])).is_dir() else base)
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name == "cramming" or a.name.startswith("cramming.")]
    return out


def _without_type_checking(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        for name in ("body", "orelse"):
            block = getattr(node, name, None)
            if isinstance(block, list):
                setattr(node, name, [n for n in block if not (isinstance(n, ast.If) and "TYPE_CHECKING" in
                                                              ast.unparse(n.test))])
    return tree


def violations(package: Path) -> list[str]:
    """One line per import that goes up a layer, or into the CLI from anywhere but __main__."""
    found = []
    for path in sorted(package.rglob("*.py")):
        module = ".".join(["cramming", *path.relative_to(package).with_suffix("").parts]).removesuffix(".__init__")
        for target in imported(path, package):
            upward = RANK[layer(target)] > RANK[layer(module)]
            into_cli = layer(target) == "cli" and layer(module) not in ("__main__", "cli")
            if upward or into_cli:
                found.append(f"{module} imports {target} ({layer(target)} is above {layer(module)})")
    return found


def test_no_layer_imports_one_above_it():
    assert violations(PACKAGE) == []
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == {
        "core", "model", "files", "experiments", "reports"}


def test_an_upward_import_is_caught(tmp_path):
    # the check on purpose fails once: the loop importing the API, a report importing the CLI
    copy = tmp_path / "cramming"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.safetensors", "*.csv"))
    loop = copy / "core" / "loop.py"
    loop.write_text(loop.read_text() + "\nfrom cramming.api import compress\n")
    report = copy / "reports" / "report.py"
    report.write_text(report.read_text() + "\nfrom .. import cli\n")
    assert violations(copy) == ["cramming.core.loop imports cramming.api (api is above core)",
                                "cramming.reports.report imports cramming.cli (cli is above reports)"]
