"""Lowering one program to backend source code, a line per step.

Every value the generated code holds is an array with a known label (index)
order.  Contractions (a sum over a product, or a product) are planned with
opt_einsum for the actual sizes and emitted pairwise as an expert would:
``tensordot`` (BLAS) where labels are contracted, batched ``@`` where some are
also kept, a broadcast product where none are contracted.  A delta left in a
result is written into the diagonal of the output (a strided view; a masked add
for backends without in-place writes), never materialised as an identity.
Repeated subexpressions are computed once, and temporaries are deleted after
their last use.
"""

from __future__ import annotations

import builtins
import functools
import keyword
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

import opt_einsum

from .. import expr as E
from ..backends import Backend
from ..errors import EingradError, check_allocation
from ..expr import Add, Call, Const, Delta, Expr, LogSumExp, Mul, Pow, Size, Sum, Tensor, factors_of
from ..names import is_name
from ..program import Program, Statement
from .buffers import resolve_stacks
from .conv import HELPERS as CONV_HELPERS
from .conv import contract_shifts
from .gather import HELPERS as GATHER_HELPERS
from .gather import contract_picks, distributed, without_unit_powers
from .linalg import emit_matfn, solved_factors
from .lines import (
    OUT,
    Line,
    StackedProduct,
    complete_uses,
    debug_checks,
    release_dead,
    row_offset,
    write_in_place,
)
from .rewrite import deltas_outside, merged_contractions, merged_reductions, regrouped_sum, softmax_parts
from .shapes import HELPERS as SIZE_HELPERS
from .shapes import SizeVars
from .stacks import MIN_MEMBERS, Stack, split_product, stack_worthwhile

__all__ = ["Generator", "GeneratedCode", "CodegenError", "check_names"]


class CodegenError(EingradError, ValueError):
    """A program that cannot be compiled (an unsafe name, an unsupported form)."""


@dataclass(frozen=True)
class Value:
    """An array (or a Python scalar literal) in generated code, with its label order."""

    code: str
    labels: tuple[str, ...]
    temp: bool = False
    mask: bool = False  # a bool array standing for a 0/1 factor (never written into)


@dataclass
class GeneratedCode:
    source: str
    outputs: list[str]
    inputs: list[str]


def _safe(name: str, taken: set[str]) -> str:
    """A Python identifier for a program name that cannot shadow generated names."""
    if not is_name(name):
        raise CodegenError(f"{name!r} is not a valid tensor name and cannot be compiled")
    # Python reads identifiers in NFKC form: 𝐱 is x, 𝐱𝐩 is xp.  Compare that form.
    candidate = unicodedata.normalize("NFKC", name)
    if keyword.iskeyword(candidate) or hasattr(builtins, candidate) or candidate in {"xp", "arrays"}:
        candidate = candidate + "_"  # names with '_' cannot be written in the language
    while candidate in taken:
        candidate += "_"
    taken.add(candidate)
    return candidate


def check_names(statements: Iterable[Statement], backend: Backend, names: Iterable[str] = ()) -> None:
    """Every tensor and index name is a name of the language, every function the backend's:
    generated source (comments included) is built from validated identifiers only."""
    for name in names:
        _check_name(name, "tensor")
    for stmt in statements:
        _check_name(stmt.target, "tensor")
        for index in set(stmt.indices) | E.all_indices(stmt.expr):
            _check_name(index, "index")
        for node in E.walk(stmt.expr):
            if isinstance(node, Tensor):
                _check_name(node.name, "tensor")
            elif isinstance(node, Call) and node.fn not in backend.functions:
                raise CodegenError(f"the {backend.name} backend has no function {node.fn!r}")


def _check_name(name: object, what: str) -> None:
    if not isinstance(name, str) or not is_name(name):
        raise CodegenError(f"{name!r} is not a valid {what} name and cannot be compiled")


