"""The ``eingrad`` command line: exit 0 on success, 1 on a user error (no traceback), 2 on bad usage."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
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
    # the guide's RNN: its gradient program, compiled code and a finite-difference check
    assert "s3_nh = tanh(x3_nd W_dh + s2_nk U_kh + b_h)" in out
    assert "dLdU_kh = " in out
    assert "dLdU = " in out  # a line of the generated numpy code
    assert "compiled gradients match the reference interpreter: True" in out
    assert out.count("PASS") == 6
    assert "FAIL" not in out
    assert "\x1b[" not in out  # no colour when stdout is not a terminal


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
    [["frobnicate"], ["parse"], ["parse", "--nope", "y = x"], ["eval", "y = x", "--seed", "x"],
     ["eval", "s = x_i x_i", "--seed", "-5"], ["check", "s = x_i x_i", "--seed=-1"]],
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


def test_a_negative_seed_is_bad_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["eval", "s = x_i x_i", "--seed", "-5"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --seed: -5 is negative" in err
    assert "Traceback" not in err


def test_bare_eingrad_prints_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)
    assert code == 2
    assert out == ""
    assert err.startswith("usage: eingrad")
    for command in ["demo", "parse", "eval", "diff", "grad", "explain", "compile", "check", "graph"]:
        assert re.search(rf"^  {command} +\S", err, re.MULTILINE), command
    assert "error:" not in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"eingrad {eg.__version__}"


# ---------------------------------------------------------------- failures outside the program


def test_stdin_closed(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", None)  # what Python sets when fd 0 is closed (eingrad parse - <&-)
    code, out, err = run(capsys, "parse", "-")
    assert code == 1
    assert err.startswith("EingradError: cannot read the program from stdin: it is closed")
    assert "Traceback" not in err


def test_stdin_unreadable(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO("y = x")
    stream.close()
    monkeypatch.setattr(sys, "stdin", stream)
    code, _, err = run(capsys, "parse", "-f", "-")
    assert code == 1
    assert err.startswith("EingradError: cannot read the program from stdin:")


class _FailingStdout(io.StringIO):
    """A stdout whose writes fail as a full disk's (or a closed pipe's) do."""

    def __init__(self, error: OSError) -> None:
        super().__init__()
        self.error = error

    def write(self, text: str) -> int:
        raise self.error


def test_stdout_on_a_full_disk(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    monkeypatch.setattr(sys, "stdout", _FailingStdout(OSError(errno.ENOSPC, "No space left on device")))
    code = main(["parse", "y_i = x_i"])
    err = capsys.readouterr().err
    assert code == 1
    assert err == "OutputError: cannot write the output: No space left on device\n"


def test_stdout_on_a_full_disk_with_json_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    monkeypatch.setattr(sys, "stdout", _FailingStdout(OSError(errno.ENOSPC, "No space left on device")))
    code = main(["parse", "--json", "y_i = x_i +"])  # the error's JSON cannot be written either
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("ParseError: ")
    assert "Traceback" not in err


def test_stdout_closed_by_the_reader(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # eingrad demo | head: the reader has gone; nothing to report, and no traceback
    monkeypatch.setattr(sys, "stdout", _FailingStdout(BrokenPipeError(32, "Broken pipe")))
    code = main(["parse", "y_i = x_i"])
    assert code == 0
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_dev_full() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "eingrad", "parse", "y_i = x_i"],
            stdout=full, stderr=subprocess.PIPE, text=True, encoding="utf-8", env=env, timeout=120,
        )
    assert result.returncode == 1
    assert result.stderr == "OutputError: cannot write the output: No space left on device\n"


@pytest.mark.parametrize(
    ("argv", "first_line"),
    [
        (["eval", "s = x_i x_i", "--size", "i=²"], "EingradError: --size 'i=²' is not of the form"),
        (["eval", "s = x_i x_i", "--size", "i=٣"], "EingradError: --size 'i=٣' is not of the form"),
        (["eval", "s = x_i x_i", "--size", "i=" + "1" * 30], "TooLargeError: the random input 'x' of shape"),
        (["eval", "s = x_i x_i", "--size", "i=100000000000"], "TooLargeError: the random input 'x' of shape"),
        (["eval", "y_ij = delta_ij", "--size", "i=100000000"], "TooLargeError: the target 'y' of shape"),
        (["compile", "s = x_i x_i", "--size", "i=100000000000"], "TooLargeError: the random input 'x'"),
        (["check", "s = x_i x_i", "--size", "i=100000000000"], "TooLargeError: the random input 'x'"),
        (["compile", "Y_ij = x_i y_j", "--size", "i=10000000", "j=10000000"], "TooLargeError: the target 'Y'"),
        (["check", "Y_ij = x_i y_j", "--size", "i=10000000", "j=10000000"], "TooLargeError: the target 'Y'"),
    ],
)
def test_sizes_that_cannot_be_used(capsys: pytest.CaptureFixture[str], argv: list[str], first_line: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 1
    assert err.startswith(first_line), err
    assert "Traceback" not in err


def test_a_huge_size_respects_eingrad_max_bytes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EINGRAD_MAX_BYTES", "1000")
    code, _, err = run(capsys, "eval", "s = x_i x_i", "--size", "i=200")
    assert code == 1
    assert "needs 1.6 KiB, more than the 1000 bytes eingrad allows one array" in err


def test_terminal_escapes_in_a_program_are_shown_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "parse", "s = x_i \x1b[2J y")
    assert code == 1
    assert "\x1b" not in err
    lines = err.splitlines()
    assert lines[1] == "  line 1: s = x_i \\x1b[2J y"
    assert lines[2] == "                  ^^^^"


@pytest.mark.parametrize(
    ("source", "span", "line", "carets"),
    [
        ("s = \x1b]0;pwned\x07 + y", (4, 5), "s = \\x1b]0;pwned\\x07 + y", "    ^^^^"),
        ("s = a\x9b + y", (7, 8), "s = a\\x9b + y", "          ^"),  # C1 CSI: the carets stay aligned
        ("s = \u202ex + y", (5, 6), "s = \\u202ex + y", "          ^"),  # a bidi override
        ("s = x\t+ \x7f", (8, 9), "s = x + \\x7f", "        ^^^^"),  # a tab is one space; DEL
        ("s = x +\r", (6, 7), "s = x +", "      ^"),  # a CRLF file's \r is not shown
    ],
)
def test_caret_excerpt_escapes_control_characters(source: str, span: tuple, line: str, carets: str) -> None:
    from eingrad.errors import Span, caret_excerpt

    shown, marks = caret_excerpt(source, [Span(*span)]).splitlines()
    assert shown == "  line 1: " + line
    assert marks == " " * len("  line 1: ") + carets


def test_an_internal_error_is_one_line_and_a_request(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import eingrad.cli.commands as commands

    def broken(*args, **kwargs):
        raise KeyError("oops")

    monkeypatch.delenv("EINGRAD_DEBUG", raising=False)
    monkeypatch.setattr(commands, "load_program", broken)
    code, out, err = run(capsys, "parse", "y = x")
    assert code == 1
    assert "Traceback" not in err
    assert err.startswith("InternalError: eingrad failed unexpectedly: KeyError: 'oops'\n")
    assert "please report it" in err
    monkeypatch.setenv("EINGRAD_DEBUG", "1")
    with pytest.raises(KeyError):
        main(["parse", "y = x"])


def test_an_os_error_that_is_not_a_write_is_internal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import eingrad.cli.commands as commands

    def broken(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.delenv("EINGRAD_DEBUG", raising=False)
    monkeypatch.setattr(commands, "load_program", broken)
    code, _, err = run(capsys, "parse", "y = x")
    assert code == 1
    assert err.startswith("InternalError: eingrad failed unexpectedly: FileNotFoundError")


def test_an_interrupt_is_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import eingrad.cli.commands as commands

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "load_program", interrupted)
    code, _, err = run(capsys, "parse", "y = x")
    assert code == 130
    assert err == "eingrad: interrupted\n"


def test_running_out_of_memory_is_reported(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import eingrad.cli.commands as commands

    def broken(*args, **kwargs):
        raise MemoryError

    monkeypatch.delenv("EINGRAD_DEBUG", raising=False)
    monkeypatch.setattr(commands, "evaluate", broken)
    code, _, err = run(capsys, "eval", "s = x_i x_i")
    assert code == 1
    assert err.startswith("MemoryError: out of memory")
    assert "Traceback" not in err


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


# ================================================================ the calculus commands

AFFINE = "Y_nh = X_nd W_dh + b_h"
RNN = (
    "# the guide's RNN, two steps\n"
    "s1_nh = tanh(x1_nd W_dh + s0_nk U_kh + b_h)\n"
    "s2_nh = tanh(x2_nd W_dh + s1_nk U_kh + b_h)\n"
    "L = sum_{n,h}(0.5 (s2_nh - y_nh)^2)\n"
)
LOGISTIC = "L = sum_i(softplus(-y_i X_ij w_j)) + 0.5 lam w_j w_j"


@pytest.fixture
def rnn_file(tmp_path: Path) -> Path:
    path = tmp_path / "rnn.eg"
    path.write_text(RNN, encoding="utf-8")
    return path


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code, out, err = run(capsys, *argv)
    return code, json.loads(out)


# ---------------------------------------------------------------- diff


def test_diff_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "diff", "f_i = W_ij v_j", "--wrt", "W")
    assert (code, err) == (0, "")
    assert out == "∂f_i/∂W_kl = δ_ik v_l\n"


def test_diff_hessian_latex(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "diff", "s = x_i A_ij x_j", "--wrt", "x", "--order", "2", "--latex")
    assert code == 0
    assert out.strip() == eg.hessian("s = x_i A_ij x_j", "x").latex()
    assert out.startswith("\\frac{\\partial^{2} s}")


def test_diff_of_another_target(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "diff", f"{AFFINE}; L = G_nh Y_nh", "--wrt", "b", "--output", "Y")
    assert code == 0
    assert out.startswith("∂Y_nh/∂b_")


def test_diff_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "diff", AFFINE, "--wrt", "W", "--json", "--size", "n=4", "h=2")
    assert code == 0
    assert data["output"] == "Y" and data["wrt"] == "W" and data["order"] == 1
    assert data["result"] == str(eg.diff(AFFINE, "W"))
    assert data["latex"] == eg.diff(AFFINE, "W").latex()
    assert data["axes"] == ["n", "h", "d", "h"]
    assert data["shape"] == [4, 2, None, 2]  # d is not sized; W's h axis is Y's h
    # the shape is the evaluated derivative's
    rng = np.random.default_rng(0)
    arrays = {"X": rng.standard_normal((4, 5)), "W": rng.standard_normal((5, 2)), "b": rng.standard_normal(2)}
    value = eg.evaluate(eg.diff(AFFINE, "W"), arrays)
    assert list(value.shape) == [s if s is not None else 5 for s in data["shape"]]
    assert data["zero"] is False


def test_diff_json_without_sizes_has_no_shape(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "diff", "s = x_i A_ij x_j", "--wrt", "x", "--order", "2", "--json")
    assert code == 0
    assert data["shape"] is None
    assert len(data["wrt_indices"]) == 2
    assert data["indices"] == [i for group in data["wrt_indices"] for i in group]


def test_diff_zero_derivative_warns(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "diff", "L = a b; M = a", "--wrt", "b")
    assert code == 0
    assert out == "∂M/∂b = 0\n"
    assert err.startswith("ZeroDerivativeWarning: 'M' does not depend on 'b'")


# ---------------------------------------------------------------- grad


def test_grad_scalar(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "grad", LOGISTIC, "--wrt", "w")
    assert (code, err) == (0, "")
    assert out.strip() == str(eg.grad(LOGISTIC, wrt=["w"]))


def test_grad_of_a_layer_gets_an_upstream_input(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "grad", AFFINE, "--wrt", "W", "b")
    assert code == 0
    assert out.strip().splitlines() == [AFFINE, "dLdW_dh = X_nd dLdY_nh", "dLdb_h = Σ_n dLdY_nh"]
    assert err.startswith("note: Y_nh is not a scalar: its upstream gradient is the input dLdY_nh")


def test_grad_printed_program_computes_the_gradient(capsys: pytest.CaptureFixture[str]) -> None:
    """The printed text parses back into a program whose values are numpy's gradients."""
    code, out, _ = run(capsys, "grad", AFFINE, "--wrt", "W,b,X", "--seed-name", "G", "--prefix", "grad")
    assert code == 0
    rng = np.random.default_rng(3)
    X, W, b, G = (rng.standard_normal(s) for s in [(5, 3), (3, 2), (2,), (5, 2)])
    got = eg.evaluate(eg.parse(out), X=X, W=W, b=b, G=G)
    np.testing.assert_allclose(got["gradW"], X.T @ G)
    np.testing.assert_allclose(got["gradb"], G.sum(axis=0))
    np.testing.assert_allclose(got["gradX"], G @ W.T)


