"""What the project ships stays consistent: README's commands (CI runs its test command verbatim), the priors."""

import json
import re
from pathlib import Path

from safetensors import safe_open

from cramming.core.recipes import Recipe
from cramming.model import prior as prior_module

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = text.split("```bash\n")[1:3]
    return [b.split("\n```")[0].strip() for b in blocks]


def test_ci_runs_the_readme_test_command():
    main_cmd, test_cmd = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == test_cmd
    assert "pip install -q torch==2.13.0" in main_cmd and "cram compress" in main_cmd and "cram decompress" in main_cmd


def test_every_file_the_package_ships_is_in_git():
    # A clean clone (CI, a user's) has only what git tracks: session 16's encoder sat in the work tree, ignored
    # by `*.safetensors`, and failed only on CI. `git check-ignore` names an untracked file .gitignore hides.
    import subprocess
    import tomllib

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["cramming"]
    shipped = [p for pattern in patterns for p in (ROOT / "src" / "cramming").glob(pattern)]
    assert shipped
    ignored = subprocess.run(["git", "check-ignore", *map(str, shipped)], cwd=ROOT, capture_output=True, text=True)
    assert ignored.stdout == "", ignored.stdout


def test_the_shipped_priors_were_built_by_todays_builder():
    # A changed builder (cold's settings, the build budget) needs a new VERSION and rebuilt priors: the shipped
    # files record the recipe they were crammed with.
    shipped = sorted(prior_module.SHIPPED.glob("*.safetensors"))
    assert len(shipped) == 4  # the default model's for 1, 2 and 4 vectors; Gemma-3-270M's for 1
    for path in shipped:
        with safe_open(str(path), "pt") as f:
            recorded = Recipe.from_dict(json.loads(f.metadata()["recipe"]))
        # the same settings (the digest; a field added since, at its default, leaves it as it was)
        assert recorded.digest() == prior_module.builder().digest(), path.name


def test_every_example_spec_loads_with_its_recipes():
    from cramming.experiments.runner import Spec

    specs = sorted((Path(__file__).parent.parent / "examples").rglob("*.toml"))
    assert len(specs) >= 7
    for path in specs:
        spec = Spec.from_toml(path)
        for name in spec.recipes:  # the same recipe, loaded again, has the same 16-hex-digit digest
            digest = spec.recipe(name).digest()
            assert re.fullmatch(r"[0-9a-f]{16}", digest) and Spec.from_toml(path).recipe(name).digest() == digest


def test_readme_says_what_the_commands_fetch_and_need():
    """The test command's Gemma download is named, with the marker that leaves it out; a tour command whose spec
    draws random words says it needs the `texts` extra (the first command does not install it)."""
    import re
    import tomllib

    text = (ROOT / "README.md").read_text()
    markers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    assert any(m.startswith("gemma:") for m in markers) and "-m 'not gemma'" in text and "Gemma-3-270M (242 MB" in text
    assert "@pytest.mark.gemma\ndef test_gemma_round_trip" in (ROOT / "tests" / "test_real_model.py").read_text()
    text += (ROOT / "docs" / "findings.md").read_text()  # the campaign's commands
    for spec in re.findall(r"^cram run (examples/\S+\.toml).*$", text, re.M):
        if "random" in tomllib.loads((ROOT / spec).read_text())["sources"]:
            line = next(line for line in text.splitlines() if line.startswith(f"cram run {spec}"))
            assert "cramming[texts]" in line, line