@dataclass
class Generator:
    """Emits one function for a program, given the index sizes of every statement."""

    backend: Backend
    lines: list[Line] = field(default_factory=list)
    counter: int = 0
    names: dict[str, str] = field(default_factory=dict)
    cse: dict[tuple, Value] = field(default_factory=dict)
    cse_keys: dict[str, list[tuple]] = field(default_factory=dict)  # the keys of each value's code
    sizes: dict[str, int] = field(default_factory=dict)
    taken: set[str] = field(default_factory=set)
    target_order: tuple[str, ...] = ()
    like: str | None = None  # an array defined before the current statement (for dtype/device)
    weak: frozenset[str] = frozenset()  # inputs passed as Python numbers (made arrays on entry)
    integer: frozenset[str] = frozenset()  # inputs read as indices (never a dtype's source)
    # Every array input has one floating dtype: a step may write into a dying temporary
    # (out=, +=) without changing the result's dtype.
    fuse: bool = False
    statement_start: int = 0  # the first line of the current statement's steps
    stacks_at: dict[int, list[Stack]] = field(default_factory=dict)  # by first member statement
    # Stacked blocks that hold a product plus a vector: (the vector, the block) by the product's key
    biased: dict[tuple, tuple[str, Value]] = field(default_factory=dict)
    masks: set[str] = field(default_factory=set)  # temporaries that are bool arrays
    formed_inverses: set = field(default_factory=set)  # inverses some statement needs as arrays
    debug: bool = False  # check before every in-place write that no live value shares the buffer
    # Bytes per element of the arrays the code makes: each one's size is checked as it is
    # planned (an array that cannot fit is refused before any code runs); None: unchecked.
    itemsize: int | None = None
    real_sizes: dict[str, int] = field(default_factory=dict)  # the call's sizes, for those checks
    target_name: str = ""
    # Sizes in the code: the variable holding each index's size (read from the arrays at
    # entry), for the current statement; ``literal`` once a size had to be written as a number.
    size_vars: SizeVars | None = None
    codes: dict[str, str | None] = field(default_factory=dict)
    literal: bool = False
    views: set[str] = field(default_factory=set)  # temporaries that are read-only windows (§11)

    # ---------------------------------------------------------------- plumbing
    def temp(
        self,
        code: str,
        labels: tuple[str, ...],
        uses: tuple[str, ...],
        fresh: bool = False,
        inplace: dict[str, str] | None = None,
    ) -> Value:
        name = self.fresh_name()
        if self.itemsize and labels:
            check_allocation(tuple(self.real_sizes.get(i, 1) for i in labels), self.itemsize,
                             f"an array in the code for {self.target_name}")
        self.lines.append(Line(f"{name} = {code}", name, uses, fresh, inplace or {}))
        return Value(name, labels, True)

    def elementwise(self, code: str, labels: tuple[str, ...], operands: list[Value], out_code) -> Value:
        """A fresh array from an elementwise step; ``out_code(dest)`` is the step written into
        the array ``dest``: offered in place for operands of the result's full shape, and
        kept for a stacked buffer's row block (see ``buffers``)."""
        inplace = {}
        if not (self.fuse and self.backend.out_functions):
            return self.temp(code, labels, _uses(operands), fresh=True)
        for v in operands:
            if v.labels == labels and labels and v.code.isidentifier() and v.code not in inplace and not v.mask:
                if any(w.code == v.code and w.labels != v.labels for w in operands):
                    continue  # A + Aᵀ: a transposed view of the buffer is read (torch refuses it)
                inplace[v.code] = out_code(v.code)
        value = self.temp(code, labels, _uses(operands), fresh=True, inplace=inplace)
        if labels:
            self.lines[-1].out_to = out_code(OUT)
        return value

    def remember(self, key: tuple, value: Value, mapping: dict[str, str] | None = None) -> None:
        """``value`` is the common subexpression ``key``; ``mapping`` renames its labels (the
        caller's index names) to the key's."""
        if mapping is not None:
            value = _relabeled(value, mapping)
        self.cse[key] = value
        self.cse_keys.setdefault(value.code, []).append(key)

    def recall(self, key: tuple, mapping: dict[str, str]) -> Value | None:
        """The value remembered for ``key``, in the caller's index names (``mapping`` as for
        ``remember``), or None."""
        cached = self.cse.get(key)
        return None if cached is None else _relabeled(cached, {c: i for i, c in mapping.items()})

    def fresh_name(self) -> str:
        self.counter += 1
        return f"_t{self.counter}"

    def op(self, kind: str, **kw) -> str:
        return self.backend.ops[kind].format(**kw)

    def like_code(self) -> str:
        """An array whose dtype (and device) new arrays take; with no inputs, float64's."""
        return self.like or _NO_ARRAY_LIKE

    def size(self, index: str) -> str:
        """The code of index ``index``'s size in the current statement: its variable
        (``size_n``), or the number where no array passed gives it."""
        code = self.codes.get(index)
        if code is None:
            self.literal = True
            return str(self.sizes[index])
        return code

    def shape_code(self, indices: Iterable[str]) -> str:
        """A shape tuple in code: ``(size_n, size_h)``."""
        parts = [self.size(i) for i in indices]
        return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"

    def count_code(self, indices: Iterable[str]) -> str:
        """The number of entries over these indices, in code: ``size_n * size_h`` (1 for none)."""
        parts = [self.size(i) for i in indices]
        return " * ".join(parts) if parts else "1"

    def axis_size(self, name: str, axis: int, value: int) -> str:
        """The code of the size of an input's axis."""
        code = self.size_vars.axis_var(name, axis) if self.size_vars is not None else None
        if code is None:
            self.literal = True
            return str(value)
        return code

    def var(self, name: str) -> str:
        if name not in self.names:
            self.names[name] = _safe(name, self.taken)
        return self.names[name]

    # ---------------------------------------------------------------- statements
    def plan(self, stacks: list[Stack]) -> None:
        """Products to compute as one stacked product, at the first statement that reads one."""
        for stack in stacks:
            self.stacks_at.setdefault(min(m.statement for m in stack.members), []).append(stack)

    def emit_stack(self, stack: Stack) -> None:
        """``concatenate([X1, …, Xk]) @ U`` once, a row block per member; each member's
        product is then found among the common subexpressions."""
        members = [self.var(m.tensor.name) for m in stack.members]
        shared = self.var(stack.shared)
        right = self.op("T", x=shared) if stack.transpose else shared
        code = self.op("matmul", a=self.op("concat", args=", ".join(members)), b=right)
        total = self.temp(code, (), tuple(members) + (shared,), fresh=True)
        biased = bool(stack.bias) and self.fuse  # (mixed dtypes: b may not be added in place)
        if biased:  # every member's statement adds b: added once, to every row
            bias = self.var(stack.bias)
            self.lines.append(Line(f"{total.code} += {bias}", None, (total.code, bias)))
        rows_code = self.axis_size(stack.members[0].tensor.name, 0, stack.rows)
        for k, m in enumerate(stack.members):
            out = [i for i in m.node.free if i != m.tensor.indices[0]]  # the shared matrix's other index
            labels = (m.tensor.indices[0], out[0])
            rows = f"{total.code}[{row_offset(k, rows_code)}:{row_offset(k + 1, rows_code)}]"
            block = self.temp(rows, labels, (total.code,), fresh=True)
            self.lines[-1].view = (total.code, k * stack.rows, (k + 1) * stack.rows)
            key, mapping = _cse_key(m.node, dict(m.sizes))
            value = _relabeled(block, mapping)
            if biased:
                self.biased[key] = (stack.bias, value)  # the block is X_t U + b, not X_t U
            else:
                self.remember(key, value)

    def statement(self, stmt: Statement, sizes: dict[str, int], text: str, index: int | None = None,
                  codes: dict[str, str | None] | None = None, real_sizes: dict[str, int] | None = None) -> None:
        """Emit one statement; ``codes``: the variable of each index's size (None: sizes are
        written as numbers); ``real_sizes``: the sizes of the call (``sizes``, the ones the
        code is planned for, may differ), which allocation checks use."""
        self.sizes = sizes
        self.real_sizes = real_sizes if real_sizes is not None else sizes
        self.codes = codes or {}
        self.target_order = tuple(stmt.indices)
        self.lines.append(Line("# " + "".join(c if c.isprintable() else "?" for c in text)))
        self.statement_start = len(self.lines)
        for stack in self.stacks_at.pop(index, []) if index is not None else []:
            self.emit_stack(stack)
        # A delta on the target's indices inside a product or a sum comes out to a term
        # of its own, to be written into a diagonal (never an array).
        expr = deltas_outside(stmt.expr, frozenset(stmt.indices))
        dense_terms, delta_terms = _split_delta_terms(expr, set(stmt.indices))
        self.like = next((v for k, v in self.names.items() if k not in self.integer), None)
        target = self.var(stmt.target)
        shape = tuple(self.real_sizes[i] for i in stmt.indices)
        self.target_name = stmt.target
        if self.itemsize:
            check_allocation(shape, self.itemsize, f"the array {stmt.target}")
        # The dense part, then each delta term added into the diagonal it lives on,
        # through a strided view.
        zeros = False  # the target is a fresh array of zeros
        if any(isinstance(n, (Tensor, Delta, E.Shift)) for t in dense_terms for n in E.walk(t)):
            self.finish(target, self.emit(E.add(*dense_terms)), stmt.indices, copy=bool(delta_terms))
        else:
            # A constant (zeros under a delta, a zero derivative, L = 0.5): a Python number,
            # made an array of the inputs' dtype, as evaluate makes it.
            value = self.emit(E.add(*dense_terms)) if dense_terms else Value("0.0", ())
            zeros = value.code == "0.0"
            if zeros:
                code = self.op("zeros", shape=self.shape_code(stmt.indices), like=self.like_code())
            else:
                code = self.op("full", shape=self.shape_code(stmt.indices), x=value.code, like=self.like_code())
            self.lines.append(Line(f"{target} = {code}", target, _uses([value]), fresh=True))
        # Into fresh zeros, the first diagonal is assigned, not added: += would read the
        # zeroed pages before writing them (twice the page faults on a 34 MB Hessian).
        for k, term in enumerate(delta_terms):
            self.add_delta_term(target, term, stmt.indices, assign=zeros and k == 0)

    def finish(self, target: str, value: Value, indices, copy: bool = False) -> None:
        code = self.aligned(value, tuple(indices))
        missing = [i for i in indices if i not in value.labels]
        copy = copy or value.code in self.views  # a window's strided view: an array of its own
        uses = (value.code,) if value.temp or value.code in self.names.values() else ()
        if missing or not value.labels and indices:
            code = self.op("broadcast", x=code, shape=self.shape_code(indices))
            copy = True
        if copy:
            code = self.op("copy", x=code)
        start = next((k for k in range(len(self.lines) - 1, self.statement_start - 1, -1)
                      if self.lines[k].defines == value.code), None) if value.temp else None
        if code == value.code and start is not None:
            # The statement's steps compute the target itself: name it so (Y = X W + b,
            # not _t2 = ...; Y = _t2; a sum accumulated in place is dLdU += ...), and let
            # later statements reuse it under that name.
            word = re.compile(rf"\b{re.escape(value.code)}\b")
            for line in self.lines[start:]:
                line.text = word.sub(target, line.text)
                line.uses = tuple(target if u == value.code else u for u in line.uses)
                line.defines = target if line.defines == value.code else line.defines
                line.inplace = {(target if k == value.code else k): word.sub(target, v) for k, v in line.inplace.items()}
                line.out_to = word.sub(target, line.out_to) if line.out_to else None
                if line.stacked:
                    line.stacked = line.stacked.renamed(value.code, target)
            for key in self.cse_keys.pop(value.code, []):
                self.remember(key, replace(self.cse[key], code=target, temp=False))
            return
        alias = code if code == value.code and code.isidentifier() else None
        self.lines.append(Line(f"{target} = {code}", target, uses, fresh=copy, alias=alias))

    def add_delta_term(self, target: str, term: Expr, indices: tuple[str, ...], assign: bool = False) -> None:
        factors = factors_of(term)
        deltas = [f for f in factors if isinstance(f, Delta)]
        rest = [f for f in factors if not isinstance(f, Delta)]
        parent = {i: i for i in indices}

        def find(i: str) -> str:
            while parent[i] != i:
                i = parent[i]
            return i

        for d in deltas:
            for i in d.indices[1:]:
                parent[find(i)] = find(d.indices[0])
        # Each delta group is represented by its first index in target order.
        rep = {}
        for i in indices:
            rep.setdefault(find(i), i)
        mapping = {i: rep[find(i)] for i in indices}
        view_labels = tuple(dict.fromkeys(mapping[i] for i in indices))
        value = self.emit(E.rename_indices(E.mul(*rest), mapping)) if rest else Value("1.0", ())
        symbols = {label: opt_einsum.get_symbol(k) for k, label in enumerate(view_labels)}
        spec = "".join(symbols[mapping[i]] for i in indices) + "->" + "".join(symbols[v] for v in view_labels)
        uses = (target,) + _uses([value])  # a program array (L of dLdx) is read here too
        if self.backend.inplace:
            view = f"_diagonal({target}, {spec!r})"
            op = "=" if assign else "+="
            self.lines.append(Line(f"{view}[...] {op} {self.aligned(value, view_labels)}", None, uses))
        else:  # immutable arrays (jax, dask): a new array, the value added where the delta is 1
            code = f"_diagonal_add({target}, {spec!r}, {self.aligned(value, view_labels)})"
            self.lines.append(Line(f"{target} = {code}", target, uses))

    # ---------------------------------------------------------------- expressions
    def emit(self, e: Expr) -> Value:
        if isinstance(e, Call) and e.fn == "exp" and (parts := softmax_parts(e.arg)) is not None:
            # one form for every softmax (exp(z_j - logsumexp_k(z_k)) and softmax_j(z_j)): one value
            z, over = parts
            e = Call("exp", E.add(z, E.neg(E.logsumexp(over, z))))
        # Keyed up to index names: (1 - H_nk^2) dLdH_nk and (1 - H_nh^2) dLdH_nh are one value.
        key, mapping = _cse_key(e, self.sizes)
        cached = self.recall(key, mapping)
        if cached is not None:
            return cached
        value = getattr(self, "emit_" + type(e).__name__)(e)
        self.remember(key, value, mapping)
        return value

    def emit_Tensor(self, e: Tensor) -> Value:
        name = self.var(e.name)
        labels = tuple(dict.fromkeys(e.indices))
        if len(labels) == len(e.indices):
            return Value(name, e.indices)
        symbols = {label: opt_einsum.get_symbol(k) for k, label in enumerate(labels)}
        spec = "".join(symbols[i] for i in e.indices) + "->" + "".join(symbols[i] for i in labels)
        return self.temp(self.op("einsum", spec=spec, args=name), labels, (name,))

    def emit_Const(self, e: Const) -> Value:
        value = e.as_float()
        if math.isinf(value):  # beyond float64's range, as evaluate computes it
            return Value("float('inf')" if value > 0 else "(-float('inf'))", ())
        return Value(repr(value), ())

    def emit_Size(self, e: Size) -> Value:
        # read from the arrays (a float, as evaluate computes |n|): right at every size
        return Value(f"float({self.size(e.index)})", ())

    def emit_Delta(self, e: Delta) -> Value:
        labels = tuple(dict.fromkeys(e.indices))
        if len(labels) == 1:
            return Value("1.0", ())
        like = self.like
        code = f"_kronecker({self.size(labels[0])}, {len(labels)}, {like})"
        return self.temp(code, labels, (like,) if like else ())

    def emit_Add(self, e: Add) -> Value:
        # A term with a negative coefficient is subtracted: 1 - s^2, not 1 + (-1.0 * s^2).
        # The widest term comes first, a positive one where there is one (lam w - Xᵀ(y s)).
        terms = []
        for term in e.terms:
            negative = isinstance(term, Mul) and isinstance(term.factors[0], Const) and term.factors[0].value < 0
            if negative:
                term = E.mul(Const(-term.factors[0].value), *term.factors[1:])
            terms.append((negative, term))
        terms.sort(key=lambda t: (t[0], -len(t[1].free)))  # positive first, widest first
        if self.biased:
            folded = self.with_bias(terms)
            if folded is not None:
                return folded
        if self.fuse and self.backend.out_functions and len(terms) >= MIN_MEMBERS:
            stacked = self.stacked_sum(terms, self.out_order(e))
            if stacked is not None:
                return stacked
        combined = merged_contractions(terms, self.sizes)  # A X + Bᵀ X as (A + Bᵀ) X
        if combined is not None:
            return self.emit(combined)
        merged = merged_reductions(terms, self.sizes) if len(terms) > 2 else None
        if merged is not None:
            return self.emit(merged)
        if self.fuse and len(terms) > 2 and len(terms[0][1].free) == len(e.free):
            # A long sum is accumulated in one buffer: each term is computed and added,
            # then released (50 per-step products of an RNN's weight gradient are not
            # all alive at once).
            return self.accumulate((negative, self.emit(term)) for negative, term in terms)
        parts = [self.emit(t) for _, t in terms]
        order = max(parts, key=lambda v: len(v.labels)).labels
        labels = tuple(dict.fromkeys(order + tuple(i for v in parts for i in v.labels)))
        if len(parts) == 2:
            return self.combine(terms[0][0], parts[0], terms[1][0], parts[1], labels)
        code = ""
        for k, ((negative, _), v) in enumerate(zip(terms, parts, strict=True)):
            text = self.aligned(v, labels)
            code += (("-" if negative else "") + text) if k == 0 else (" - " if negative else " + ") + text
        return self.temp(code, labels, _uses(parts), fresh=True)

    def with_bias(self, terms: list[tuple[bool, Expr]]) -> Value | None:
        """A sum holding X_t U + b where a stacked block holds exactly that: the block,
        plus the other terms."""
        for k, (negative, term) in enumerate(terms):
            if negative or not isinstance(term, Sum):  # the blocks hold Σ_c X_rc U_c.
                continue
            key, mapping = _cse_key(term, self.sizes)
            if key not in self.biased:
                continue
            bias, block = self.biased[key]
            value = _relabeled(block, {c: i for i, c in mapping.items()})
            vector = Tensor(bias, (value.labels[1],))
            at = next((j for j, (neg, t) in enumerate(terms) if not neg and t == vector), None)
            if at is None:
                continue
            rest = [t for j, t in enumerate(terms) if j not in (k, at)]
            if not rest:
                return value
            positive = [t for neg, t in rest if not neg]
            negative = [t for neg, t in rest if neg]
            if positive:
                other = self.emit(E.add(*positive))
                value = self.combine(False, value, False, other, value.labels)
            if negative:
                other = self.emit(E.add(*negative))
                value = self.combine(False, value, True, other, value.labels)
            return value
        return None

    def stacked_sum(self, terms: list[tuple[bool, Expr]], out: tuple[str, ...]) -> Value | None:
        """Σ_t Σ_c A_t[c,i] B_t[c,j] as one product of row-stacked operands (``Aᵀ B``), and
        Σ_t Σ_c B_t[c,j] as ``𝟏ᵀ B``: what an expert writes for a loop's weight and bias
        gradients (one GEMM over every step, not one small one per step).  Where the blocks
        live (one buffer, views, or a concatenation) is settled once buffers are known."""
        if any(negative for negative, _ in terms):
            return None
        splits = [split_product(term, out, self.sizes) for _, term in terms]
        if any(s is None for s in splits) or not stack_worthwhile(splits, self.sizes):
            return None
        pairs = []
        for s in splits:
            left = self.emit(E.mul(*s.left)) if s.left else None
            pairs.append((left, self.emit(E.mul(*s.right)), s))
        blocks = all(
            right.code.isidentifier() and right.labels == (s.summed, s.right_index)
            and (left is None or left.code.isidentifier() and left.labels == (s.summed, s.left_index))
            for left, right, s in pairs
        )
        if not blocks:  # not row blocks: each term's product, accumulated
            return self.accumulate(((False, self.pair(left, right, set(out), order=out)) if left is not None
                                    else (False, self.temp(self.sum_code(right, (0,)), out, _uses([right]), fresh=True))
                                    for left, right, _ in pairs), out)
        first = splits[0]
        product = StackedProduct(
            self.backend.ops,
            tuple(left.code for left, _, _ in pairs) if first.left else None,
            tuple(right.code for _, right, _ in pairs),
            self.sizes[first.summed],
            self.sizes[first.left_index] if first.left else 1,
            self.sizes[first.right_index],
            self.size(first.summed),
            self.size(first.left_index) if first.left else "1",
            self.size(first.right_index),
        )
        value = self.temp(product.fallback(), out, product.names(), fresh=True)
        self.lines[-1].stacked = product
        return value

    def accumulate(self, parts: Iterator[tuple[bool, Value]], labels: tuple[str, ...] | None = None) -> Value:
        """± part ± part ± … (at least two; ``negative``, value pairs), added into one buffer in
        the first part's labels unless given.  Each part is taken from the iterator only when
        it is added, so that a long sum's terms are never all alive at once."""
        negative, first = next(parts)
        labels = labels or first.labels
        second_negative, second = next(parts)
        total = self.combine(negative, first, second_negative, second, labels)
        for negative, part in parts:
            op = "-=" if negative else "+="
            self.lines.append(Line(f"{total.code} {op} {self.aligned(part, labels)}", None, _uses([total, part])))
        return total

    def combine(self, neg_a: bool, a: Value, neg_b: bool, b: Value, labels: tuple[str, ...]) -> Value:
        """``a + b``, ``a - b`` or ``-a - b``: one elementwise step."""
        x, y = self.aligned(a, labels), self.aligned(b, labels)
        code = ("-" if neg_a else "") + x + (" - " if neg_b else " + ") + y
        if neg_a:
            return self.temp(code, labels, _uses([a, b]), fresh=True)
        fn = "xp.subtract" if neg_b else "xp.add"
        return self.elementwise(code, labels, [a, b], lambda out: f"{fn}({x}, {y}, out={out})")

    def emit_Mul(self, e: Mul) -> Value:
        return self.contract(list(e.factors), self.out_order(e))

    def out_order(self, e: Expr) -> tuple[str, ...]:
        """Free labels in the statement target's order where they are target indices."""
        order = _free_order(e)
        target = self.target_order
        if all(i in target for i in order):
            return tuple(sorted(order, key=target.index))
        return order

    def emit_Sum(self, e: Sum) -> Value:
        regrouped = regrouped_sum(e)  # Σ_n (P_nc X_nd - X_nd Y_nc) as Xᵀ (P - Y)
        if regrouped is not None:
            return self.emit(regrouped)
        factors = list(factors_of(e.body))
        value = self.contract(factors, self.out_order(e))
        absent = [i for i in e.indices if i not in e.body.free]
        if absent:
            value = self.scaled(f"float({self.count_code(absent)})", value)
        return value

    def scaled(self, coefficient: str, value: Value) -> Value:
        """``coefficient * value``, a scalar times an array."""
        return self.elementwise(f"{coefficient} * {value.code}", value.labels, [value],
                                lambda out: f"xp.multiply({value.code}, {coefficient}, out={out})")

    def emit_Pow(self, e: Pow) -> Value:
        base = self.emit(e.base)
        x, k = base.code, e.exponent
        if not any(isinstance(n, (Tensor, Delta)) for n in E.walk(e.base)):
            # a constant's power: an array of the inputs' dtype (torch's sqrt takes no float;
            # a negative number's square root is nan, as evaluate gives, not complex)
            x = self.op("asarray", x=x, like=self.like_code())
            base = Value(x, (), False)
        out = None
        if k == 2:
            code, out = f"{x} * {x}", f"xp.multiply({x}, {x}, out={OUT})"
        elif k == -1:
            code, out = f"1.0 / {x}", f"xp.divide(1.0, {x}, out={OUT})"
        elif k == E.Fraction(1, 2):
            code, out = f"xp.sqrt({x})", f"xp.sqrt({x}, out={OUT})"
        elif k == E.Fraction(-1, 2):
            code = f"1.0 / xp.sqrt({x})"
        elif k.denominator == 1:
            code = f"{x} ** {int(k)}"
        else:
            code = f"{x} ** {float(k)!r}"
        if out is None or not base.labels:
            return self.temp(code, base.labels, _uses([base]), fresh=bool(base.labels))
        return self.elementwise(code, base.labels, [base], lambda dest: out.replace(OUT, dest))

    def emit_Call(self, e: Call) -> Value:
        if e.fn == "exp" and (parts := softmax_parts(e.arg)) is not None:
            return self.softmax(*parts)
        # log(exp(x)), log(σ(x)), log(softplus(x)): one stable step (finite where the value is).
        stable = self.backend.compositions.get((e.fn, e.arg.fn)) if isinstance(e.arg, Call) else None
        inner = e.arg.arg if stable is not None else e.arg
        arg = self.emit(inner)
        x = arg.code
        if not any(isinstance(n, (Tensor, Delta)) for n in E.walk(inner)):
            # f(constant): an array of the inputs' dtype, not a Python or float64 number
            x = self.op("asarray", x=x, like=self.like_code())
        if stable == "{x}" and x == arg.code:
            return arg
        code = (stable or self.backend.functions[e.fn]).format(x=x)
        template = None if stable is not None else self.backend.out_functions.get(e.fn)
        if template is None or x != arg.code:
            return self.temp(code, arg.labels, _uses([arg]), fresh=bool(arg.labels))
        return self.elementwise(code, arg.labels, [arg], lambda out: template.format(x=x, out=out))

    def softmax(self, z: Expr, over: tuple[str, ...]) -> Value:
        """exp(z - logsumexp_over(z)): the softmax of z over ``over``, in one buffer."""
        value = self.emit(z)
        axes = tuple(value.labels.index(i) for i in over)
        x = value.code
        return self.elementwise(f"_softmax({x}, {axes})", value.labels, [value],
                                lambda out: f"_softmax({x}, {axes}, out={out})")

    def emit_LogSumExp(self, e: LogSumExp) -> Value:
        body = self.emit(e.body)
        axes = tuple(k for k, label in enumerate(body.labels) if label in e.indices)
        labels = tuple(label for label in body.labels if label not in e.indices)
        return self.temp(f"_logsumexp({body.code}, {axes})", labels, _uses([body]), fresh=bool(labels))

    def emit_Reduce(self, e: E.Reduce) -> Value:
        """max_k / min_k: one reduction over the bound axes (xp.max, torch.amax)."""
        body = self.emit(e.body)
        axes = tuple(k for k, label in enumerate(body.labels) if label in e.indices)
        labels = tuple(label for label in body.labels if label not in e.indices)
        code = self.op(e.op, x=body.code, axes=axes)
        return self.temp(code, labels, _uses([body]), fresh=bool(labels))

    def selection_args(self, e: Expr) -> tuple[list[str], tuple[str, ...], list[Value]]:
        """The arguments of a selection or comparison, broadcast against each other (as the
        terms of a sum are); a number is an array of the inputs' dtype (torch's maximum
        takes no float)."""
        labels = self.out_order(e)
        values = [self.emit(a) for a in e.children]
        codes = []
        for v in values:
            code = self.aligned(v, labels)
            if not v.labels and not v.code.isidentifier():
                code = self.op("asarray", x=code, like=self.like_code())
            codes.append(code)
        return codes, labels, values

    def emit_Choose(self, e: E.Choose) -> Value:
        """max(a, b), min(a, b), where(c, a, b), clip(x, lo, hi) = min(max(x, lo), hi)."""
        args, labels, values = self.selection_args(e)
        if e.op == "max":
            code = f"xp.maximum({args[0]}, {args[1]})"
        elif e.op == "min":
            code = f"xp.minimum({args[0]}, {args[1]})"
        elif e.op == "where":
            code = f"xp.where({args[0]} != 0, {args[1]}, {args[2]})"
        else:
            code = f"xp.minimum(xp.maximum({args[0]}, {args[1]}), {args[2]})"
        return self.temp(code, labels, _uses(values), fresh=bool(labels))

    def emit_Compare(self, e: E.Compare) -> Value:
        """a > b as 1.0 or 0.0 in the inputs' dtype."""
        (a, b), labels, values = self.selection_args(e)
        code = self.op("cast", x=f"{a} {e.op} {b}", like=self.like_code())
        return self.temp(code, labels, _uses(values), fresh=bool(labels))
    def emit_Shift(self, e: E.Shift) -> Value:
        """δ[j, a·i + b·k + c] (LANGUAGE.md §11) as a dense 0/1 mask over its distinct indices, from
        broadcast aranges of sizes read from the arrays (a first lowering; a sliding window is
        future work).  ``temp`` refuses, before the code runs, a mask that cannot fit."""
        labels = tuple(dict.fromkeys(e.indices))
        weight = dict.fromkeys(labels, 0)
        weight[e.index] += 1
        for a, name in e.terms:
            weight[name] -= a
        like = self.like
        sizes = self.shape_code(labels)
        code = f"_shift({sizes}, {tuple(weight[i] for i in labels)}, {e.offset}, {like})"
        return self.temp(code, labels, (like,) if like else ())

    def emit_Pick(self, e: E.Pick) -> Value:
        return contract_picks(self, [e], self.out_order(e))

    def emit_MatFn(self, e: E.MatFn) -> Value:
        return emit_matfn(self, e)

    # ---------------------------------------------------------------- layout
    def aligned(self, value: Value, target: tuple[str, ...]) -> str:
        """``value`` transposed and expanded to broadcast against ``target``'s labels."""
        if not value.labels:
            return value.code
        present = [t for t in target if t in value.labels]
        code = value.code
        perm = tuple(value.labels.index(t) for t in present)
        if perm != tuple(range(len(perm))):
            code = self.op("transpose", x=code, perm=perm)
        first = target.index(present[0]) if present else 0
        # Leading missing labels broadcast by themselves; inner ones need new axes.
        inner = target[first:]
        if any(t not in value.labels for t in inner):
            code = f"{code}[{', '.join(':' if t in value.labels else 'None' for t in inner)}]"
        return code

    def contract(self, factors: list[Expr | Value], out: tuple[str, ...]) -> Value:
        if any(isinstance(f, E.Pick) for f in factors):
            return contract_picks(self, factors, out)  # a gather or a scatter-add (§10)
        factors = without_unit_powers(factors)
        if any(isinstance(f, E.Shift) for f in factors) and (
                lowered := contract_shifts(self, factors, out)) is not None:
            return lowered  # a window (im2col) or a scatter, never the dense mask (§11)
        if any(isinstance(f, Add) for f in factors) and (spread := distributed(self, factors, out)) is not None:
            return spread  # a product with a sum of scatters: one scatter per term (§10)
        if any(isinstance(f, E.MatFn) for f in factors):
            solved = solved_factors(self, factors, out)  # an inverse times b is a solve
            if solved is not None:
                return self.contract(solved, out)
        scalars: list[Value] = []
        operands: list[Value] = []
        masked = self.maskable([f for f in factors if isinstance(f, Expr)], out)
        for factor in factors:
            if isinstance(factor, Value):
                value = factor
            else:
                value = self.mask(factor) if factor is masked else self.emit(factor)
            (operands if value.labels else scalars).append(value)
        coefficient = " * ".join(v.code for v in scalars)
        if not operands:
            return self.temp(coefficient or "1.0", (), _uses(scalars)) if len(scalars) > 1 else scalars[0]
        operands = [self.reduce_private(k, operands, out) for k in range(len(operands))]
        if len(operands) > 1:
            shapes = tuple(tuple(self.sizes[i] for i in v.labels) for v in operands)
            symbols = {i: opt_einsum.get_symbol(k) for k, i in enumerate(dict.fromkeys(
                [i for v in operands for i in v.labels] + list(out)))}
            equation = ",".join("".join(symbols[i] for i in v.labels) for v in operands)
            equation += "->" + "".join(symbols[i] for i in out)
            path = _best_path(equation, shapes)
            for step in path:
                picked = [operands[k] for k in step]
                for k in sorted(step, reverse=True):
                    operands.pop(k)
                keep = set(out) | {i for v in operands for i in v.labels}
                while len(picked) > 1:
                    a, b = picked.pop(0), picked.pop(0)
                    last = not operands and not picked  # this product gives the result
                    picked.insert(0, self.pair(a, b, keep | {i for v in picked for i in v.labels},
                                               order=out if last else None))
                operands.append(picked[0])
        result = operands[0]
        if coefficient:
            if len(scalars) == 1 and scalars[0].code.isidentifier() and result.labels:
                # an array coefficient (lam w): offered in place too
                lam = scalars[0].code
                return self.elementwise(f"{lam} * {result.code}", result.labels, [result, scalars[0]],
                                        lambda out: f"xp.multiply({lam}, {result.code}, out={out})")
            if all(not v.code.isidentifier() for v in scalars):
                return self.scaled(coefficient, result)
            result = self.temp(f"{coefficient} * {result.code}", result.labels, _uses(scalars + [result]))
        return result

    def maskable(self, factors: list[Expr], out: tuple[str, ...]) -> Expr | None:
        """The one step(x) factor of a product that may be a bool mask: another factor is an
        array carrying all its indices (so every product with the mask is a float array, and
        nothing sums the mask alone), and it is the only step factor."""
        if not (self.fuse and self.backend.bool_masks):
            return None
        steps = [f for f in factors if isinstance(f, Call) and f.fn == "step" and f.free]
        if len(steps) != 1:
            return None
        (step,) = steps
        covered = any(f is not step and step.free <= f.free and any(isinstance(n, Tensor) for n in E.walk(f))
                      for f in factors)
        return step if covered else None

    def mask(self, e: Call) -> Value:
        """step(x) as the bool array x > 0, shared like any value (under its own key)."""
        key, mapping = _cse_key(e, self.sizes)
        key = ("mask", key)
        cached = self.recall(key, mapping)
        if cached is not None:
            return cached
        arg = self.emit(e.arg)
        name = self.fresh_name()
        self.lines.append(Line(f"{name} = {arg.code} > 0", name, _uses([arg])))
        self.masks.add(name)
        value = Value(name, arg.labels, True, True)
        self.remember(key, value, mapping)
        return value

    def reduce_private(self, k: int, operands: list[Value], out: tuple[str, ...]) -> Value:
        """Sum away the labels of operand ``k`` that no other operand and not the output needs.

        Operands are compared by position: the same value can be two factors (w_j w_j).
        """
        v = operands[k]
        others = {i for m, w in enumerate(operands) if m != k for i in w.labels} | set(out)
        private = tuple(a for a, i in enumerate(v.labels) if i not in others)
        if not private:
            return v
        kept = tuple(i for i in v.labels if i in others)
        return self.temp(self.sum_code(v, private), kept, _uses([v]), fresh=bool(kept))

    def sum_code(self, v: Value, axes: tuple[int, ...]) -> str:
        """``v`` summed over ``axes``.  A large matrix summed over one axis is a product
        with a vector of ones (BLAS reads it once, twice as fast as ``sum`` here):
        ``dLdb = 𝟏ᵀ dLdY``."""
        if self.fuse and self.backend.out_functions and len(v.labels) == 2 and len(axes) == 1:
            n = self.sizes[v.labels[axes[0]]]
            if n * self.sizes[v.labels[1 - axes[0]]] >= _BLAS_SUM_MIN:
                ones = self.op("ones", shape=self.size(v.labels[axes[0]]), like=v.code)
                return f"{ones} @ {v.code}" if axes[0] == 0 else f"{v.code} @ {ones}"
        return self.op("sum", x=v.code, axes=axes)

    def pair(self, a: Value, b: Value, keep: set[str], order: tuple[str, ...] | None = None) -> Value:
        if order:
            # tensordot gives a's free labels, then b's: swap the operands when that is
            # the wanted order (dLdZ @ V.T, not a transposed view of V @ dLdZ.T).
            a_first = [i for i in a.labels if i not in b.labels]
            b_first = [i for i in b.labels if i not in a.labels]
            if a_first and b_first and tuple(b_first + a_first) == tuple(order) != tuple(a_first + b_first):
                a, b = b, a
        shared = [i for i in a.labels if i in b.labels]
        contracted = [i for i in shared if i not in keep]
        if not contracted and (b.code, b.labels) < (a.code, a.labels):
            a, b = b, a  # a product commutes: one order, so that repeats are recognised
        # The same two arrays combined the same way (up to axis names) are one value:
        # (1 - H²) ⊙ dLdH feeds dLdX, dLdU, dLdW and dLdb.
        names: dict[str, str] = {}
        for i in a.labels + b.labels:
            names.setdefault(i, f"%{len(names)}")
        key = ("pair", a.code, tuple(names[i] for i in a.labels), b.code,
               tuple(names[i] for i in b.labels), tuple(sorted(names[i] for i in contracted)))
        cached = self.recall(key, names)
        if cached is not None:
            return cached
        value = self._pair(a, b, contracted)
        self.remember(key, value, names)
        return value

    def _pair(self, a: Value, b: Value, contracted: list[str]) -> Value:
        shared = [i for i in a.labels if i in b.labels]
        batch = [i for i in shared if i not in contracted]
        a_free = [i for i in a.labels if i not in b.labels]
        b_free = [i for i in b.labels if i not in a.labels]
        uses = _uses([a, b])
        if not contracted:  # a broadcast product
            labels = tuple(a.labels) + tuple(b_free)
            x, y = self.aligned(a, labels), self.aligned(b, labels)
            return self.elementwise(f"{x} * {y}", labels, [a, b],
                                    lambda out: f"xp.multiply({x}, {y}, out={out})")
        if not batch and len(contracted) == 1 and len(a.labels) <= 2 and len(b.labels) <= 2 and a_free + b_free:
            # A matrix (or matrix-vector) product: @, transposed views where needed, which
            # BLAS reads without a copy (tensordot would copy Xᵀ and cost more per call).
            (c,) = contracted
            x = a.code if a.labels[-1] == c else self.op("T", x=a.code)
            y = b.code if b.labels[0] == c else self.op("T", x=b.code)
            return self.temp(self.op("matmul", a=x, b=y), tuple(a_free + b_free), uses, fresh=True)
        if not batch:  # BLAS: tensordot
            pa = tuple(a.labels.index(i) for i in contracted)
            pb = tuple(b.labels.index(i) for i in contracted)
            code = self.op("tensordot", a=a.code, b=b.code, pa=pa, pb=pb)
            return self.temp(code, tuple(a_free + b_free), uses, fresh=bool(a_free + b_free))
        if not a_free and not b_free:
            # Σ_b A_bh B_bh: no matrix product is left, only a product (shared with other
            # uses of it) and a reduction.
            product = self.pair(a, b, set(a.labels))
            axes = tuple(product.labels.index(i) for i in contracted)
            labels = tuple(i for i in product.labels if i not in contracted)
            return self.temp(self.sum_code(product, axes), labels, _uses([product]), fresh=bool(labels))
        # Batched: (batch, a_free, contracted) @ (batch, contracted, b_free).
        a_t = self.aligned(Value(a.code, a.labels), tuple(batch + a_free + contracted))
        b_t = self.aligned(Value(b.code, b.labels), tuple(batch + contracted + b_free))
        nb, m = self.count_code(batch), self.count_code(a_free)
        k, n = self.count_code(contracted), self.count_code(b_free)
        left = self.op("reshape", x=a_t, shape=f"({nb}, {m}, {k})")
        right = self.op("reshape", x=b_t, shape=f"({nb}, {k}, {n})")
        shape = self.shape_code(batch + a_free + b_free)
        code = self.op("reshape", x=f"({left} @ {right})", shape=shape)
        return self.temp(code, tuple(batch + a_free + b_free), uses, fresh=True)

    # ---------------------------------------------------------------- output
    def function(self, name: str, inputs: list[str], outputs: list[str]) -> GeneratedCode:
        """The function: inputs read from ``arrays``, the sizes the code uses read from them
        (and checked to agree), the steps, the outputs returned."""
        body: list[str] = []
        # The names the steps read, in one pass over their text (not one per input).
        words = set(_WORD.findall("\n".join(line.text for line in self.lines if not line.text.startswith("#"))))
        by_size = self.size_vars.arrays_read() if self.size_vars is not None else set()
        # Inputs the code reads (one passed only for its shape, b of dLdb_h, is not read).
        read = [n for n in inputs if n in outputs or self.var(n) in words or n in by_size]
        sizes = self.size_vars.lines(self.var, read) if self.size_vars is not None else []
        strong = [self.var(n) for n in read if n not in self.weak and n not in self.integer]
        if self.weak & set(read) and not strong:
            strong = [self.var(n) for n in inputs if n not in self.weak and n not in self.integer][:1]
        for program_name in inputs:
            if program_name in read or self.var(program_name) in strong:
                body.append(f"{self.var(program_name)} = arrays[{program_name!r}]")
        body += sizes
        # Python numbers are weak: arrays of the first array input's dtype (and device).
        for program_name in read:
            if program_name in self.weak:
                var = self.var(program_name)
                like = strong[0] if strong else _NO_ARRAY_LIKE
                body.append(f"{var} = {self.op('asarray', x=var, like=like)}")
        keep = {self.var(o) for o in outputs} | {self.var(i) for i in inputs}
        names = [self.var(n) for n in inputs]
        lines = write_in_place(complete_uses(self.lines, names), keep)
        lines = resolve_stacks(lines, names, keep, self.fresh_name, self.masks)
        lines = release_dead(complete_uses(lines, names), keep)
        if self.debug:
            lines = debug_checks(lines, {line.view[0] for line in lines if line.view})
        body += [line.text for line in lines]
        body.append("return {" + ", ".join(f"{o!r}: {self.var(o)}" for o in outputs) + "}")
        source = f"def {name}(arrays, sizes=None):\n" + "\n".join("    " + line for line in body) + "\n"
        if any("_sizes_disagree(" in line or "_declared(" in line for line in sizes):
            source = SIZE_HELPERS.lstrip("\n") + "\n\n" + source
        if any("_gather(" in line or "_scatter_add(" in line or "_index_equal(" in line for line in body):
            source = GATHER_HELPERS[self.backend.name].lstrip("\n") + "\n\n" + source
        if any("_window(" in line or "_unwindow(" in line for line in body):
            source = CONV_HELPERS[self.backend.name].lstrip("\n") + "\n\n" + source
        return GeneratedCode(source, outputs, inputs)


