"""Every Python block in the README and the docs runs as written."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [
    pytest.param(block, id=f"{path.name}:{k}")
    for path in DOCS
    for k, block in enumerate(re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S))
]


@pytest.mark.parametrize("block", BLOCKS)
def test_python_blocks_run(block, capsys):
    exec(compile(block, "<doc>", "exec"), {})  # noqa: S102 - our own documentation
