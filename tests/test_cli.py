"""The ``eingrad`` command line: exit 0 on success, 1 on a user error (no traceback), 2 on bad usage."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

import eingrad as eg
from eingrad.cli import main

SRC = Path(__file__).resolve().parent.parent / "src"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_demo(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "demo")
    assert code == 0
    assert "Y_nh = X_nd W_dh + b_h" in out
    assert "matches numpy X @ W + b: True" in out
    # the guide's incompatible shapes, shown as a SizeError with carets
    assert "SizeError: index 'd' has size 3 in X_nd (axis 1) but size 2 in W_dh (axis 0)" in out
    assert "^^^^ ^^^^" in out
    assert "Traceback" not in out + err


@pytest.mark.parametrize(
    "text",
    [
        "C_ik = A_ij B_jk W_ik",
        "Y_nh = X_nd W_dh + b_h",
        "v_i = A_ij δ_jk B_ik",
        "L = Σ_i(softplus(-y_i X_ij w_j)) + 0.5 lam w_j w_j",
    ],
)
def test_parse_round_trips(capsys: pytest.CaptureFixture[str], text: str) -> None:
    code, out, err = run(capsys, "parse", text)
    assert code == 0, err
    printed = out.strip()
    assert printed == str(eg.parse(text))
    assert eg.parse(printed) == eg.parse(text)


def test_parse_normalises_spelling(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "parse", "y_{i} = A[i, j] * x_{j}")
    assert code == 0
    assert out.strip() == "y_i = A_ij x_j"


def test_parse_latex(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "parse", "--latex", "Y_nh = X_nd W_dh + b_h")
    assert code == 0
    assert out.strip() == "Y_{nh} &= X_{nd} W_{dh} + b_{h}"


def test_parse_latex_of_a_sum(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "parse", "--latex", "L = sum_i(softplus(-y_i X_ij w_j))")
    assert code == 0
    assert out.startswith("L &= \\sum_{i}")


def test_program_from_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "affine.eg"
    path.write_text(
        "# an affine layer, then a loss\nY_nh = X_nd W_dh + b_h\nL = G_nh Y_nh\n", encoding="utf-8"
    )
    code, out, err = run(capsys, "parse", f"@{path}")
    assert code == 0, err
    assert out.strip().splitlines() == ["Y_nh = X_nd W_dh + b_h", "L = G_nh Y_nh"]


def test_program_from_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("t = A_ii\n"))
    code, out, _ = run(capsys, "parse", "-")
    assert code == 0
    assert out.strip() == "t = A_ii"


def test_eval_with_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "eval", "Y_nh = X_nd W_dh + b_h", "--size", "n=4", "d=3", "h=2")
    assert code == 0, err
    assert "X (4, 3) =" in out
    assert "W (3, 2) =" in out
    assert "b (2,) =" in out
    assert "Y (4, 2) =" in out


def test_eval_sizes_reach_indices_only_in_deltas(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "eval", "y_ij = delta_ij", "--size", "i=2")
    assert code == 0, err
    assert "y (2, 2) =" in out


def test_eval_default_size_is_three(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "eval", "s = x_i x_i")
    assert code == 0
    assert "x (3,) =" in out
    assert "s () =" in out


def test_surprising_sum_warning_is_printed_plainly(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "parse", "L = log(p_i)")
    assert code == 0
    assert out.strip() == "L = log(Σ_i p_i)"
    assert err.startswith("SurprisingSumWarning: index 'i' occurs once, inside log(...)")


# ---------------------------------------------------------------- user errors: exit 1


@pytest.mark.parametrize(
    ("argv", "first_line"),
    [
        (["parse", "y_i = (A_ij x_j"], "ParseError: '(' is never closed"),
        (["parse", "y_i = foo(x_i)"], "UnknownFunctionError: unknown function 'foo'"),
        (["parse", "C_ik = A_ij B_jj"], "IndexRuleError: target index 'k' does not occur"),
        (["eval", "y ="], "ParseError: the right-hand side of '=' is empty"),
        (["eval", "y_ij = delta_ij"], "SizeError: the size of index 'i' cannot be determined"),
        (["eval", "y = x", "--size", "i=x"], "EingradError: --size 'i=x' is not of the form"),
        (["eval", "y = x", "--size", "i=0"], "EingradError: --size 'i=0' is not of the form"),
        (["eval", "y = x", "--size", "i"], "EingradError: --size 'i' is not of the form"),
        (["parse", "@nope.txt"], "EingradError: cannot read program file 'nope.txt'"),
    ],
)
def test_user_errors_exit_1_without_a_traceback(
    capsys: pytest.CaptureFixture[str], argv: list[str], first_line: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 1
    assert out == ""
    assert err.splitlines()[0].startswith(first_line), err
    assert "Traceback" not in err


def test_parse_error_shows_the_caret(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "parse", "y = tanhh(x)")
    assert code == 1
    assert err.splitlines()[1:3] == ["  line 1: y = tanhh(x)", "              ^^^^^"]
    assert "hint: did you mean tanh(...)?" in err


def test_a_file_that_is_not_text(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "binary.eg"
    path.write_bytes(b"y = \xff\xfe x")
    code, _, err = run(capsys, "parse", f"@{path}")
    assert code == 1
    assert "it is not UTF-8 text" in err
    assert "Traceback" not in err


def test_a_bad_program_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("y = x\nz = w $\n"))
    code, _, err = run(capsys, "parse", "-")
    assert code == 1
    assert err.splitlines()[:2] == ["ParseError: unexpected character '$'", "  line 2: z = w $"]


# ---------------------------------------------------------------- bad usage: exit 2


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate"], ["parse"], ["parse", "--nope", "y = x"], ["eval", "y = x", "--seed", "x"]],
)
def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    _, err = capsys.readouterr()
    assert err.startswith("usage: eingrad")


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "eingrad demo" in capsys.readouterr().out


# ---------------------------------------------------------------- python -m eingrad


def test_python_m_eingrad_demo() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "eingrad", "demo"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Y_nh = X_nd W_dh + b_h" in result.stdout
    assert "SizeError" in result.stdout


def test_python_m_eingrad_user_error_exits_1() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "eingrad", "parse", "y = x^y"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("ParseError: an exponent must be a constant number")
    assert "Traceback" not in result.stderr