# A name in generated code.
_WORD = re.compile(r"[^\W\d]\w*")

# Entries from which a one-axis sum of a matrix goes to BLAS (a product with ones).
_BLAS_SUM_MIN = 1 << 16

# What new arrays are like when no array was passed: float64, as evaluate computes then.
_NO_ARRAY_LIKE = "xp.asarray(0.0, dtype=xp.float64)"


@functools.lru_cache(maxsize=4096)
def _best_path(equation: str, shapes: tuple[tuple[int, ...], ...]) -> list:
    """The cheaper of opt_einsum's greedy and dynamic-programming paths for these sizes.

    ``auto`` alone can pick a worse order (for a,a,ab->b it builds the a×b product
    before reducing; an expert writes Xᵀ(y·s)).
    """
    best = None
    for method in ("greedy", "dp"):
        path, info = opt_einsum.contract_path(equation, *shapes, shapes=True, optimize=method)
        if best is None or info.opt_cost < best[1]:
            best = (path, info.opt_cost)
    return tuple(best[0])


def _relabeled(value: Value, mapping: dict[str, str]) -> Value:
    """``value`` with its labels renamed by ``mapping``."""
    return replace(value, labels=tuple(mapping[label] for label in value.labels))


def _uses(values: list[Value]) -> tuple[str, ...]:
    """The variables a line reads (temporaries and program arrays; not literals)."""
    return tuple(v.code for v in values if v.temp or v.code.isidentifier())