def test_grad_latex_and_json(capsys: pytest.CaptureFixture[str], rnn_file: Path) -> None:
    code, out, _ = run(capsys, "grad", "-f", str(rnn_file), "--wrt", "W", "U", "--latex")
    assert code == 0
    assert out.strip() == eg.grad(RNN, wrt=["W", "U"]).latex()
    code, data = run_json(capsys, "grad", "-f", str(rnn_file), "--wrt", "W", "U", "--json")
    assert code == 0
    assert data["gradients"] == {"W": "dLdW", "U": "dLdU"}
    assert data["seed"] is None
    assert data["result"]["text"] == str(eg.grad(RNN, wrt=["W", "U"]))
    assert data["result"]["targets"]["dLdU"] == ["k", "h"]


# ---------------------------------------------------------------- explain


def test_explain_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", f"{AFFINE}; L = G_nh Y_nh", "--wrt", "b")
    assert code == 0
    assert "1. chain rule through Y, summing over its indices:" in out
    assert out.strip().endswith("result: ∂L/∂b_i = Σ_n G_ni")


def test_explain_latex(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", "s = x_i A_ij x_j", "--wrt", "x", "--latex")
    assert code == 0
    assert out.startswith("\\begin{aligned}")
    assert out.strip().endswith("\\end{aligned}")


def test_explain_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "explain", f"{AFFINE}; L = G_nh Y_nh", "--wrt", "b", "--json")
    assert code == 0
    steps = data["steps"]
    assert steps[0]["reason"] == "chain rule through Y, summing over its indices"
    assert steps[1] == {
        "reason": "differentiate L with respect to Y",
        "lhs": "∂L/∂Y_nh",
        "rhs": "G_nh",
        "latex": "\\frac{\\partial L}{\\partial Y_{nh}} &= G_{nh} && \\text{differentiate L with respect to Y}",
    }
    assert steps[-1]["rhs"] == "Σ_n G_ni"
    assert data["result"] == "∂L/∂b_i = Σ_n G_ni"


