"""Property-based fuzzing: on any text, only an EingradError escapes, in bounded time.

Texts come from a grammar of the language (with wrong pieces mixed in:
reserved words, unknown functions, Unicode digits, huge numbers, unclosed
parentheses) and from mutations of the corpus programs (tests/corpus.py).
Each text goes through ``parse``; a program that parses also goes through
``str`` (and must parse back to an equal program), ``latex``, ``diff`` and
``grad``; a sample goes through the command line in-process
(``eingrad.cli.main``), whose exit code must be 0, 1 or 2 with no traceback.

The runs are derandomized (the same examples every time) and sized to take
well under a minute together; ``deadline`` bounds the time of each example.
"""

from __future__ import annotations

import contextlib
import io
import signal
import threading
import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eingrad as eg
from corpus import CORPUS
from eingrad.cli import main

TIME_LIMIT = 20.0  # seconds for one text, whatever the machine's load; a hang fails at once

SETTINGS = dict(
    derandomize=True,
    deadline=5000,  # ms per example: a hang (1e100000000, order 10**6) fails the run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

# ---------------------------------------------------------------- texts from the grammar

# Tensors keep one rank each (scalars, vectors, matrices), so that most texts are programs.
SCALARS = ["x", "lam", "σ", "s0"]
VECTORS = ["v", "b", "u"]
MATRICES = ["A", "W", "W1", "dLdY"]
VECTOR_INDICES = ["_i", "_j", "_k", "[n]", "_{i}"]
MATRIX_INDICES = ["_ij", "_jk", "_ii", "_ki", "_{i,j}", "[n, h]", "_{ij}"]
WRONG_NAMES = ["sum", "mean", "max", "softmax", "inv", "det", "exp", "delta", "δ", "norm", "Σ", "logsumexp"]
WRONG_INDICES = ["", "_i", "_ij", "_", "_1", "_{}", "[i j]", "_i_j", "_i1", "[sum]"]
NUMBERS = ["0", "1", "2", "0.5", ".5", "1e-3", "3.", "1e308", "5e-324", "9" * 40]
WRONG_NUMBERS = ["1e400", "1e-400", "1.2.3", "1e100000000", "9" * 1200]
FUNCTIONS = ["exp", "log", "sqrt", "tanh", "sigmoid", "relu", "softplus", "abs", "sin", "cos"]
WRONG_FUNCTIONS = ["foo", "tanhh", "max", "mean", "W", "x"]
# Each binder with a reference that holds its indices (put inside, so that they occur there).
BINDERS = [
    ("sum_i", "v_i"), ("sum_j", "u_j"), ("sum_{i,j}", "A_ij"), ("Σ_k", "b_k"), ("logsumexp_i", "v_i"),
    ("sum[n]", "b[n]"), ("sum_{n,h}", "W[n, h]"),
]
WRONG_BINDERS = [
    ("mean_i", "v_i"), ("max_j", "u_j"), ("norm_i", "v_i"), ("W_ij", "x"), ("softmax_k", "b_k"), ("det_ij", "A_ij"),
    ("sum_ii", "v_i"), ("sum", "x"), ("sum_k", "x"),
]
JUNK = ["²", "₂", "٣", "'", "$", "\ufeff", "(", ")", "_", "|", "^", "=", ";", "\n", "#", ".", "√", "−", "·", "½"]


def _grammar(wrong: bool) -> st.SearchStrategy[str]:
    """Statements of the language; with ``wrong``, wrong pieces are mixed in (about one in ten)."""

    def pick(right: list, bad: list) -> st.SearchStrategy[str]:
        return st.one_of(*[st.sampled_from(right)] * 19, st.sampled_from(bad)) if wrong else st.sampled_from(right)

    def named(names: list[str], indices: list[str]) -> st.SearchStrategy[str]:
        return st.builds(str.__add__, st.sampled_from(names), st.sampled_from(indices))

    atoms = [
        st.sampled_from(SCALARS),
        named(VECTORS, VECTOR_INDICES),
        named(MATRICES, MATRIX_INDICES),
        named(MATRICES, MATRIX_INDICES),
        pick(NUMBERS, WRONG_NUMBERS),
        st.sampled_from(["|i|", "|n|", "δ_ij", "delta_{i,j}"]),
    ]
    if wrong:
        atoms.append(named(WRONG_NAMES + SCALARS + VECTORS, WRONG_INDICES))
    atom = st.one_of(*atoms)

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        two = st.tuples(inner, inner)
        operator = st.sampled_from([" + ", " - ", " ", " ", " * ", " / "] + (["", "="] if wrong else []))
        exponent = pick(["2", "-1", "(1/2)", "(2^3)", "3", "-2"], ["x", "1e300", "(x)", "2^3"])
        branches = [
            st.builds(lambda ab, op: f"{ab[0]}{op}{ab[1]}", two, operator),
            st.builds(lambda ab, op: f"{ab[0]}{op}{ab[1]}", two, operator),
            st.builds(lambda a: f"-{a}", inner),
            st.builds(lambda a, e: f"({a})^{e}", inner, exponent),
            st.builds(lambda a: f"({a})", inner),
            st.builds(lambda f, a: f"{f}({a})", pick(FUNCTIONS, WRONG_FUNCTIONS), inner),
            st.builds(lambda b, a, op: f"{b[0]}({a}{op}{b[1]})", pick(BINDERS, WRONG_BINDERS), inner, operator),
        ]
        if wrong:
            branches.append(
                st.builds(lambda a, j, k: a[:k] + j + a[k:], inner, st.sampled_from(JUNK), st.integers(0, 40))
            )
        return st.one_of(*branches)

    expression = st.recursive(atom, extend, max_leaves=10)
    def statement(scalar: str, vector: str, matrix: str) -> st.SearchStrategy[str]:
        target = st.one_of(
            *[st.just(scalar)] * 6,
            st.just(vector),
            st.just(matrix),
            *([st.sampled_from(["exp", "mean", "y_ii", "sum_i"])] if wrong else []),
        )
        return st.builds(lambda t, e: f"{t} = {e}", target, expression)

    return st.builds(
        lambda first, more, sep, bom: ("\ufeff" if bom else "") + sep.join([first, *more]),
        statement("L", "y_i", "Y[n, h]"),
        st.lists(statement("M", "z_i", "Z[n, h]"), max_size=1),
        st.sampled_from(["\n", "; ", "\n\n# a comment\n"]),
        st.booleans(),
    )


PROGRAMS = _grammar(wrong=True)
VALID_ISH = _grammar(wrong=False)

# Any sequence of tokens, right or wrong, after a target: what the lexer and the parser
# see when the grammar above is no help.
TOKENS = [
    *SCALARS, *VECTORS, "A", "_", "i", "ij", "{", "}", "[", "]", ",", "(", ")", "|", "+", "-", "*", "/", "^", "**",
    "=", ";", "\n", "#", "0", "2", ".5", "1e-3", "1e", "e", ".", *WRONG_NUMBERS, *FUNCTIONS[:3], *WRONG_NAMES,
    *JUNK, "sum_i(", "exp(", "mean_n(", "W_ij(", "- -", "((", "))",
]
TOKEN_TEXTS = st.builds(
    lambda target, tokens, sep: target + sep.join(tokens),
    st.sampled_from(["y = ", "L = ", "y_i = ", "", "\ufeffy = "]),
    st.lists(st.sampled_from(TOKENS), min_size=1, max_size=25),
    st.sampled_from(["", " "]),
)

# ---------------------------------------------------------------- mutations of the corpus

ALPHABET = "xyzijkAWb_{}[](),;=+-*/^|#.'0123456789e \n²₂٣\ufeffσΣδ"


# Recurrences (LANGUAGE.md §12): the RNN, an initial state, one running backward, a shift of
# two, and the LSTM's group, mutated like the corpus.
RECURRENCES = [
    "s[t, n, h] = tanh(x[t, n, d] W_dh + s[t-1, n, k] U_kh + b_h)\nL = sum_{t,n,h}((s[t,n,h] - y[t,n,h])^2)",
    "s[t, n, h] = tanh(x[t, n, d] W_dh + (s[t-1, n, k] + δ[t, 0] h0[n, k]) U_kh)\nL = sum_{t,n,h}(s[t,n,h])",
    "s[t, n] = tanh(x[t, n] + 0.5 s[t+1, n] w_n)\nL = sum_{t,n}(G[t, n] s[t, n])",
    "s[t, n] = tanh(x[t, n] + 0.8 s[t-2, n] w_n) + 0.3 s[t-1, n]\nL = sum_{t,n}(G[t, n] s[t, n])",
    "f[t,n,h] = sigmoid(x[t,n,d] Wf_dh + h[t-1,n,k] Uf_kh)\nc[t,n,h] = f[t,n,h] c[t-1,n,h] + x[t,n,h]\n"
    "h[t,n,h] = tanh(c[t,n,h])\nL = sum_{t,n,h}(G[t,n,h] h[t,n,h])",
]


@st.composite
def _mutated(draw) -> str:
    text = draw(st.sampled_from([entry.text for entry in CORPUS] + RECURRENCES))
    if draw(st.integers(0, 9)) == 0:
        return text  # unmutated now and then: the whole corpus goes through diff and grad
    for _ in range(draw(st.integers(1, 3))):
        k = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "duplicate", "replace"]))
        if action == "insert":
            text = text[:k] + draw(st.sampled_from(ALPHABET + "".join(JUNK))) + text[k:]
        elif action == "delete":
            text = text[:k] + text[k + draw(st.integers(1, 4)) :]
        elif action == "duplicate":
            piece = text[k : k + draw(st.integers(1, 12))]
            text = text[:k] + piece + text[k:]
        elif k < len(text):
            text = text[:k] + draw(st.sampled_from(ALPHABET)) + text[k + 1 :]
    return text