def _free_order(e: Expr) -> tuple[str, ...]:
    order: dict[str, None] = {}
    for node in E.walk(e):
        if isinstance(node, (Tensor, Delta, E.Shift)):
            for i in node.indices:
                if i in e.free:
                    order.setdefault(i, None)
        elif isinstance(node, E.Pick) and node.index in e.free:
            order.setdefault(node.index, None)
    return tuple(order)


def _cse_key(e: Expr, sizes: dict[str, int]) -> tuple[tuple, dict[str, str]]:
    """The common-subexpression key of ``e`` and the renaming it used: ``e`` with every
    index of a tensor, delta or sum renamed by first appearance, and the size of every
    index (an index only a size ``|n|`` names keeps its name: its size is part of the key).

    Equal keys mean equal values up to the names of their axes."""
    mapping: dict[str, str] = {}
    for node in E.walk(e):
        if isinstance(node, (Tensor, Delta, E.Shift)) or node.binds:
            for i in node.indices:
                mapping.setdefault(i, f"%{len(mapping)}")
        elif isinstance(node, E.Pick):
            mapping.setdefault(node.index, f"%{len(mapping)}")
    shape = E.rename_indices(e, mapping) if mapping else e
    return (shape, tuple(sorted((mapping.get(i, i), sizes.get(i)) for i in E.index_names(e)))), mapping