# ---------------------------------------------------------------- compile


def load_printed_code(source: str):
    """The printed module, run: it must stand on its own (it imports its backend)."""
    namespace: dict = {}
    exec(compile(source, "<printed by eingrad compile>", "exec"), namespace)  # noqa: S102 - our own output
    return namespace["compiled"]


def test_compile_gradient_prints_runnable_code(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "compile", AFFINE, "--wrt", "W", "b", "--size", "n=5", "d=4", "h=3")
    assert code == 0
    assert out.startswith("# the gradient of Y with respect to W, b, compiled by eingrad for the numpy backend")
    assert "# for inputs of shapes X[5, 4], W[4, 3], b[3], dLdY[5, 3]" in out
    assert "import numpy as xp" in out
    assert "    # dLdW_dh = X_nd dLdY_nh\n    dLdW = " in out  # each statement's code under its text
    rng = np.random.default_rng(1)
    X, W, b, G = (rng.standard_normal(s) for s in [(5, 4), (4, 3), (3,), (5, 3)])
    got = load_printed_code(out)({"X": X, "W": W, "b": b, "dLdY": G})
    np.testing.assert_allclose(got["Y"], X @ W + b)
    np.testing.assert_allclose(got["dLdW"], X.T @ G)
    np.testing.assert_allclose(got["dLdb"], G.sum(axis=0))


