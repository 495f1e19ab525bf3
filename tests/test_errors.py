"""Error tests: each bad input pins the error class, the start of the message and the position.

Every case first goes through ``pytest.raises(eg.EingradError)``, so a bare
Python exception (IndexError, KeyError, ...) fails the test rather than
passing as "some error".
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pytest

import eingrad as eg


@dataclass(frozen=True)
class Bad:
    """One malformed program: what ``eg.parse`` must raise, and where."""

    text: str
    cls: type[eg.EingradError]
    message: str  # the start of err.message
    line: int | None
    column: int | None
    hint: str | None = None  # a substring of err.hint

    def __str__(self) -> str:  # the test id
        return self.text.replace("\n", "⏎") or "<empty>"


PARSE_ERRORS = [
    # ---- malformed text
    Bad("y_i = (A_ij x_j", eg.ParseError, "'(' is never closed", 1, 7, "add the ')'"),
    Bad("y = log(x\n\nz = w", eg.ParseError, "the '(' of log(...) is never closed", 1, 8),
    Bad("y = sum_i(x_i", eg.ParseError, "the '(' of sum_i(...) is never closed", 1, 10),
    Bad("y = (x ]", eg.ParseError, "expected ')' to close '(', found ']'", 1, 8),
    Bad("y_i = A_ij x_j)", eg.ParseError, "unmatched ')'", 1, 15, "add the '(' it closes"),
    Bad("y_i = A_ij +", eg.ParseError, "'+' needs a term after it", 1, 13),
    Bad("y_i = A_ij x_j *", eg.ParseError, "'*' needs a factor after it", 1, 17),
    Bad("y_i = * x_i", eg.ParseError, "unexpected '*' where a term should start", 1, 7),
    Bad("y =", eg.ParseError, "the right-hand side of '=' is empty", 1, 4),
    Bad("y_i = \nz = w", eg.ParseError, "the right-hand side of '=' is empty", 1, 7),
    Bad("y_i A_ij x_j", eg.ParseError, "expected '=' after the target 'y_i', found 'A'", 1, 5),
    Bad("y = $x", eg.ParseError, "unexpected character '$'", 1, 5, "+ - * / ^ **"),
    Bad("y_i = x_i'", eg.ParseError, 'unexpected character "\'"', 1, 10, "eg.diff"),
    Bad("y = x = z", eg.ParseError, "a statement has one '=', found a second one", 1, 7, "';'"),
    Bad("", eg.ParseError, "the program is empty", 1, 1, "at least one statement"),
    Bad("  # only a comment\n\n", eg.ParseError, "the program is empty", 1, 1),
    Bad("3 = x", eg.ParseError, "a statement starts with the tensor it assigns, found '3'", 1, 1),
    Bad("y = A_", eg.ParseError, "expected index names right after '_'", 1, 7, "A_{i,j}"),
    Bad("y_ = x", eg.ParseError, "expected index names right after '_', found '='", 1, 4),
    Bad(
        "y = A_i1",
        eg.ParseError,
        "after a bare '_' every letter is one index, but 'i1' contains '1'",
        1,
        8,
        "[i1]",
    ),
    Bad("y = A_1", eg.ParseError, "index names are letters, not numbers", 1, 7),
    Bad("y = A_{1}", eg.ParseError, "index names are letters, not numbers", 1, 8),
    Bad("y = A_{}", eg.ParseError, "empty index list '{}'", 1, 8),
    Bad("y = A[i j]", eg.ParseError, "expected ',' or ']' in the index list, found 'j'", 1, 9),
    Bad("y = x_i_j", eg.ParseError, "'x_i' is followed by a second index list", 1, 8, "one list"),
    Bad("y = 1.2.3", eg.ParseError, "malformed number '1.2.3'", 1, 5),
    Bad("y = ()", eg.ParseError, "empty parentheses", 1, 6),
    Bad("y = log(x, z)", eg.ParseError, "log takes one argument", 1, 10),
    Bad("y = sum_k + x_k", eg.ParseError, "expected '(' after sum_k, found '+'", 1, 11),
    Bad("y = logsumexp_k x_k", eg.ParseError, "expected '(' after logsumexp_k, found 'x'", 1, 17),
    Bad("y = sum_kk(x_k)", eg.ParseError, "sum binds the same index twice", 1, 9),
    # ---- non-constant exponents
    Bad("y = x^y", eg.ParseError, "an exponent must be a constant number, found 'y'", 1, 7),
    Bad("y_i = x_i^(z)", eg.ParseError, "an exponent must be a constant number", 1, 11, "exp(y log(x))"),
    # ---- unknown functions
    Bad("y_i = foo(x_i)", eg.UnknownFunctionError, "unknown function 'foo'", 1, 7, "known functions: exp"),
    Bad("y = tanhh(x)", eg.UnknownFunctionError, "unknown function 'tanhh'", 1, 5, "did you mean tanh(...)?"),
    # ---- reserved names
    Bad("exp = x", eg.ReservedNameError, "'exp' is a reserved word and cannot be assigned", 1, 1),
    Bad("sum = x", eg.ReservedNameError, "'sum' is a reserved word and cannot be assigned", 1, 1),
    Bad("delta_ij = x_ij", eg.ReservedNameError, "'delta' is a reserved word", 1, 1),
    Bad("y = sum + x", eg.ReservedNameError, "'sum' needs the index it binds", 1, 5, "sum_k(...)"),
    Bad(
        "y_i = delta_i",
        eg.ReservedNameError,
        "'delta_i' has one index, but the Kronecker delta needs",
        1,
        7,
        "d_i",
    ),
    Bad("y = delta", eg.ReservedNameError, "'delta' is the Kronecker delta and needs indices", 1, 5),
    Bad("y = exp_i", eg.ReservedNameError, "the function 'exp' takes no indices", 1, 8, "exp(x_i)"),
    Bad(
        "y_i = log x_i",
        eg.ReservedNameError,
        "'log' is a function and cannot be used as a tensor",
        1,
        7,
        "log(...)",
    ),
    Bad("y = A[i, sum]", eg.ReservedNameError, "'sum' is a reserved word and cannot be an index name", 1, 10),
    # ---- binders
    Bad("y = sum_k(x_i)", eg.IndexRuleError, "sum_k(...) binds 'k', but 'k' does not occur inside it", 1, 5),
    Bad(
        "y_i = sum_i(x_i)",
        eg.IndexRuleError,
        "index 'i' is bound by sum_i(...) but is also a target index",
        1,
        11,
    ),
    Bad(
        "y = sum_i(sum_i(x_i))", eg.IndexRuleError, "index 'i' is bound twice, one sum inside the other", 1, 9
    ),
    Bad("y = sum_i(x_i sum_i(z_i))", eg.IndexRuleError, "index 'i' is bound twice", 1, 9, "rename the inner"),
    Bad(
        "s = x_j (y_j + sum_j(z_j))",
        eg.IndexRuleError,
        "index 'j' is summed implicitly around sum_j(...)",
        1,
        7,
    ),
    # ---- the summation rule
    Bad(
        "C_ik = A_ij B_jj",
        eg.IndexRuleError,
        "target index 'k' does not occur on the right-hand side",
        1,
        4,
        "'j'",
    ),
    Bad("y_ii = A_ii", eg.IndexRuleError, "target index 'i' is repeated", 1, 3, "d_i = A_ii"),
    # ---- across statements
    Bad("y = x\ny = z", eg.ProgramError, "'y' is assigned twice", 1, 1, "y2"),
    Bad("y = z\nz = x", eg.ProgramError, "'z' is used before it is assigned", 1, 5),
    Bad("y_i = x_i\nz = x_ij", eg.ProgramError, "'x' is used with 1 index and with 2 indices", 1, 7),
    # ---- errors on a later line
    Bad("y = x\nz_k = w_i", eg.IndexRuleError, "target index 'k' does not occur", 2, 3),
    Bad("y = x\nz_i = w_i\nq = exp_i", eg.ReservedNameError, "the function 'exp' takes no indices", 3, 8),
    Bad("a = b\n# comment\nc = (d", eg.ParseError, "'(' is never closed", 3, 5),
    Bad("a_i = b_i; c = d $", eg.ParseError, "unexpected character '$'", 1, 18),
    Bad("a = b\n  c = d^e", eg.ParseError, "an exponent must be a constant number, found 'e'", 2, 9),
    # ---- name_k(...): a reduction, a transform, or an error; never a product (LANGUAGE.md §8)
    Bad("L = mean_n(e_n^2)", eg.UnknownFunctionError, "the reduction mean_n(...)", 1, 5, "sum_k(e) / |k|"),
    Bad("m = max_i(x_i)", eg.UnknownFunctionError, "the reduction max_i(...)", 1, 5, "logsumexp"),
    Bad("P_nc = softmax_c(Z_nc)", eg.UnknownFunctionError, "the transform softmax_c(...)", 1, 8, "logsumexp_j"),
    Bad("m = min_jk(A_jk)", eg.UnknownFunctionError, "the reduction min_jk(...)", 1, 5),
    Bad("n = norm_i(x_i)", eg.UnknownFunctionError, "unknown reduction or transform 'norm'", 1, 5,
        "'norm_i (x_i)' or 'norm_i * (x_i)'"),
    Bad("y_i = W_ij(x_j)", eg.UnknownFunctionError, "'W_ij(' reads as a reduction or transform", 1, 7,
        "'W_ij (x_j)' or 'W_ij * (x_j)'"),
    Bad("y = max(a, b)", eg.UnknownFunctionError, "max(...) is not supported yet", 1, 5),
    Bad("mean = x", eg.ReservedNameError, "'mean' is reserved", 1, 1, "another name"),
    # ---- characters and numbers
    Bad("y = x²", eg.ParseError, "unexpected superscript digit '²'", 1, 6, "write x^2"),
    Bad("y = x₂", eg.ParseError, "unexpected subscript digit '₂'", 1, 6, "x2"),
    Bad("y = ٣ x", eg.ParseError, "unexpected digit '٣'", 1, 5, "write 3"),
    Bad("y = 1e400 x", eg.ParseError, "the number 1e400 is too large", 1, 5),
    Bad("y = 1e-400 x", eg.ParseError, "the number 1e-400 is too small", 1, 5, "write 0"),
]


@pytest.mark.parametrize("case", PARSE_ERRORS, ids=str)
def test_parse_error(case: Bad) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eg.SurprisingSumWarning)
        with pytest.raises(eg.EingradError) as info:
            eg.parse(case.text)
    err = info.value
    assert type(err) is case.cls, f"{type(err).__name__}: {err}"
    assert err.message.startswith(case.message), err.message
    assert (err.line, err.column) == (case.line, case.column), str(err)
    if case.hint is not None:
        assert err.hint is not None and case.hint in err.hint, err.hint


def test_the_table_is_large_enough() -> None:
    assert len(PARSE_ERRORS) >= 35


@pytest.mark.parametrize("case", PARSE_ERRORS, ids=str)
def test_evaluate_raises_the_same_error_from_text(case: Bad) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eg.SurprisingSumWarning)
        with pytest.raises(eg.EingradError) as info:
            eg.evaluate(case.text)
    assert type(info.value) is case.cls


# ---------------------------------------------------------------- caret excerpts


def caret_lines(err: eg.EingradError) -> list[tuple[str, str]]:
    """(source line, caret line) pairs from ``str(err)``, the ``line N: `` prefix removed."""
    lines = str(err).split("\n")
    pairs = []
    for k, line in enumerate(lines):
        if line.startswith("  line "):
            prefix = line.index(": ") + 2
            pairs.append((line[prefix:], lines[k + 1][prefix:]))
    return pairs


def underlined(source: str, carets: str) -> list[str]:
    """The pieces of ``source`` that runs of '^' sit under."""
    pieces, start = [], None
    for k, ch in enumerate(carets + " "):
        if ch == "^" and start is None:
            start = k
        elif ch != "^" and start is not None:
            pieces.append(source[start:k])
            start = None
    return pieces


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("y_i = foo(x_i)", ["foo"]),
        ("y = tanhh(x)", ["tanhh"]),
        ("y = A_i1", ["1"]),
        ("y = 1.2.3", ["1.2.3"]),
        ("y_i = delta_i", ["delta_i"]),
        ("C_ik = A_ij B_jj", ["k"]),
        ("y_ii = A_ii", ["ii"]),
        ("s = x_j (y_j + sum_j(z_j))", ["j", "j"]),
    ],
)
def test_carets_sit_under_the_offending_text(text: str, expected: list[str]) -> None:
    with pytest.raises(eg.EingradError) as info:
        eg.parse(text)
    [(source, carets)] = caret_lines(info.value)
    assert source == text
    assert underlined(source, carets) == expected


def test_str_has_message_excerpt_and_hint() -> None:
    with pytest.raises(eg.IndexRuleError) as info:
        eg.parse("y = x\nC_ik = A_ij B_jj")
    text = str(info.value)
    assert text.splitlines() == [
        "target index 'k' does not occur on the right-hand side",
        "  line 2: C_ik = A_ij B_jj",
        "             ^",
        "  hint: every target index must appear on the right-hand side; "
        "did you mean one of the summed indices 'j'?",
    ]


def test_error_on_two_lines_shows_both() -> None:
    with pytest.raises(eg.ProgramError) as info:
        eg.parse("y = x\ny = z")
    pairs = caret_lines(info.value)
    assert [src for src, _ in pairs] == ["y = x", "y = z"]
    assert [underlined(src, carets) for src, carets in pairs] == [["y"], ["y"]]


# ---------------------------------------------------------------- sizes and inputs (evaluate)

ones = np.ones


@dataclass(frozen=True)
class BadEval:
    """One bad call of ``eg.evaluate``."""

    name: str
    text: str
    arrays: dict
    cls: type[eg.EingradError]
    message: str
    line: int | None = None
    column: int | None = None
    hint: str | None = None
    sizes: dict | None = None

    def __str__(self) -> str:
        return self.name


EVAL_ERRORS = [
    BadEval(
        "shape mismatch",
        "z_i = X_ij w_j",
        dict(X=ones((2, 3)), w=ones(4)),
        eg.SizeError,
        "index 'j' has size 3 in X_ij (axis 1) but size 4 in w_j (axis 0)",
        1,
        7,
    ),
    BadEval(
        "mismatch on line 2, through a target's shape",
        "a_i = x_i\nb_i = a_i w_i",
        dict(x=ones(3), w=ones(4)),
        eg.SizeError,
        "index 'i' has size 3 in a_i (axis 0) but size 4 in w_i (axis 0)",
        2,
        7,
    ),
    BadEval(
        "diagonal of a non-square array",
        "d_i = A_ii",
        dict(A=ones((2, 3))),
        eg.SizeError,
        "index 'i' has size 2 in A_ii (axis 0) but size 3 in A_ii (axis 1)",
        1,
        7,
    ),
    BadEval(
        "delta with indices of different sizes",
        "y = delta_ij A_ij",
        dict(A=ones((2, 3))),
        eg.SizeError,
        "the indices of delta_ij have different sizes: 'i' has size 2 (from A_ij, axis 0) but 'j' has size 3",
        1,
        5,
        "one size",
    ),
    BadEval(
        "index only in deltas",
        "y_ij = delta_ij",
        {},
        eg.SizeError,
        "the size of index 'i' cannot be determined: it occurs only in deltas",
        1,
        8,
        "sizes={'i': 3}",
    ),
    BadEval(
        "declared sizes conflict through a delta",
        "y_ij = delta_ij",
        {},
        eg.SizeError,
        "the indices of delta_ij have different sizes: 'i' has size 3 (declared) but 'j' has size 4",
        1,
        8,
        sizes={"i": 3, "j": 4},
    ),
    BadEval(
        "declared size conflicts with an array",
        "y_i = x_i",
        dict(x=ones(3)),
        eg.SizeError,
        "index 'i' is declared with size 4 but has size 3 in x_i (axis 0)",
        1,
        7,
        sizes={"i": 4},
    ),
    BadEval(
        "declared size not an integer",
        "y_ij = delta_ij",
        {},
        eg.SizeError,
        "the declared size of index 'i' must be a non-negative integer, got 2.5",
        sizes={"i": 2.5},
    ),
    BadEval(
        "declared size None",
        "y_i = x_i",
        dict(x=ones(3)),
        eg.SizeError,
        "the declared size of index 'i' must be a non-negative integer, got None",
        sizes={"i": None},
    ),
    BadEval(
        "declared size negative",
        "y_ij = delta_ij",
        {},
        eg.SizeError,
        "the declared size of index 'i' must be a non-negative integer, got -2",
        sizes={"i": -2},
    ),
    BadEval(
        "too few axes",
        "y_i = A_ij x_j",
        dict(A=ones(3), x=ones(3)),
        eg.RankError,
        "'A' has 2 indices in A_ij but the array passed has 1 axis (shape (3,))",
        1,
        7,
        "one axis per index",
    ),
    BadEval(
        "an array for a scalar",
        "y = 2 c",
        dict(c=ones(3)),
        eg.RankError,
        "'c' has 0 indices in c but the array passed has 1 axis",
        1,
        7,
        "a number for a scalar",
    ),
    BadEval(
        "missing input",
        "y_i = A_ij x_j",
        dict(A=ones((3, 3))),
        eg.MissingInputError,
        "input 'x' was not passed",
        1,
        12,
        "x=...",
    ),
    BadEval(
        "unknown input, close to a real one",
        "y_i = A_ij x_j",
        dict(A=ones((3, 3)), x=ones(3), xx=ones(3)),
        eg.UnknownInputError,
        "'xx' is not an input of the program (its inputs are A, x)",
        hint="did you mean 'x'?",
    ),
    BadEval(
        "a target passed as an input",
        "y_i = A_ij x_j",
        dict(A=ones((3, 3)), x=ones(3), y=ones(3)),
        eg.UnknownInputError,
        "'y' is computed by the program and cannot be passed as an input",
        1,
        1,
    ),
    BadEval(
        "strings",
        "y_i = x_i",
        dict(x=np.array(["a", "b"])),
        eg.InputTypeError,
        "input 'x' must be numeric, got an array of dtype <U1",
        1,
        7,
    ),
    BadEval(
        "an object array",
        "y_i = x_i",
        dict(x=np.array([1.0, None], dtype=object)),
        eg.InputTypeError,
        "input 'x' must be numeric, got an array of dtype object",
        1,
        7,
    ),
    BadEval(
        "None for a scalar",
        "y = 2 c",
        dict(c=None),
        eg.InputTypeError,
        "input 'c' must be numeric",
        1,
        7,
    ),
    BadEval(
        "a ragged list",
        "y_i = x_i",
        dict(x=[1.0, [2.0, 3.0]]),
        eg.InputTypeError,
        "input 'x' must be numeric",
        1,
        7,
    ),
    BadEval(
        "a string for a scalar",
        "y = 2 c",
        dict(c="3"),
        eg.InputTypeError,
        "input 'c' must be numeric",
    ),
]


@pytest.mark.parametrize("case", EVAL_ERRORS, ids=str)
def test_evaluate_error(case: BadEval) -> None:
    with pytest.raises(eg.EingradError) as info:
        eg.evaluate(case.text, sizes=case.sizes, **case.arrays)
    err = info.value
    assert type(err) is case.cls, f"{type(err).__name__}: {err}"
    assert err.message.startswith(case.message), err.message
    if case.line is not None:
        assert (err.line, err.column) == (case.line, case.column), str(err)
    if case.hint is not None:
        assert err.hint is not None and case.hint in err.hint, err.hint


def test_size_error_carets_name_both_tensors() -> None:
    with pytest.raises(eg.SizeError) as info:
        eg.evaluate("z_i = X_ij w_j", X=ones((2, 3)), w=ones(4))
    [(source, carets)] = caret_lines(info.value)
    assert underlined(source, carets) == ["X_ij", "w_j"]
    assert str(info.value).startswith("index 'j' has size 3 in X_ij (axis 1) but size 4 in w_j (axis 0)")


def test_size_error_from_a_parsed_program_has_the_source() -> None:
    program = eg.parse("Y_nh = X_nd W_dh + b_h")
    with pytest.raises(eg.SizeError) as info:
        eg.evaluate(program, X=ones((4, 3)), W=ones((2, 3)), b=ones(2))
    assert info.value.message == "index 'd' has size 3 in X_nd (axis 1) but size 2 in W_dh (axis 0)"
    assert (info.value.line, info.value.column) == (1, 8)
    assert "^^^^ ^^^^" in str(info.value)


def test_missing_input_is_also_a_key_error_with_a_readable_str() -> None:
    with pytest.raises(KeyError) as info:
        eg.evaluate("y_i = A_ij x_j", A=ones((3, 3)))
    assert isinstance(info.value, eg.MissingInputError)
    assert isinstance(info.value, eg.InputError)
    # KeyError's own str would wrap the message in quotes.
    assert str(info.value).startswith("input 'x' was not passed\n")


def test_unknown_input_and_type_errors_are_type_errors() -> None:
    with pytest.raises(TypeError):
        eg.evaluate("y = 2 c", c=1.0, d=2.0)
    with pytest.raises(TypeError):
        eg.evaluate("y = 2 c", c="x")


def test_nan_inputs_propagate_without_an_error() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a numpy RuntimeWarning
        out = eg.evaluate("y_i = 2 x_i + b_i", x=np.array([np.nan, 1.0]), b=np.ones(2))
        assert np.isnan(out["y"][0])
        assert out["y"][1] == 3.0
        # in a contraction, 0 * nan is nan: the NaN spreads, as in numpy
        out = eg.evaluate("y_i = A_ij x_j", A=np.eye(2), x=np.array([np.nan, 1.0]))
        assert np.isnan(out["y"]).all()
    out = eg.evaluate("s = log(x)", x=np.nan)
    assert np.isnan(out["s"])


def test_scalar_inputs_may_be_numbers() -> None:
    out = eg.evaluate("y = 2 c", c=3)
    assert out["y"] == 6.0


# ---------------------------------------------------------------- the hierarchy


@pytest.mark.parametrize(
    "cls",
    [
        eg.ParseError,
        eg.UnknownFunctionError,
        eg.ReservedNameError,
        eg.IndexRuleError,
        eg.ProgramError,
        eg.SizeError,
        eg.InputError,
        eg.MissingInputError,
        eg.UnknownInputError,
        eg.RankError,
        eg.InputTypeError,
    ],
)
def test_error_classes_are_eingrad_errors_and_value_errors(cls: type) -> None:
    assert issubclass(cls, eg.EingradError)
    assert issubclass(cls, ValueError)


def test_parse_error_subclasses() -> None:
    assert issubclass(eg.UnknownFunctionError, eg.ParseError)
    assert issubclass(eg.ReservedNameError, eg.ParseError)
    for cls in (eg.MissingInputError, eg.UnknownInputError, eg.RankError, eg.InputTypeError):
        assert issubclass(cls, eg.InputError)


def test_error_without_source_has_no_position() -> None:
    err = eg.SizeError("something is off", hint="fix it")
    assert (err.line, err.column) == (None, None)
    assert str(err) == "something is off\n  hint: fix it"
