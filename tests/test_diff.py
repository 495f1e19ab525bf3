"""Exact derivatives (diff.py): the guide's forms, every rule numerically, bad input, explain.

Forms are compared up to index names: :func:`assert_form` renames the
derivative's indices (output's, then each wrt group) to the names the test
writes and compares with ``eg.equivalent`` (summed-index names and operand
order do not matter; structure does).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import eingrad as eg
from eingrad.expr import Call, Delta, Expr, LogSumExp, Mul, Sum, Tensor, rename_indices, walk
from eingrad.gradcheck import check_grad
from eingrad.syntax import parse_expression

# ---------------------------------------------------------------- helpers


def _names(names: str | tuple[str, ...]) -> tuple[str, ...]:
    return tuple(names.split()) if isinstance(names, str) else tuple(names)


def renamed(d: eg.Derivative, names: str | tuple[str, ...]) -> Expr:
    """``d.expr`` with d's indices (output's, then wrt groups) renamed by position to ``names``."""
    names = _names(names)
    assert len(names) == len(d.indices), f"{d} has indices {d.indices}, not {len(names)}"
    assert len(set(names)) == len(names)
    # Bound indices first move out of the way, all in one simultaneous renaming.
    bound = {i for n in walk(d.expr) if isinstance(n, (Sum, LogSumExp)) for i in n.indices}
    mapping = {b: f"~{k}" for k, b in enumerate(sorted(bound))}
    mapping.update(zip(d.indices, names, strict=True))
    return rename_indices(d.expr, mapping)


def expected(text: str, free: str | tuple[str, ...]) -> Expr:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eg.SurprisingSumWarning)
        return parse_expression(text, _names(free))


def assert_form(d: eg.Derivative, names: str, text: str, broadcast: str = "") -> None:
    """``d`` is ``text`` once its indices are called ``names`` (``broadcast``: names absent from text)."""
    got = renamed(d, names)
    free = tuple(n for n in _names(names) if n not in _names(broadcast))
    want = expected(text, free)
    assert eg.equivalent(got, want), f"{d}\n  renamed: {got}\n  expected: {want}"


def deltas(e: Expr) -> list[Delta]:
    return [n for n in walk(e) if isinstance(n, Delta)]


def quiet_diff(*args, **kwargs) -> eg.Derivative:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eg.ZeroDerivativeWarning)
        return eg.diff(*args, **kwargs)


def check(program: str, wrt: str, sizes=None, order: int = 2, arrays=None, seed: int = 0) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eg.ZeroDerivativeWarning)
        warnings.simplefilter("ignore", eg.SurprisingSumWarning)
        check_grad(program, wrt, arrays, order=order, sizes=sizes, rng=np.random.default_rng(seed))


def test_the_helper_renames_by_position_and_rejects_other_structure():
    d = eg.diff("f_i = W_ij v_j", "W")
    assert_form(d, "a b c", "δ_ab v_c")
    assert_form(d, "c b a", "v_a δ_cb")  # names are positional, operands in any order
    with pytest.raises(AssertionError):
        assert_form(d, "a b c", "δ_ac v_b")  # a different structure
    # bound indices never capture a chosen name
    d = eg.diff("Y_nh = X_nd W_dh + b_h; L = G_nh Y_nh", "b")
    assert_form(d, "n", "G_in")


# ---------------------------------------------------------------- LANGUAGE.md §6


def test_language_table_f_wrt_W():
    d = eg.diff("f_i = W_ij v_j", "W")
    assert len(d.output_indices) == 1 and len(d.wrt_indices) == 1 and len(d.wrt_indices[0]) == 2
    assert_form(d, "i j k", "v_k δ_ij")
    assert str(d) == "∂f_i/∂W_kl = δ_ik v_l"


def test_language_table_f_wrt_v():
    assert_form(eg.diff("f_i = W_ij v_j", "v"), "i j", "W_ij")


def test_language_table_Y_wrt_X():
    assert_form(eg.diff("Y_ik = X_ij W_jk", "X"), "i k j l", "W_lk δ_ij")


def test_language_table_Y_wrt_W():
    assert_form(eg.diff("Y_ik = X_ij W_jk", "W"), "i k j l", "X_ij δ_kl")


def test_language_table_simplify():
    out = eg.simplify("v_i = A_ij δ_jk B_ik")
    assert out.equivalent(eg.parse("v_i = A_ik B_ik"))
    assert str(out) == "v_i = A_ik B_ik"


def test_language_table_bias_gradient():
    d = eg.diff("Y_nh = X_nd W_dh + b_h; L = G_nh Y_nh", "b")
    assert_form(d, "i", "sum_n(G_ni)")
    assert not deltas(d.expr)
    assert d.output_indices == () and len(d.wrt_indices[0]) == 1


def test_fresh_indices_do_not_clash_and_layout_follows_section_6():
    d = quiet_diff("Y_ik = X_ij W_jk", "X", order=2)
    program_indices = {"i", "j", "k"}
    fresh = [i for group in d.wrt_indices for i in group]
    assert d.output_indices == ("i", "k")
    assert len(fresh) == 4 and len(set(fresh)) == 4 and not set(fresh) & program_indices
    assert not set(fresh) & {"X", "W", "Y"}  # no index named like a tensor
    arrays = {"X": np.ones((2, 3)), "W": np.ones((3, 4))}
    assert eg.evaluate(d, **arrays).shape == (2, 4, 2, 3, 2, 3)
    assert eg.evaluate(eg.diff("Y_ik = X_ij W_jk", "W"), **arrays).shape == (2, 4, 3, 4)


# ---------------------------------------------------------------- issue 3 item 5 and the guide's forms


def test_quadratic_form_gradient_and_hessian():
    p = "q = x_i A_ij x_j"
    assert_form(eg.diff(p, "x"), "k", "A_kj x_j + x_i A_ik")
    h = eg.hessian(p, "x")
    assert h.order == 2 and len(h.wrt_indices) == 2
    assert_form(h, "k l", "A_kl + A_lk")
    check(p, "x", {"i": 4, "j": 4})


LOGISTIC = "L = sum_i(softplus(-y_i X_ij w_j)) + 0.5 lam w_j w_j"


def test_logistic_regression_gradient():
    d = eg.diff(LOGISTIC, "w")
    assert_form(d, "k", "-sigmoid(-y_i X_ij w_j) y_i X_ik + lam w_k")
    assert not deltas(d.expr)
    check(LOGISTIC, "w", {"i": 5, "j": 3})


def test_logistic_regression_hessian_has_one_delta_in_the_lam_term():
    h = eg.hessian(LOGISTIC, "w")
    assert_form(h, "k l", "sigmoid(-y_i X_ij w_j) (1 - sigmoid(-y_i X_im w_m)) y_i^2 X_ik X_il + lam δ_kl")
    found = deltas(h.expr)
    assert len(found) == 1, f"deltas {found} in {h}"
    first, second = h.wrt_indices[0][0], h.wrt_indices[1][0]
    assert set(found[0].indices) == {first, second}
    lam_terms = [t for t in h.expr.terms if found[0] in walk(t)]
    assert len(lam_terms) == 1
    assert set(lam_terms[0].factors) == {Tensor("lam"), found[0]}
    check(LOGISTIC, "w", {"i": 5, "j": 3})


def test_svd_form_wrt_sigma():
    d = eg.diff("A_ij = U_ik σ_k V_kj", "σ")
    assert_form(d, "i j l", "U_il V_lj")
    assert not deltas(d.expr)
    check("A_ij = U_ik σ_k V_kj", "σ", {"i": 2, "k": 3, "j": 4})


MF = "L = sum_{i,j}((X_ij - U_ik V_jk)^2)"


def test_matrix_factorisation_gradients():
    assert_form(eg.diff(MF, "U"), "a b", "-2 (X_aj - U_ak V_jk) V_jb")
    assert_form(eg.diff(MF, "V"), "a b", "-2 (X_ia - U_ik V_ak) U_ib")
    for wrt in "UV":
        check(MF, wrt, {"i": 2, "j": 3, "k": 4})


def test_matrix_factorisation_hessians():
    assert_form(eg.hessian(MF, "U"), "a b c d", "2 δ_ac V_jb V_jd")
    assert_form(eg.hessian(MF, "V"), "a b c d", "2 δ_ac U_ib U_id")


def test_trace_wrt_its_matrix_is_a_delta():
    d = eg.diff("t = A_ii", "A")
    assert_form(d, "j k", "δ_jk")
    np.testing.assert_array_equal(eg.evaluate(d, A=np.ones((3, 3))), np.eye(3))


def test_tensor_appearing_several_times():
    assert_form(eg.diff("t = A_ij A_ji", "A"), "k l", "2 A_lk")
    assert_form(eg.diff("t = A_ij A_ji", "A", order=2), "k l m n", "2 δ_lm δ_kn")
    assert_form(eg.diff("M_ij = A_ik A_jk", "A"), "i j l m", "δ_il A_jm + A_im δ_jl")
    assert_form(eg.hessian("M_ij = A_ik A_jk", "A"), "i j l m n o", "δ_il δ_jn δ_mo + δ_in δ_jl δ_mo")
    assert_form(eg.diff("y_i = A_ij x_j + A_ji x_j", "A"), "i k l", "δ_ik x_l + δ_il x_k")
    assert_form(eg.diff("z_i = A_ij x_j; s = z_i z_i + z_i", "x"), "k", "2 z_i A_ik + A_ik")
    for p, wrt in [
        ("t = A_ij A_ji", "A"),
        ("M_ij = A_ik A_jk", "A"),
        ("z_i = A_ij x_j; s = z_i z_i + z_i", "x"),
    ]:
        check(p, wrt)


def test_repeated_indices():
    assert_form(eg.diff("y_i = A_ii x_i", "A"), "i j k", "δ_ij δ_ik x_i")
    assert_form(eg.diff("y_i = A_ii x_i", "x"), "i j", "A_ii δ_ij")
    assert_form(eg.diff("y_j = B_iij", "B"), "j k l m", "δ_kl δ_jm")
    assert_form(eg.diff("t = B_iij x_j", "B"), "k l m", "δ_kl x_m")
    assert_form(eg.diff("t = A_ii A_jj", "A"), "k l", "2 δ_kl A_jj")
    # Σ_j δ_jm = 1: ∂(Σ_ij B_iij)/∂B_klm = δ_kl, broadcast along m
    d = eg.diff("t = B_iij", "B")
    assert_form(d, "k l m", "δ_kl", broadcast="m")
    B = np.zeros((2, 2, 3))
    np.testing.assert_array_equal(eg.evaluate(d, B=B), np.einsum("kl,m->klm", np.eye(2), np.ones(3)))
    for p, wrt in [("y_i = A_ii x_i", "A"), ("y_j = B_iij", "B"), ("t = B_iij", "B"), ("t = A_ii A_jj", "A")]:
        check(p, wrt)


def test_order_3_and_4_of_a_polynomial():
    p = "s = (x_i x_i)^2"
    assert_form(eg.diff(p, "x"), "a", "4 sum_i(x_i^2) x_a")
    assert_form(eg.diff(p, "x", 2), "a b", "8 x_a x_b + 4 sum_i(x_i^2) δ_ab")
    d3 = eg.diff(p, "x", 3)
    assert_form(d3, "a b c", "8 δ_bc x_a + 8 δ_ac x_b + 8 δ_ab x_c")
    d4 = eg.diff(p, "x", 4)
    assert_form(d4, "a b c d", "8 δ_ab δ_cd + 8 δ_ac δ_bd + 8 δ_ad δ_bc")
    check(p, "x", {"i": 3}, order=3)
    # the closed forms, numerically
    x = np.random.default_rng(1).standard_normal(4)
    eye = np.eye(4)
    want3 = 8 * (
        np.einsum("bc,a->abc", eye, x) + np.einsum("ac,b->abc", eye, x) + np.einsum("ab,c->abc", eye, x)
    )
    np.testing.assert_allclose(eg.evaluate(d3, x=x), want3)
    want4 = 8 * (
        np.einsum("ab,cd->abcd", eye, eye)
        + np.einsum("ac,bd->abcd", eye, eye)
        + np.einsum("ad,bc->abcd", eye, eye)
    )
    np.testing.assert_allclose(eg.evaluate(d4, x=x), want4)
    with pytest.warns(eg.ZeroDerivativeWarning):
        assert eg.diff(p, "x", 5).is_zero


def test_logsumexp_gives_the_softmax():
    d = eg.diff("l = logsumexp_i(z_i)", "z")
    assert_form(d, "j", "exp(z_j - logsumexp_k(z_k))")
    z = np.array([0.5, -1.0, 2.0, 800.0])  # large: the softmax is evaluated stably
    softmax = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose(eg.evaluate(d, z=z), softmax)
    batched = eg.diff("l_b = logsumexp_i(z_bi)", "z")
    assert_form(batched, "b j k", "exp(z_bk - logsumexp_m(z_bm)) δ_bj")
    check("l_b = logsumexp_i(z_bi)", "z", {"b": 2, "i": 3})


def test_function_derivatives_read_the_forward_value():
    # s_i = tanh(u_i) as its own statement: tanh' = 1 - s², no second tanh
    d = eg.diff("s_i = tanh(u_i); L = s_i s_i", "u")
    assert_form(d, "j", "2 (1 - s_j^2) s_j")
    assert not any(isinstance(n, Call) for n in walk(d.expr))
    assert_form(eg.diff("s_i = tanh(u_i)", "u"), "i j", "(1 - s_i^2) δ_ij")
    assert_form(eg.diff("s_i = tanh(u_i)", "u", 2), "i j k", "-2 s_i (1 - s_i^2) δ_ij δ_ik")
    assert_form(eg.diff("s_i = sigmoid(u_i)", "u"), "i j", "s_i (1 - s_i) δ_ij")
    assert_form(eg.diff("e_i = exp(u_i)", "u"), "i j", "e_i δ_ij")
    for p in [
        "s_i = tanh(u_i); L = s_i s_i",
        "s_i = sigmoid(u_i); L = s_i s_i",
        "e_i = exp(u_i); L = e_i e_i",
    ]:
        check(p, "u", order=3)


def test_chain_rule_through_intermediates():
    p = "h_bi = tanh(W_ij x_bj); o_bk = V_ki h_bi; L = sum_b(logsumexp_k(o_bk)) - o_bk Y_bk"
    d = eg.diff(p, "V")
    assert_form(d, "a c", "exp(o_ba - logsumexp_k(o_bk)) h_bc - Y_ba h_bc")
    for wrt in ["W", "V", "x"]:
        check(p, wrt, {"b": 2, "i": 3, "j": 4, "k": 5})
    # output= names an earlier target
    assert_form(eg.diff(p, "W", output="h"), "b i c d", "(1 - h_bi^2) δ_ic x_bd")


# ---------------------------------------------------------------- every rule, every function, numerically

F = {  # each function, kept in its domain
    "exp": "exp({u})",
    "log": "log({u}^2 + 1)",
    "sqrt": "sqrt(exp({u}))",
    "tanh": "tanh({u})",
    "sigmoid": "sigmoid({u})",
    "relu": "relu({u})",
    "softplus": "softplus({u})",
    "abs": "abs({u})",
    "sin": "sin({u})",
    "cos": "cos({u})",
    "step": "step({u})",
    "sign": "sign({u})",
}

SHAPES = {  # name -> indices of the input X, sizes
    "scalar": ("", {}),
    "vector": ("i", {"i": 3}),
    "matrix": ("ij", {"i": 2, "j": 3}),
    "3-index": ("ijk", {"i": 2, "j": 3, "k": 2}),
    "4-index": ("ijkl", {"i": 2, "j": 1, "k": 3, "l": 2}),
    "size-1": ("ij", {"i": 1, "j": 1}),
    "size-1 mixed": ("ijk", {"i": 1, "j": 3, "k": 1}),
}


def _ref(name: str, idx: str) -> str:
    return f"{name}_{idx}" if idx else name


def test_every_function_is_covered():
    assert set(F) == set(eg.FUNCTIONS)
    from eingrad.diff import DERIVATIVES

    assert set(DERIVATIVES) == set(eg.FUNCTIONS)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("fn", F)
def test_every_function_orders_1_and_2(fn, shape):
    idx, sizes = SHAPES[shape]
    x = _ref("X", idx)
    check(f"{_ref('Y', idx)} = {F[fn].format(u=x)}", "X", sizes)
    # through a contraction, with another input and a scalar output
    if idx:
        w = _ref("W", idx + "p")
        check(f"y_p = {F[fn].format(u=f'{w} {x}')}", "X", {**sizes, "p": 2})
        check(f"s = sum_{{{','.join(idx)}}}({F[fn].format(u=x)} {x}) c", "X", sizes)


def _templates(idx: str) -> dict[str, str]:
    """Programs exercising each derivative rule on an input X with indices ``idx`` (wrt X)."""
    X, Y, W = _ref("X", idx), _ref("Y", idx), _ref("W", idx + "p")
    out = {
        "product": f"{Y} = {X} {X} c",
        "sum and constants": f"{Y} = 2 {X} - 3 + c {X} {X}",
        "negation": f"{Y} = -{X} - -c",
        "division": f"{Y} = {X} / ({X}^2 + 2)",
        "negative power": f"{Y} = ({X}^2 + 1)^-2",
        "fractional power": f"{Y} = ({X}^2 + 1)^(-3/2) + ({X}^2 + 1)^0.5",
        "contraction": f"y_p = {X} {W}",
        "full contraction": f"s = {X} {X} {X} {X}" if idx else f"s = {X} {X}",
        "chain": f"{_ref('Z', idx)} = tanh({X}) {X}; s = {_ref('Z', idx)} {_ref('Z', idx)} + {_ref('Z', idx)} c",
        "shared intermediate": (
            f"{_ref('Z', idx)} = exp({X}); a = {_ref('Z', idx)} {_ref('Z', idx)}; "
            f"b = sum_p({_ref('Z', idx)} {W}) + {_ref('Z', idx)}; s = a b + a"
        ),
    }
    if idx:
        binds = ",".join(idx)
        out["sum binder"] = f"s = sum_{{{binds}}}(exp({X}) {X})"
        out["logsumexp binder"] = f"s = logsumexp_{{{binds}}}({X})"
        out["partial logsumexp"] = f"y_p = logsumexp_{idx[0]}({X} {W})"
        out["delta"] = f"{_ref('Y', idx + 'q')} = {X} δ_{idx[-1]}q"
        out["delta of three"] = f"{_ref('Y', idx + 'qr')} = {X} {X} δ_{idx[-1]}qr"
    return out


RULE_CASES = [
    (shape, rule, program, sizes)
    for shape, (idx, sizes) in SHAPES.items()
    for rule, program in _templates(idx).items()
]


@pytest.mark.parametrize(
    "shape,rule,program,sizes", RULE_CASES, ids=[f"{s}-{r}" for s, r, _, _ in RULE_CASES]
)
def test_every_rule_orders_1_and_2(shape, rule, program, sizes):
    check(program, "X", {**sizes, "p": 2})


SPECIAL = [
    # repeated indices
    ("t = A_ii", "A", {"i": 3}),
    ("y_j = B_iij", "B", {"i": 2, "j": 3}),
    ("t = B_iij x_j", "B", {"i": 2, "j": 3}),
    ("t = B_iij x_j", "x", {"i": 2, "j": 3}),
    ("y_i = A_ii x_i", "A", {"i": 3}),
    ("t = A_ij A_ji", "A", {"i": 3, "j": 3}),
    ("s = C_iijj", "C", {"i": 2, "j": 3}),
    ("y_i = C_iiii x_i", "C", {"i": 2}),
    # deltas, with sizes no array fixes
    ("y_ij = x_i δ_ij", "x", {"i": 3}),
    ("s = A_ij δ_ij", "A", {"i": 3, "j": 3}),
    ("y_i = A_ij δ_jk B_ik", "A", {"i": 2, "j": 3}),
    ("y_ijk = x_i δ_ijk", "x", {"i": 2}),
    ("s = δ_ij A_ij x_i", "x", {"i": 3, "j": 3}),
    ("y_j = δ_ii x_j + x_j x_k x_k", "x", {"i": 4, "j": 3, "k": 3}),
    ("z_j = δ_ii x_j x_j; s = z_j z_j + z_j", "x", {"i": 4, "j": 3}),
    ("s = sum_k(c^2 δ_kk) + sum_k(c δ_kk)", "c", {"k": 3}),
    # scalars
    ("s = a b", "a", None),
    ("s = a^3 / b", "b", None),
    ("y_i = c x_i + c^2", "c", None),
    ("s = c", "c", None),
    # binders over several indices and nested
    ("s = sum_{i,j}(A_ij x_i x_j)", "x", {"i": 3, "j": 3}),
    ("l = logsumexp_{i,j}(A_ij x_j)", "x", {"i": 2, "j": 3}),
    ("y_i = sum_j(A_ij sum_k(B_jk x_k))", "B", {"i": 2, "j": 3, "k": 4}),
    ("y_b = logsumexp_i(W_ij h_bj) + sum_j(h_bj)", "h", {"b": 2, "i": 3, "j": 4}),
    # multi-statement chains
    ("z_i = A_ij x_j; s = z_i z_i", "A", {"i": 2, "j": 3}),
    ("u_i = exp(x_i); v_i = u_i u_i; w_i = u_i v_i + sin(u_i); s = w_i", "x", {"i": 3}),
    ("u_i = A_ij x_j; a = u_i u_i; b = sum_i(log(u_i^2 + 1)); s = a b + u_i x_i", "x", {"i": 3, "j": 3}),
    ("Y_nh = X_nd W_dh + b_h; L = G_nh Y_nh", "W", {"n": 2, "d": 3, "h": 4}),
    ("Y_nh = X_nd W_dh + b_h; Z_nh = relu(Y_nh); L = sum_{n,h}(Z_nh^2)", "b", {"n": 2, "d": 3, "h": 4}),
    ("m_i = sum_j(A_ij) / 3; c_ij = A_ij - m_i; v = c_ij c_ij", "A", {"i": 2, "j": 3}),
]


@pytest.mark.parametrize("program,wrt,sizes", SPECIAL, ids=[f"{p} wrt {w}" for p, w, _ in SPECIAL])
def test_special_cases_orders_1_and_2(program, wrt, sizes):
    check(program, wrt, sizes)


def test_indices_whose_size_only_a_declaration_fixes():
    # the derivative of a renamed |k| reads the declared size of k
    d = eg.diff("s = sum_k(c^2 δ_kk) + sum_k(c δ_kk)", "c")
    assert eg.evaluate(d, c=2.0, sizes={"k": 3}) == pytest.approx(15.0)
    # an output index that only a delta links to a declared one
    d = eg.diff("D_ijk = v_k δ_ij", "v")
    out = eg.evaluate(d, v=np.ones(4), sizes={"i": 3})
    np.testing.assert_array_equal(out, np.einsum("ij,kl->ijkl", np.eye(3), np.eye(4)))


# ---------------------------------------------------------------- bad input

PROGRAM = "z_i = A_ij x_j; s = z_i z_i"


def test_wrt_not_an_input_lists_the_inputs():
    with pytest.raises(eg.DiffError, match=r"'B' is not an input.*A, x"):
        eg.diff(PROGRAM, "B")


def test_wrt_given_as_a_list_says_diff_takes_one_input():
    with pytest.raises(eg.DiffError, match=r"diff takes one input.*got 2: 'A', 'x'") as info:
        eg.diff(PROGRAM, ["A", "x"])
    assert "eg.grad" in info.value.hint


def test_wrt_that_is_a_target():
    with pytest.raises(eg.DiffError, match=r"'z' is computed by the program.*inputs are A, x"):
        eg.diff(PROGRAM, "z")


@pytest.mark.parametrize("output", ["q", "A", "x"])
def test_output_not_a_target(output):
    with pytest.raises(eg.DiffError, match=rf"'{output}' is not a target.*z, s"):
        eg.diff(PROGRAM, "x", output=output)


@pytest.mark.parametrize("order", [0, -1, 1.5, True, "2", None])
def test_bad_order(order):
    with pytest.raises(eg.DiffError, match="order must be a positive integer"):
        eg.diff(PROGRAM, "x", order=order)


def test_diff_errors_are_eingrad_errors():
    assert issubclass(eg.DiffError, eg.EingradError)


def test_identically_zero_derivative_warns_and_has_the_right_shape():
    program = "u_i = c_i d; y_i = A_ij x_j + u_i"
    with pytest.warns(eg.ZeroDerivativeWarning, match="'u' does not depend on 'A'"):
        d = eg.diff(program, "A", output="u")
    assert d.is_zero
    arrays = {"A": np.ones((2, 3)), "x": np.ones(3), "c": np.ones(2), "d": 1.0}
    out = eg.evaluate(d, **arrays)
    assert out.shape == (2, 2, 3) and not out.any()
    with pytest.warns(eg.ZeroDerivativeWarning, match="order-2"):
        h = eg.diff(program, "A", order=2)
    out = eg.evaluate(h, **arrays)
    assert out.shape == (2, 2, 3, 2, 3) and not out.any()
    with pytest.warns(eg.ZeroDerivativeWarning):
        s = eg.diff("s = x_i x_i + c", "c", order=2)
    assert eg.evaluate(s, x=np.ones(3), c=1.0).shape == ()


def test_hessian_is_order_2():
    a, b = eg.hessian(LOGISTIC, "w"), eg.diff(LOGISTIC, "w", order=2)
    assert a.order == b.order == 2 and str(a) == str(b)


# ---------------------------------------------------------------- explain

BIAS = "Y_nh = X_nd W_dh + b_h; L = G_nh Y_nh"


def test_explain_the_bias_gradient_like_the_guide():
    ex = eg.explain(BIAS, "b")
    (k,) = ex.derivative.wrt_indices[0]
    text = str(ex)
    steps = ex.steps
    # 1. the chain rule, summed over Y's indices
    chain = steps[0]
    assert "chain rule" in chain.reason
    assert isinstance(chain.rhs, Sum) and set(chain.rhs.indices) == {"n", "h"}
    line = chain.text()
    assert "Σ" in line and "∂L/∂Y_nh" in line and f"∂Y_nh/∂b_{k}" in line
    # 2. and 3. the two factors
    assert "∂L/∂Y_nh = G_nh" in text
    assert f"∂Y_nh/∂b_{k} = δ_h{k}" in text
    # 4. the substitution
    sub = next(s for s in steps if s.reason == "substitute")
    assert eg.equivalent(sub.rhs, expected(f"sum_{{n,h}}(G_nh δ_h{k})", k))
    # 5. a delta eats h
    eat = steps[-1]
    assert "delta eats" in eat.reason and "Σ_j A_ij δ_jk = A_ik" in eat.reason
    assert deltas(sub.rhs) and not deltas(eat.rhs)
    # ends with Σ_n G_nk
    assert re.sub(r"[\s()]", "", eat.text().splitlines()[-1]).endswith(f"=Σ_nG_n{k}")
    assert eg.equivalent(eat.rhs, expected(f"sum_n(G_n{k})", k))
    assert text.splitlines()[-1] == f"result: ∂L/∂b_{k} = Σ_n G_n{k}"


def test_explain_latex():
    latex = eg.explain(BIAS, "b").latex()
    assert latex.startswith("\\begin{aligned}") and latex.endswith("\\end{aligned}")
    assert "\\delta" in latex and "\\sum" in latex and "\\frac{\\partial L}" in latex


def test_explain_a_single_statement_shows_deltas_introduced_then_eaten():
    ex = eg.explain("f_i = W_ij v_j", "W")
    first, last = ex.steps[0], ex.steps[-1]
    assert "gives deltas" in first.reason
    assert len(deltas(first.rhs)) == 2 and any(isinstance(n, Sum) for n in walk(first.rhs))
    assert any("delta eats" in s.reason for s in ex.steps)
    assert len(deltas(last.rhs)) == 1 and not any(isinstance(n, Sum) for n in walk(last.rhs))
    assert_form(ex.derivative, "i k l", "δ_ik v_l")
    assert "\\delta" in ex.latex()
    assert str(ex).splitlines()[-1] == "result: ∂f_i/∂W_kl = δ_ik v_l"


# ---------------------------------------------------------------- printing of derivatives


def test_derivative_text_and_latex():
    d = eg.diff("f_i = W_ij v_j", "W")
    assert d.indices == ("i", "k", "l")
    assert d.latex() == "\\frac{\\partial f_{i}}{\\partial W_{kl}} = \\delta_{ik} v_{l}"
    h = eg.hessian("q = x_i A_ij x_j", "x")
    assert str(h).startswith("∂²q/∂x_") and isinstance(h.expr.terms[0], (Tensor, Mul))


def test_python_numbers_are_weak_in_derivatives_too():
    """lam=0.5 beside float32 arrays keeps a derivative float32, as evaluate keeps a program."""
    d = eg.diff("y_i = lam x_i^2", "x")
    x = np.arange(1.0, 4.0, dtype=np.float32)
    value = eg.evaluate(d, x=x, lam=0.5)
    assert value.dtype == np.float32
    np.testing.assert_allclose(value, np.diag(x), rtol=1e-6)
    assert eg.evaluate(eg.diff("y = lam x", "x"), x=1.0, lam=0.5).dtype == np.float64