def _split_delta_terms(e: Expr, free: set[str]) -> tuple[list[Expr], list[Expr]]:
    """Terms without deltas, and terms that carry a delta on free indices only."""
    terms = e.terms if isinstance(e, Add) else (e,)
    dense, with_delta = [], []
    for term in terms:
        factors = factors_of(term)
        deltas = [f for f in factors if isinstance(f, Delta)]
        if deltas and all(set(d.indices) <= free for d in deltas) and not any(
                isinstance(n, E.MatFn) for n in E.walk(term)):  # (a diagonal view could merge inv's axes)
            with_delta.append(term)
        else:
            dense.append(term)
    return dense, with_delta


def statement_text(stmt: Statement) -> str:
    """The statement for its comment, cut at 100 characters.  A long sum (a loss over
    1000 time steps) is printed only as far as the comment shows it."""
    from ..printing.text import index_suffix

    head = f"{stmt.target}{index_suffix(stmt.indices)} = "
    terms = stmt.expr.terms if isinstance(stmt.expr, Add) else ()
    k = 4
    while k < len(terms):
        text = head + _comment_expr(Add(terms[:k]), stmt.indices)
        if len(text) > 100:
            return text[:97] + "..."
        k *= 4
    text = head + _comment_expr(stmt.expr, stmt.indices)
    return text if len(text) <= 100 else text[:97] + "..."