MUTATED = _mutated()

# ---------------------------------------------------------------- the property


class _TooSlow(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Interrupt a hang (hypothesis' deadline only judges an example once it has ended)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise _TooSlow(f"more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _survives(text: str, derivatives: bool) -> None:
    """Everything eingrad does to ``text`` ends normally or with an EingradError, in bounded time."""
    with _time_limit(TIME_LIMIT):
        _run(text, derivatives)


def _run(text: str, derivatives: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = eg.parse(text)
        except eg.EingradError as err:
            str(err)  # the message and its caret excerpt render
            return
        printed = str(program)
        assert eg.parse(printed) == program, printed
        program.latex()
        if not derivatives:
            return
        for wrt in program.inputs[:2]:
            try:
                str(eg.diff(program, wrt))
            except eg.EingradError as err:
                str(err)
        try:
            str(eg.grad(program, program.inputs[:2]))
        except eg.EingradError as err:
            str(err)


@settings(max_examples=1500, **SETTINGS)
@given(PROGRAMS)
def test_grammar_texts_raise_only_eingrad_errors(text: str) -> None:
    _survives(text, derivatives=False)


@settings(max_examples=1500, **SETTINGS)
@given(TOKEN_TEXTS)
def test_token_sequences_raise_only_eingrad_errors(text: str) -> None:
    _survives(text, derivatives=False)


@settings(max_examples=600, **SETTINGS)
@given(VALID_ISH)
def test_grammar_programs_differentiate_or_raise_eingrad_errors(text: str) -> None:
    _survives(text, derivatives=True)


@settings(max_examples=800, **SETTINGS)
@given(MUTATED)
def test_mutated_corpus_programs_raise_only_eingrad_errors(text: str) -> None:
    _survives(text, derivatives=True)


# ---------------------------------------------------------------- the command line


def _run_cli(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse: bad usage
            code = exit_.code if isinstance(exit_.code, int) else 2
    return code, err.getvalue()


@settings(max_examples=250, **SETTINGS)
@given(st.one_of(PROGRAMS, MUTATED), st.sampled_from(["parse", "parse --latex", "diff", "grad", "explain"]))
def test_the_command_line_exits_0_1_or_2_without_a_traceback(text: str, command: str) -> None:
    if "=" not in text or text.startswith(("-", "@")):
        text = "y = " + text.lstrip("-@")  # always program text, never a file name or stdin
    words = command.split()
    argv = [words[0], text, *words[1:]]
    if words[0] in ("diff", "explain"):
        argv += ["--wrt", "x"]
    elif words[0] == "grad":
        argv += ["--wrt", "x", "W"]
    with _time_limit(TIME_LIMIT):
        code, stderr = _run_cli(argv)
    assert code in (0, 1, 2), (argv, code, stderr)
    assert "Traceback" not in stderr, stderr
