"""Both READMEs (English and Chinese) name every CLI command, and the Chinese one keeps every command line."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from stockllm.cli import _build_parser

ROOT = Path(__file__).resolve().parents[1]
READMES = ("README.md", "README.zh-CN.md")


def commands() -> list[str]:
    """The subcommands, from the argparse parser itself (a new command is covered at once)."""
    parser = _build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def code_lines(text: str) -> list[str]:
    """Lines inside ``` blocks, trailing comments dropped (the Chinese README translates comments only)."""
    lines = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).rstrip()
            if line and not line.lstrip().startswith("#"):
                lines.append(line)
    return lines


@pytest.mark.parametrize("name", READMES)
def test_readme_names_every_cli_command(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    found = commands()
    assert {"train", "predict", "evaluate", "download"} <= set(found)
    missing = [c for c in found if f"stockllm {c}" not in text]
    assert not missing, f"{name} never shows: {', '.join('stockllm ' + c for c in missing)}"


def test_english_readme_links_the_chinese_one():
    head = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:5]
    assert any("(README.zh-CN.md)" in line for line in head)
    assert "(README.md)" in (ROOT / "README.zh-CN.md").read_text(encoding="utf-8").splitlines()[2]


def test_chinese_readme_is_complete():
    en, zh = ((ROOT / n).read_text(encoding="utf-8") for n in READMES)
    # Every command and code line of the English README appears in the Chinese one, and the structure matches.
    missing = [line for line in code_lines(en) if line not in code_lines(zh)]
    assert not missing, missing
    for level in ("## ", "### "):
        count = lambda text: sum(line.startswith(level) for line in text.splitlines())  # noqa: E731
        assert count(zh) == count(en), level
    flags = lambda text: set(re.findall(r"`(--[a-z_]+)", text))  # noqa: E731
    assert flags(en) <= flags(zh), sorted(flags(en) - flags(zh))