def _comment_expr(e: Expr, free: tuple[str, ...]) -> str:
    """``e`` in index notation, sums left implicit where the parser puts them back.  Which
    sums those are depends on the expression's shape, not on its tensors' names: it is
    found once per shape (the 1000 steps of an unrolled loop are a few shapes), and the
    statement is then printed in one pass."""
    from ..printing.text import TextRenderer

    names: dict[str, str] = {}
    nodes = 0
    for node in E.walk(e):
        nodes += 1
        if isinstance(node, Tensor):
            names.setdefault(node.name, f"T{len(names)}")
    if nodes > _COMMENT_PARSE_MAX:  # cut at 100 characters anyway: every sum written out
        return TextRenderer(frozenset()).render(e)[0]
    return TextRenderer(_hidden_sums(E.rename_tensors(e, names), tuple(free))).render(e)[0]


# Larger expressions are printed with every sum written out (Σ_n), without finding which
# sums the parser would restore (a parse per sum: quadratic in the expression's size).
_COMMENT_PARSE_MAX = 80


@functools.lru_cache(maxsize=4096)
def _hidden_sums(shape: Expr, free: tuple[str, ...]) -> frozenset:
    from ..printing.layout import hidden_sums
    from ..printing.text import TextRenderer

    return hidden_sums(shape, free, lambda expr, hidden: TextRenderer(hidden).render(expr)[0])


_ = Program
