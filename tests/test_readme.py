"""Every `cram ...` command in the code blocks of README and docs/cli.md names a subcommand and flags that exist:
a renamed flag breaks the build, not a reader's first try."""

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCS = (ROOT / "README.md", ROOT / "docs" / "cli.md", ROOT / "docs" / "findings.md")


def readme_commands(path: Path = DOCS[0]) -> list[str]:
    """The `cram ...` commands of a page's fenced code blocks, synopsis continuation lines joined."""
    blocks = re.findall(r"```[^\n]*\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)
    commands = []
    for block in blocks:
        lines: list[str] = []
        for line in block.splitlines():
            if lines and re.match(r"\s+\[", line):  # a synopsis wrapped onto the next line
                lines[-1] += " " + line.strip()
            else:
                lines.append(line)
        for line in lines:
            line = line.split("  #")[0]  # a trailing comment
            commands += [m.strip() for m in re.findall(r"(?:^|&&|;)\s*(cram\s[^&;]*)", line)]
    return commands


def flags_of(command: str) -> tuple[str, list[str]]:
    words = shlex.split(command.replace("[", " ").replace("]", " ").replace("|", " "))
    flags = {w.split("=")[0] for w in words[2:] if re.match(r"^--?[a-zA-Z][\w-]*", w)}
    return words[1], sorted(flags)


def test_readme_has_commands_to_check():
    subcommands = {flags_of(c)[0] for c in readme_commands()}
    tour = {"compress", "decompress", "info", "certify", "measure", "capacity", "run", "report", "results"}
    assert tour <= subcommands
    assert len(readme_commands(DOCS[1])) >= 12  # the full synopsis


@pytest.mark.parametrize("command", [c for page in DOCS for c in readme_commands(page)])
def test_each_readme_command_names_real_flags(command, run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # option names unwrapped in the help panel
    subcommand, flags = flags_of(command)
    code, out, err = run_cli(subcommand, "--help")
    assert code == 0, f"`cram {subcommand}` is not a command: {err}"
    text = out.decode()
    missing = [f for f in flags if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text)]
    assert not missing, f"README's `{command[:60]}...` uses {missing}, which `cram {subcommand} --help` lacks"
