"""Imports flow one way, and importing eingrad pulls in no optional framework."""

import ast
import pathlib
import subprocess
import sys

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "src" / "eingrad"

# Each module may import (at module level) only modules in earlier layers.
LAYERS = [
    {"errors", "functions"},
    {"names", "expr"},
    {"program", "canonical", "recurrence"},
    {"syntax", "sizes"},
    {"printing", "evaluate"},
    {"simplify", "diff", "explain", "matrix"},
    {"reverse"},
    {"backends", "codegen"},
    {"api", "gradcheck", "testing", "check"},
    {"cli", "web", "__init__", "__main__"},
]


def layer_of(module: str) -> int:
    top = module.split(".")[0]
    for k, layer in enumerate(LAYERS):
        if top in layer:
            return k
    raise AssertionError(f"module {module!r} is in no layer of tests/test_architecture.py")


def module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def top_level_imports(path: pathlib.Path):
    """Package-internal modules imported at module level (not inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path).split(".")
    is_package = path.name == "__init__.py"
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = package[: len(package) - node.level + (1 if is_package else 0)]
            target = ".".join(base + ([node.module] if node.module else []))
            if node.module is None:
                for alias in node.names:
                    yield node.lineno, ".".join(base + [alias.name])
            else:
                yield node.lineno, target


def test_imports_flow_one_way():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        me = module_name(path)
        for lineno, target in top_level_imports(path):
            if not target or target.split(".")[0] == me.split(".")[0]:
                continue  # within one subpackage
            if layer_of(target) > layer_of(me):
                problems.append(f"{path.relative_to(PACKAGE)}:{lineno} imports {target} (a later layer)")
    assert not problems, "\n".join(problems)


def test_import_eingrad_pulls_no_optional_framework():
    code = (
        "import sys, eingrad\n"
        "bad = [m for m in ('torch', 'jax', 'cupy', 'dask', 'autograd', 'hypothesis', 'pytest', "
        "'starlette', 'uvicorn', 'eingrad.web') "
        "if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(PACKAGE.parent), "PATH": ""},
    )
    assert out.stdout.strip() == ""


def test_the_command_line_pulls_in_the_web_stack_only_for_serve():
    """``eingrad --help`` (every command registered) imports neither Starlette nor uvicorn."""
    code = (
        "import sys\n"
        "from eingrad.cli import build_parser\n"
        "build_parser().format_help()\n"
        "bad = [m for m in ('starlette', 'uvicorn', 'eingrad.web') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(PACKAGE.parent), "PATH": ""},
    )
    assert out.stdout.strip() == ""
