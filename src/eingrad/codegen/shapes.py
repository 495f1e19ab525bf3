"""Index sizes in generated code: read from the arrays when the code runs, never baked in.

Every index of every statement gets its size from an axis of an input (``size_n =
X.shape[0]``) or from a size declared at call time (``size_k = _declared(sizes, 'k')``),
by the same rules ``sizes.infer_shapes`` applies (LANGUAGE.md §5): the indices of a
tensor take its axes, a target's axes take its indices, a delta ties its indices, a
gradient takes the shape of what it is the gradient of.  Those rules, followed without
numbers, split the input axes into *classes* that must have one size; the code reads
each class's size once, and checks at entry that every other axis of the class agrees
(``_sizes_disagree``, a ValueError in a module of its own, a SizeError in eingrad).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Mapping

from .. import expr as E
from ..expr import Delta, MatFn, Tensor
from ..program import Statement

__all__ = ["SizeVars", "HELPERS", "size_key"]

Node = tuple  # ("a", tensor, axis) | ("d", declared index) | ("i", statement, index)

# Defined in the generated module when its code checks sizes or reads declared ones.
HELPERS = '''
def _sizes_disagree(index, n, first, m, second):
    raise ValueError(f"index {index!r} has size {n} in {first} but size {m} in {second}: "
                     "the same index must have one size")

def _declared(sizes, index):
    if not sizes or index not in sizes:
        raise ValueError(f"the size of index {index!r} cannot be determined from the arrays: "
                         f"pass sizes={{{index!r}: n}}")
    return int(sizes[index])
'''


class SizeVars:
    """Which size variable of the generated code holds the size of each index, and the
    lines that read the variables and check the arrays against them."""

    def __init__(self, statements: list[tuple[object, Statement]], inputs: list[str], passed: Mapping[str, int],
                 declared: Iterable[str] = (), derivative=None) -> None:
        """``statements``: (key, statement) in program order; ``passed``: each input passed
        with its rank; ``derivative``: (key, Derivative, key of its output's statement)."""
        self.parent: dict[Node, Node] = {}
        self.size: dict[Node, int] = {}  # members of each class (union by size)
        self.shifts: list[tuple[object, E.Shift]] = []  # index arithmetic, by statement (§11)
        self.passed = {name: passed[name] for name in inputs if name in passed}
        declared = set(declared)
        self.declared = declared
        for key, stmt in statements:
            self._statement(key, stmt, declared)
        self.origins: dict[str, str] = {}
        if derivative is not None:
            self.origins = dict(derivative[1].origins)
            self._derivative(*derivative, declared)
        # Each class's representative: the first axis of a passed input, else a declared size.
        order = [("a", name, axis) for name, rank in self.passed.items() for axis in range(rank)]
        order += [("d", i) for i in sorted(declared)]
        self.source: dict[Node, Node] = {}
        self.members: dict[Node, list[Node]] = {}
        for node in order:
            root = self.find(node)
            self.source.setdefault(root, node)
            self.members.setdefault(root, []).append(node)
        # root -> its valid size's rules: the smallest of them, so that no shifted read passes
        # the end of its array (one rule per shift that sizes the index)
        self.formula: dict[Node, list[tuple[object, E.Shift, str]]] = {}
        self._valid_sizes()
        self.names: dict[Node, str] = {}  # class root -> variable, given on first use
        self.label: dict[Node, str] = {}  # class root -> an index name it is known by
        for key, stmt in statements:
            for i in stmt.indices:
                self.label.setdefault(self.find(("i", key, i)), i)
        for node in list(self.parent):
            if node[0] == "i":
                self.label.setdefault(self.find(node), node[2])
        self.taken: set[str] = set()
        self.used: list[Node] = []

    # ---------------------------------------------------------------- classes
    def find(self, node: Node) -> Node:
        parent = self.parent.setdefault(node, node)
        while parent != node:
            grand = self.parent.setdefault(parent, parent)
            self.parent[node] = grand
            node, parent = parent, grand
        return node

    def union(self, a: Node, b: Node) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            if self.size.get(ra, 1) < self.size.get(rb, 1):
                ra, rb = rb, ra
            self.parent[rb] = ra
            self.size[ra] = self.size.get(ra, 1) + self.size.get(rb, 1)

    def _statement(self, key, stmt: Statement, declared: set[str]) -> None:
        """The rules of ``sizes.infer_shapes`` for one statement, on classes."""
        def idx(i):
            return ("i", key, i)

        for node in E.walk(stmt.expr):
            if isinstance(node, Tensor):
                for axis, i in enumerate(node.indices):
                    self.union(idx(i), ("a", node.name, axis))
            elif isinstance(node, Delta):
                for i in node.indices[1:]:
                    self.union(idx(node.indices[0]), idx(i))
            elif isinstance(node, MatFn):  # a square matrix: rows and columns one size
                self.union(idx(node.axes[0]), idx(node.axes[1]))
            elif isinstance(node, E.Shift):
                self.shifts.append((key, node))
        indices = E.all_indices(stmt.expr) | set(stmt.indices)
        for i in indices & declared:
            self.union(idx(i), ("d", i))
        for i, name, axis in stmt.sizes_from:
            self.union(idx(i), ("a", name, axis))
        if stmt.like is not None:
            for axis, i in enumerate(stmt.indices):
                self.union(idx(i), ("a", stmt.like, axis))
        for axis, i in enumerate(stmt.indices):
            self.union(("a", stmt.target, axis), idx(i))

    def _derivative(self, key, d, output_key, declared: set[str]) -> None:
        """The rules of ``Derivative.index_sizes``: each index from the first of a tensor's
        axis, wrt's axis, the output statement's index, a declared size."""
        first: dict[str, Node] = {}
        for node in E.walk(d.expr):
            if isinstance(node, Tensor):
                for axis, i in enumerate(node.indices):
                    first.setdefault(i, ("a", node.name, axis))
        for i, (name, axis) in d.sources.items():
            first.setdefault(i, ("a", name, axis))
        for i in E.all_indices(d.expr) | set(d.indices):
            if i in first:
                continue
            if i not in d.origins and ("i", output_key, i) in self.parent:
                first[i] = ("i", output_key, i)
            elif d.origins.get(i, i) in declared:
                first[i] = ("d", d.origins.get(i, i))
        for i, node in first.items():
            self.union(("i", key, i), node)
        for node in E.walk(d.expr):
            if isinstance(node, MatFn):  # a square matrix: rows and columns one size
                self.union(("i", key, node.axes[0]), ("i", key, node.axes[1]))
            elif isinstance(node, E.Shift):
                self.shifts.append((key, node))

    def _known(self, key, index: str) -> bool:
        root = self.find(("i", key, index))
        return root in self.source or root in self.formula

    def _valid_sizes(self) -> None:
        """Classes sized only by index arithmetic: the "valid" size rule of ``sizes`` (LANGUAGE.md
        §11), computed in the code from the sizes it depends on (resolved in dependency order)."""
        changed = True
        while changed:
            changed = False
            found: dict[Node, list] = {}
            for key, shift in self.shifts:
                missing = [(a, i) for a, i in shift.terms if not self._known(key, i)]
                if len(missing) == 1 and missing[0][0] > 0 and self._known(key, shift.index):
                    found.setdefault(self.find(("i", key, missing[0][1])), []).append((key, shift, missing[0][1]))
            for root, rules in found.items():  # every shift sizing the index in this pass
                self.formula[root] = rules
                changed = True

    # ---------------------------------------------------------------- code
    def var(self, key, index: str) -> str | None:
        """The variable holding index ``index``'s size in statement ``key`` (None: the size
        comes from nothing passed, and the caller writes the number)."""
        return self._var(self.find(("i", key, index)))

    def axis_var(self, name: str, axis: int) -> str | None:
        return self._var(self.find(("a", name, axis)))

    def _var(self, root: Node) -> str | None:
        if root not in self.source and root not in self.formula:
            return None
        name = self.names.get(root)
        if name is None:
            source = self.source.get(root, ("f",))
            label = self.label.get(root) or (source[1] if source[0] == "d" else "")
            base = "size_" + unicodedata.normalize("NFKC", label) if label else "size"
            name = base
            k = 1
            while name in self.taken:
                k += 1
                name = f"{base}{k}"
            self.taken.add(name)
            self.names[root] = name
            self.used.append(root)
        return name

    def arrays_read(self) -> set[str]:
        """Inputs the size variables the code uses are read from."""
        self._close()
        return {self.source[root][1] for root in self.used if root in self.source and self.source[root][0] == "a"}

    def _close(self) -> None:
        """Give a variable to every size a used valid-size rule reads."""
        done: set[Node] = set()
        while any(root in self.formula and root not in done for root in self.used):
            for root in [r for r in self.used if r in self.formula and r not in done]:
                done.add(root)
                self._formula_code(root)

    def lines(self, var: Callable[[str], str], read: Iterable[str]) -> list[str]:
        """``size_n = X.shape[0]`` for each size the code uses, and a check that every axis
        of the arrays ``read`` that must have that size has it (also for sizes the code
        does not use otherwise: w_d must have X_nd's d)."""
        read = set(read)
        self._close()
        # in dependency order (the order the rules were found)
        formulas = {root: self._formula_code(root) for root in self.formula if root in self.names}
        sources = {root: self.source.get(root, ("f",)) for root in self.used}
        for root, members in self.members.items():
            axes = [node for node in members if node[0] == "a" and node[1] in read]
            if len(axes) > 1 and root not in sources:
                self._var(root)  # a size only checked: read from an array the code reads
                sources[root] = axes[0]
        out = []
        for root in self.used:
            name, source = self.names[root], sources[root]
            if source[0] == "a":
                out.append(f"{name} = {var(source[1])}.shape[{source[2]}]")
            elif source[0] == "d":
                out.append(f"{name} = _declared(sizes, {source[1]!r})")
        out += [f"{self.names[root]} = {code}" for root, code in formulas.items()]
        for root in self.used:
            name, source = self.names[root], sources[root]
            if root in self.formula:
                continue  # computed from sizes checked here; no passed axis has it (else it has a source)
            label, where = self.label.get(root, "?"), _where(source)
            for node in self.members[root]:
                if node == source:
                    continue
                if node[0] == "a" and node[1] in read:
                    got = f"{var(node[1])}.shape[{node[2]}]"
                    out.append(f"if {got} != {name}: _sizes_disagree({label!r}, {name}, {where!r}, {got}, "
                               f"{_where(node)!r})")
                elif node[0] == "d":
                    got = f"sizes[{node[1]!r}]"
                    out.append(f"if sizes and {node[1]!r} in sizes and {got} != {name}: _sizes_disagree("
                               f"{label!r}, {name}, {where!r}, {got}, {_where(node)!r})")
        return out

    def _formula_code(self, root: Node) -> str:
        """``max(0, (size_j - 1 - c - b·(size_k - 1)) // a + 1)``: the valid size of ``root``'s index."""
        codes = []
        for key, shift, i in self.formula[root]:

            def size(name: str, key=key) -> str:
                return self._var(self.find(("i", key, name)))  # type: ignore[return-value]

            reach = "".join(f" - {b} * ({size(k)} - 1)" for b, k in shift.terms if k != i and b > 0)
            a = next(a for a, k in shift.terms if k == i)
            codes.append(f"max(0, ({size(shift.index)} - 1 - ({shift.offset}){reach}) // {a} + 1)")
        codes = list(dict.fromkeys(codes))
        return codes[0] if len(codes) == 1 else "min(" + ", ".join(codes) + ")"

    def values(self, shapes: Mapping[str, tuple[int, ...]], declared: Mapping[str, int]) -> dict[Node, int]:
        """Each class's size at these shapes (by its representative)."""
        out = {}
        for root, source in self.source.items():
            if source[0] == "a" and source[1] in shapes:
                out[root] = shapes[source[1]][source[2]]
            elif source[0] == "d" and source[1] in declared:
                out[root] = declared[source[1]]
        for root, rules in self.formula.items():  # in dependency order
            sizes = []
            for key, shift, i in rules:
                known = {k: out.get(self.find(("i", key, k))) for k in shift.indices if k != i}
                if None in known.values():
                    continue
                reach = shift.offset + sum(b * (known[k] - 1) for b, k in shift.terms if k != i and b > 0)
                a = next(a for a, k in shift.terms if k == i)
                sizes.append(max(0, (known[shift.index] - 1 - reach) // a + 1))
            if sizes:
                out[root] = min(sizes)
        return out

    def distinct(self, shapes: Mapping[str, tuple[int, ...]], declared: Mapping[str, int],
                 default: int = 64) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
        """Shapes and declared sizes like these (``default`` where none is given) in which
        sizes of different classes differ: code generated for them decides nothing on a
        coincidence of sizes, and is right at every size."""
        given = self.values(shapes, declared)
        used: set[int] = set()
        value: dict[Node, int] = {}
        # The sizes index arithmetic reads keep their values: a valid size computed from
        # them may be tied to an array's axis by a later statement (a pooled map's size and
        # the next layer's weights), which other values would contradict.
        shifted = {self.find(("i", key, i)) for key, shift in self.shifts for i in shift.indices}
        for root in self.source:
            if root in shifted and root in given:
                value[root] = given[root]
                used.add(given[root])
        for root in self.source:
            if root in value:
                continue
            n = given.get(root, default)
            while n in used:
                n += 1
            used.add(n)
            value[root] = n
        self._fit_shifts(value, set(given), used)
        out_shapes = {name: tuple(value[self.find(("a", name, axis))] for axis in range(rank))
                      for name, rank in self.passed.items()}
        out_declared = {name: value[self.find(("d", name))] for name in self.declared}
        return out_shapes, out_declared

    def _fit_shifts(self, value: dict[Node, int], given: set[Node], used: set[int]) -> None:
        """Sizes chosen (not given) for an array read with index arithmetic whose position's
        indices are all sized by arrays too (``Y[n,o,i] = X[n, c, i+k] K[o,c,k]`` with
        ``G[n,o,i]`` beside ``Y``): the array's axis is made exactly as long as the valid
        size rule needs, |j| = 1 + c + Σ a·(|t| − 1), so that the rule gives each index the
        size chosen for it (sizes picked apart independently contradict it)."""
        for _ in range(len(self.shifts) + 1):  # a chain (conv, then pool) settles in order
            changed = False
            for key, shift in self.shifts:
                j = self.find(("i", key, shift.index))
                roots = [self.find(("i", key, t)) for _, t in shift.terms]
                if j in given or j not in value or any(r not in value for r in roots) \
                        or any(a <= 0 for a, _ in shift.terms) or not shift.terms:
                    continue
                n = 1 + shift.offset + sum(a * (value[r] - 1) for (a, _), r in zip(shift.terms, roots, strict=True))
                if n > 0 and n != value[j]:
                    used.discard(value[j])
                    value[j] = n
                    used.add(n)
                    changed = True
            if not changed:
                return

    def undetermined(self) -> set[str]:
        """Index names (as they must be declared) whose size no passed array gives."""
        out = set()
        for node in list(self.parent):
            if node[0] == "i" and self.find(node) not in self.source and self.find(node) not in self.formula:
                out.add(self.origins.get(node[2], node[2]) if node[1] == "extra" else node[2])
        return out


def _where(node: Node) -> str:
    return f"{node[1]} (axis {node[2]})" if node[0] == "a" else "sizes"


def size_class(n: int) -> int:
    """The plan bucket of one size: 0 for 1 (and -1 for 0), then ranges of a factor of 8
    that end at a power of two: 2–8, 9–64, 65–512, 513–4096, …  A batch of 64 and the
    last, partial batch of an epoch (40) share one; 100 is another."""
    return -1 if n <= 0 else (int(n - 1).bit_length() + 2) // 3


def size_key(values: list[int]) -> tuple:
    """The plan bucket of a list of sizes: each size's class (``size_class``).  The code is
    generated for sizes in which different indices have different sizes, and reads the
    sizes from the arrays: it is right for every list of sizes (that agree), and planned
    (contraction orders) for sizes of these classes."""
    return tuple(size_class(n) for n in values)