def test_compile_forward_program_json(capsys: pytest.CaptureFixture[str], rnn_file: Path) -> None:
    code, data = run_json(capsys, "compile", "-f", str(rnn_file), "--size", "h=4", "n=2", "--json")
    assert code == 0
    assert data["backend"] == "numpy" and data["outputs"] == ["s1", "s2", "L"]
    assert data["inputs"]["U"] == [4, 4] and data["inputs"]["s0"] == [2, 4]  # k is h's axis
    rng = np.random.default_rng(2)
    arrays = {k: rng.standard_normal(s) for k, s in data["inputs"].items()}
    got = load_printed_code(data["source"])(arrays)
    s1 = np.tanh(arrays["x1"] @ arrays["W"] + arrays["s0"] @ arrays["U"] + arrays["b"])
    s2 = np.tanh(arrays["x2"] @ arrays["W"] + s1 @ arrays["U"] + arrays["b"])
    np.testing.assert_allclose(got["L"], 0.5 * np.sum((s2 - arrays["y"]) ** 2))


def test_compile_one_target_to_a_file(capsys: pytest.CaptureFixture[str], rnn_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "s1.py"
    code, out, _ = run(capsys, "compile", "-f", str(rnn_file), "--output", "s1", "-o", str(target))
    assert (code, out) == (0, "")
    source = target.read_text(encoding="utf-8")
    assert "return {'s1': s1}" in source
    assert "s2 =" not in source


def test_compile_for_another_backend(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("dask.array")
    code, out, _ = run(capsys, "compile", AFFINE, "--backend", "dask")
    assert code == 0
    assert "import dask.array as xp" in out


def test_compile_unknown_backend(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "compile", AFFINE, "--backend", "nump")
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "BackendError: unknown backend 'nump' (the backends are numpy, cupy, dask, torch, jax)",
        "  hint: did you mean 'numpy'? use --backend numpy (the default)",
    ]


def test_compile_backend_not_installed(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    code, _, err = run(capsys, "compile", AFFINE, "--backend", "cupy")
    assert code == 1
    assert err.splitlines() == [
        "BackendError: the cupy backend needs the package 'cupy', which is not installed",
        "  hint: pip install 'eingrad[cupy]'",
    ]


# ---------------------------------------------------------------- check


def test_check_passes(capsys: pytest.CaptureFixture[str], rnn_file: Path) -> None:
    code, out, err = run(capsys, "check", "-f", str(rnn_file), "--wrt", "W", "U", "b", "--size", "h=4", "n=2")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[1] == "inputs: standard normal, seed 0; every axis 3 unless sized: h=4 n=2"
    assert lines[3].split() == ["wrt", "shape", "derivative", "max", "rel.", "error", "result"]
    rows = [line.split() for line in lines[4:10]]
    assert [(r[0], r[-1]) for r in rows] == [(w, "PASS") for w in "WWUUbb"]
    assert "(4, 4)  diff, order 1" in out and "(4, 4)  grad (reverse mode)" in out
    assert lines[-1] == "all 6 checks pass"


def test_check_every_input_of_a_layer_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "check", AFFINE, "--json", "--size", "n=4")
    assert code == 0 and data["pass"] is True
    assert [(c["wrt"], c["mode"]) for c in data["checks"]] == [
        (w, m) for w in ["X", "W", "b"] for m in ["diff", "grad"]
    ]
    assert data["shapes"] == {"X": [4, 3], "W": [3, 3], "b": [3]}
    assert all(c["error"] < 1e-6 for c in data["checks"])


def test_check_hessian(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", LOGISTIC, "--wrt", "w", "--order", "2")
    assert code == 0
    assert "diff, orders 1-2" in out


def test_check_fails_when_differences_are_coarse(capsys: pytest.CaptureFixture[str]) -> None:
    """A step of 0.3 makes central differences of exp off by ~1%: both checks fail, exit 1."""
    code, out, _ = run(capsys, "check", "y_i = exp(x_i)", "--eps", "0.3")
    assert code == 1
    assert out.count("FAIL") == 2 + 2 + 1  # two rows, two reasons, the summary
    assert "order-1 derivative of 'y' with respect to 'x' disagrees with finite differences" in out
    assert out.strip().endswith("2 of 2 checks FAIL")
    code, data = run_json(capsys, "check", "y_i = exp(x_i)", "--eps", "0.3", "--json")
    assert code == 1 and data["pass"] is False
    assert all(1e-3 < c["error"] < 1e-1 for c in data["checks"])


def test_check_catches_a_wrong_derivative(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The check compares with numbers: a derivative twice too large, or a gradient off by one, fails."""
    import dataclasses

    import eingrad.cli.check as check_module
    import eingrad.gradcheck as gradcheck
    from eingrad.expr import Const, mul

    real_diff, real_grad = gradcheck.diff, check_module.grad

    def doubled(*args, **kwargs):
        d = real_diff(*args, **kwargs)
        return dataclasses.replace(d, expr=mul(Const(2), d.expr))

    def shifted(*args, **kwargs):
        return eg.parse(str(real_grad(*args, **kwargs)) + " + 1")

    monkeypatch.setattr(gradcheck, "diff", doubled)
    code, out, _ = run(capsys, "check", "s = x_i A_ij x_j", "--wrt", "x")
    assert code == 1
    cells = [re.split(r"\s{2,}", line) for line in out.splitlines() if line.startswith("x ")]
    rows = {row[2]: row[-1] for row in cells}
    assert rows == {"diff, order 1": "FAIL", "grad (reverse mode)": "PASS"}
    monkeypatch.setattr(gradcheck, "diff", real_diff)
    monkeypatch.setattr(check_module, "grad", shifted)
    code, out, _ = run(capsys, "check", "s = x_i A_ij x_j", "--wrt", "x")
    assert code == 1
    assert "reverse-mode gradient dsdx of 's' disagrees with finite differences" in out


def test_check_refuses_values_that_are_not_finite(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", "L = sum_i(log(p_i) q_i)")
    assert (code, out) == (1, "")
    assert err.startswith("EingradError: L is not finite at the random inputs")
    assert "--positive" in err
    code, out, _ = run(capsys, "check", "L = sum_i(log(p_i) q_i)", "--positive")
    assert code == 0
    assert "inputs: uniform on [0.5, 1.5]" in out


@pytest.mark.parametrize(
    ("argv", "first_line"),
    [
        (["--order", "0"], "EingradError: --order must be positive, got 0"),
        (["--eps", "-1"], "EingradError: --eps must be positive, got -1.0"),
        (["--wrt", "q"], "DiffError: 'q' is not an input of the program (its inputs are A, x)"),
        (["--output", "z"], "EingradError: 'z' is not a target of the program (its targets are y)"),
    ],
)
def test_check_bad_options(capsys: pytest.CaptureFixture[str], argv: list[str], first_line: str) -> None:
    code, out, err = run(capsys, "check", "y_i = A_ij x_j", *argv)
    assert (code, out) == (1, "")
    assert err.startswith(first_line)


# ---------------------------------------------------------------- graph


def test_graph_dot_fills_the_shared_parameters(capsys: pytest.CaptureFixture[str], rnn_file: Path) -> None:
    code, out, _ = run(capsys, "graph", str(rnn_file))  # a plain file name works too
    assert code == 0
    assert out == eg.parse(RNN).to_dot(parameters=["W", "U", "b"]) + "\n"
    assert '"U" -> "s2";' in out


def test_graph_explicit_parameters_and_gradient(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "graph", AFFINE, "--parameters", "W", "b", "--wrt", "W", "b")
    assert code == 0
    assert '"W" [shape=box, label="W_dh", style=filled' in out
    assert '"X" [shape=box, label="X_nd"];' in out
    assert '"dLdY" -> "dLdb";' in out


def test_graph_svg_without_graphviz(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    code, out, err = run(capsys, "graph", AFFINE, "--svg")
    assert (code, out) == (1, "")
    assert err.startswith("EingradError: SVG output needs Graphviz's 'dot' program, which is not on the PATH")
    assert "install Graphviz" in err and "eingrad graph PROGRAM > graph.dot" in err


def fake_dot(tmp_path: Path, script: str) -> str:
    path = tmp_path / "dot"
    path.write_text("#!/bin/sh\n" + script, encoding="utf-8")
    path.chmod(0o755)
    return str(path)


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script stands in for Graphviz")
def test_graph_svg_runs_graphviz(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    dot = fake_dot(tmp_path, 'test "$1" = -Tsvg || exit 3\necho "<svg>"; cat; echo "</svg>"\n')
    monkeypatch.setattr(shutil, "which", lambda name: dot if name == "dot" else None)
    target = tmp_path / "affine.svg"
    code, out, _ = run(capsys, "graph", AFFINE, "--format", "svg", "-o", str(target))
    assert (code, out) == (0, "")
    svg = target.read_text(encoding="utf-8")
    assert svg.startswith("<svg>\ndigraph program {") and svg.endswith("</svg>\n")


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script stands in for Graphviz")
def test_graph_svg_graphviz_fails(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    dot = fake_dot(tmp_path, 'echo "syntax error in line 1" >&2; exit 1\n')
    monkeypatch.setattr(shutil, "which", lambda name: dot)
    code, _, err = run(capsys, "graph", AFFINE, "--svg")
    assert code == 1
    assert err.startswith("EingradError: Graphviz's dot failed: syntax error in line 1")


def test_graph_unknown_parameter(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "graph", AFFINE, "--parameters", "Y")
    assert code == 1
    assert err.startswith("EingradError: --parameters names 'Y', which is not an input of the program")


# ---------------------------------------------------------------- parse and eval as JSON


def test_parse_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "parse", f"{AFFINE}; L = G_nh Y_nh", "--json")
    assert code == 0
    program = data["program"]
    assert program["statements"] == [AFFINE, "L = G_nh Y_nh"]
    assert program["inputs"] == {"X": ["n", "d"], "W": ["d", "h"], "b": ["h"], "G": ["n", "h"]}
    assert program["targets"] == {"Y": ["n", "h"], "L": []}


def test_eval_json_values_are_numpys(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "eval", AFFINE, "--size", "n=4,d=3", "--size", "h=2", "--json")
    assert code == 0
    X, W, b = (np.array(data["inputs"][k]["value"]) for k in "XWb")
    assert data["outputs"]["Y"]["shape"] == [4, 2]
    np.testing.assert_allclose(data["outputs"]["Y"]["value"], X @ W + b)


# ---------------------------------------------------------------- where the program comes from


def test_program_from_file_option(capsys: pytest.CaptureFixture[str], rnn_file: Path) -> None:
    for argv in (["-f", str(rnn_file)], ["--file", str(rnn_file)], [f"@{rnn_file}"], [str(rnn_file)]):
        code, out, err = run(capsys, "parse", *argv)
        assert code == 0, err
        assert out.strip() == str(eg.parse(RNN))


def test_program_from_stdin_with_file_option(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("s = x_i A_ij x_j\n"))
    code, out, _ = run(capsys, "diff", "-f", "-", "--wrt", "x")
    assert code == 0
    assert out.strip() == str(eg.diff("s = x_i A_ij x_j", "x"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-f", "missing.eg"], "EingradError: cannot read program file 'missing.eg': No such file or directory"),
        (["missing.eg"], "EingradError: cannot read program file 'missing.eg': No such file or directory"),
        (["dir/"], "EingradError: cannot read program file 'dir/'"),
    ],
)
def test_missing_program_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dir").mkdir()
    code, out, err = run(capsys, "diff", *argv, "--wrt", "x")
    assert (code, out) == (1, "")
    assert err.startswith(message)
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["parse"], "give a program: as text, with -f FILE, or - to read stdin"),
        (["parse", "y = x", "-f", "p.eg"], "give the program once: as text or with -f FILE, not both"),
        (["diff", "y = x"], "the following arguments are required: --wrt"),
        (["grad", "y = x", "--wrt"], "argument --wrt: expected at least one argument"),
        (["diff", "y = x", "--wrt", "x", "--order", "two"], "argument --order: invalid int value: 'two'"),
        (["graph", "y = x", "--format", "png"], "argument --format: invalid choice: 'png'"),
        (["diff", "y = x", "--wrt", "x", "--latex", "--json"], "argument --json: not allowed with argument --latex"),
    ],
)
def test_usage_errors_exit_2_with_the_commands_usage(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: eingrad {argv[0]}")
    assert message in err


# ---------------------------------------------------------------- sizes


def test_sizes_reach_linked_axes(capsys: pytest.CaptureFixture[str], rnn_file: Path) -> None:
    """s0_nk feeds U_kh, and s1_nh is read as s1_nk: --size h=4 sizes every one of those axes."""
    code, out, err = run(capsys, "eval", "-f", str(rnn_file), "--size", "h=4")
    assert code == 0, err
    assert "s0 (3, 4) =" in out and "U (4, 4) =" in out and "x1 (3, 3) =" in out


@pytest.mark.parametrize(
    ("argv", "first_line"),
    [
        (["--size", "h=4", "k=3"], "EingradError: --size gives h=4 and k=3, but the program makes 'h' and 'k' the same axis"),
        (["--size", "q=3"], "EingradError: --size gives a size to index 'q', which the program does not use"),
        (["--size", "n=3", "n=4"], "EingradError: --size gives index 'n' two sizes, 3 and 4"),
        (["--size", "n=-1"], "EingradError: --size 'n=-1' is not of the form index=positive integer"),
    ],
)
def test_bad_sizes(capsys: pytest.CaptureFixture[str], rnn_file: Path, argv: list[str], first_line: str) -> None:
    for command in ("eval", "check", "compile"):
        code, out, err = run(capsys, command, "-f", str(rnn_file), *argv)
        assert (code, out) == (1, ""), command
        assert err.startswith(first_line), err


# ---------------------------------------------------------------- errors on every calculus command


@pytest.mark.parametrize("command", ["diff", "grad", "explain", "compile", "check"])
def test_unknown_wrt(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, err = run(capsys, command, "y_i = A_ij x_j", "--wrt", "q")
    assert (code, out) == (1, "")
    assert err.splitlines()[-2].endswith("'q' is not an input of the program (its inputs are A, x)")
    assert err.splitlines()[-1] == "  hint: --wrt names inputs of the program"


@pytest.mark.parametrize("command", ["parse", "eval", "diff", "grad", "explain", "compile", "check", "graph"])
def test_bad_program_shows_the_caret(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, err = run(capsys, command, "y_i = (A_ij x_j", *(["--wrt", "A"] if command in ("diff", "grad", "explain") else []))
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "ParseError: '(' is never closed",
        "  line 1: y_i = (A_ij x_j",
        "                ^",
        "  hint: add the ')' that closes it",
    ]


def test_wrt_a_target(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "diff", "y_i = A_ij x_j", "--wrt", "y")
    assert code == 1
    assert err.splitlines()[:3] == [
        "DiffError: 'y' is computed by the program, not an input: derivatives are taken with respect "
        "to inputs (the inputs are A, x)",
        "  line 1: y_i = A_ij x_j",
        "          ^^^",
    ]


def test_hints_speak_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "eval", "y_ij = delta_ij")
    assert code == 1
    assert err.splitlines()[-1] == "  hint: declare it, e.g. --size i=3"
    code, _, err = run(capsys, "diff", "y = x", "--wrt", "x", "--order", "0")
    assert err.splitlines()[-1] == "  hint: use --order 1 or --order 2"


def test_json_errors_are_json_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "diff", "y = tanhh(x)", "--wrt", "x", "--json")
    assert code == 1
    assert err.startswith("UnknownFunctionError: unknown function 'tanhh'")
    error = json.loads(out)["error"]
    assert error["type"] == "UnknownFunctionError"
    assert (error["line"], error["column"]) == (1, 5)
    assert error["hint"].startswith("did you mean tanh(...)?")


# ---------------------------------------------------------------- colour


def test_colour_on_a_terminal(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TERM", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, _, err = run(capsys, "parse", "y = tanhh(x)")
    assert code == 1
    assert err.startswith("\x1b[1;31mUnknownFunctionError\x1b[0m: unknown function 'tanhh'")
    code, out, _ = run(capsys, "check", "s = x_i x_i")
    assert code == 0
    assert "\x1b[1;32mPASS\x1b[0m" in out
    code, out, _ = run(capsys, "demo")
    assert "\x1b[1mThe guide's affine layer" in out


def test_no_colour_with_NO_COLOR(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, _, err = run(capsys, "parse", "y = tanhh(x)")
    assert code == 1
    assert err.startswith("UnknownFunctionError: unknown function 'tanhh'")


def test_no_colour_when_piped(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    _, _, err = run(capsys, "parse", "y = tanhh(x)")
    assert "\x1b[" not in err


# ---------------------------------------------------------------- help


@pytest.mark.parametrize("command", ["demo", "parse", "eval", "diff", "grad", "explain", "compile", "check", "graph"])
def test_every_command_has_help_with_examples(capsys: pytest.CaptureFixture[str], command: str) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: eingrad {command}")
    examples = out.split("examples:\n", 1)[1].splitlines()
    assert examples and all(line.startswith(f"  eingrad {command}") or "|" in line for line in examples)


def test_main_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ["demo", "parse", "eval", "diff", "grad", "explain", "compile", "check", "graph"]:
        assert f"    {command} " in out


def test_python_m_eingrad_reads_stdin() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "eingrad", "grad", "-", "--wrt", "w", "--json"],
        input=LOGISTIC,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["gradients"] == {"w": "dLdw"}


# ---------------------------------------------------------------- --matrix


def test_diff_matrix_form(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "diff", "s = x_i A_ij x_j", "--wrt", "x", "--order", "2", "--matrix")
    assert code == 0
    assert out.splitlines() == ["∂²s/∂x_k∂x_n = A_kn + A_nk", "matrix form: ∂²s/∂x² = A + Aᵀ"]
    code, out, _ = run(capsys, "diff", "f_i = W_ij v_j", "--wrt", "W", "--matrix")
    assert code == 0 and out.splitlines()[-1].startswith("no matrix form (the result has 3 free indices")
    code, out, _ = run(capsys, "diff", "f_i = W_ij v_j", "--wrt", "v", "--latex", "--matrix")
    assert code == 0 and out.splitlines()[-1] == "\\frac{\\partial f}{\\partial v} = W"


def test_grad_matrix_form_agrees_with_numpy(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "grad", "Y_nh = X_nd W_dh + b_h", "--wrt", "W", "b", "X", "--matrix")
    assert code == 0
    lines = out.splitlines()
    assert "matrix form: dLdW = Xᵀ dLdY" in lines and "matrix form: dLdX = dLdY Wᵀ" in lines, out
    assert "matrix form: dLdb = dLdYᵀ 𝟏" in lines, out
    # The same forms, checked numerically through the JSON the tools read.
    code, out, _ = run(capsys, "grad", "Y_nh = X_nd W_dh + b_h", "--wrt", "W", "b", "--json")
    matrix = json.loads(out)["matrix"]
    assert matrix["dLdW"]["text"] == "Xᵀ dLdY" and matrix["dLdb"]["reason"] is None
    g = eg.grad("Y_nh = X_nd W_dh + b_h", wrt=["W", "b"], seed="dLdY")
    rng = np.random.default_rng(0)
    arrays = {"X": rng.standard_normal((5, 3)), "W": rng.standard_normal((3, 4)), "b": rng.standard_normal(4),
              "dLdY": rng.standard_normal((5, 4))}
    form = eg.matrix_form(g.statement("dLdW"))
    np.testing.assert_allclose(form.evaluate(arrays), arrays["X"].T @ arrays["dLdY"])


def test_json_says_why_there_is_no_matrix_form(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "diff", "f_i = W_ij v_j", "--wrt", "W", "--json")
    assert code == 0
    matrix = json.loads(out)["matrix"]
    assert matrix["text"] is None and "3 free indices" in matrix["reason"]
