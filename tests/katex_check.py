"""LaTeX checked with the KaTeX vendored in ``eingrad/web/static`` (by ``node``, throwOnError)."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess

import pytest

import eingrad as eg


def katex_failures(formulas: list[str]) -> list:
    """``[formula, error]`` for each formula KaTeX cannot typeset (display mode); skips the
    calling test, with the reason, where node is not installed."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the LaTeX is not checked with KaTeX")
    katex = pathlib.Path(eg.__file__).parent / "web" / "static" / "katex" / "katex.min.js"
    script = (
        f"const katex = require({json.dumps(str(katex))});"
        "const fs = require('fs'); const xs = JSON.parse(fs.readFileSync(0, 'utf8')); const bad = [];"
        "for (const x of xs) { try { katex.renderToString(x, {throwOnError: true, displayMode: true}); }"
        " catch (e) { bad.push([x, String(e)]); } }"
        "console.log(JSON.stringify(bad));"
    )
    out = subprocess.run([node, "-e", script], input=json.dumps(formulas), capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout)
