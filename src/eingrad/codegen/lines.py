"""The generated function's lines, and the passes over them once all are emitted:
buffers of dying temporaries reused (``out=``), and ``del`` after each last use."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

__all__ = ["OUT", "Line", "StackedProduct", "row_offset", "write_in_place", "release_dead"]

# Stands for the array a step writes into, in ``Line.out_to`` (never in generated names).
OUT = "⟨out⟩"


@dataclass(eq=False)  # compared by identity: finding a line in a long list is not a field-by-field scan
class Line:
    """One line of generated code and what it defines and reads."""

    text: str
    defines: str | None = None
    uses: tuple[str, ...] = ()
    fresh: bool = False  # ``defines`` is a new array no other name refers to
    # Operand -> the same step written into that operand's buffer (used when it dies here).
    inplace: dict[str, str] = field(default_factory=dict)
    alias: str | None = None  # ``defines`` is another name for this array
    # The step written into any given array, OUT standing for it (``xp.tanh(_t3, out=OUT)``):
    # an elementwise step that can fill a row block of a stacked buffer.
    out_to: str | None = None
    view: tuple[str, int, int] | None = None  # ``defines`` is rows [start, stop) of that buffer
    shares: str | None = None  # written in place: ``defines`` lives in this operand's buffer
    stacked: StackedProduct | None = None  # a product of row-stacked operands, resolved later


@dataclass
class StackedProduct:
    """``concatenate(left).T @ concatenate(right)``: Σ_k left_kᵀ right_k over row blocks,
    or ``𝟏ᵀ concatenate(right)`` (``left`` is None).  Which operands are already row blocks
    of one buffer is known only once buffers are reused (see ``buffers.resolve_stacks``)."""

    ops: dict[str, str]  # the backend's structural operations
    left: tuple[str, ...] | None
    right: tuple[str, ...]
    rows: int  # rows of every block
    left_cols: int
    right_cols: int
    # The same sizes in code (``size_n``: read from the arrays when the code runs).
    rows_code: str = ""
    left_cols_code: str = ""
    right_cols_code: str = ""

    def names(self) -> tuple[str, ...]:
        return (self.left or ()) + self.right

    def renamed(self, old: str, new: str) -> StackedProduct:
        def swap(names):
            return None if names is None else tuple(new if n == old else n for n in names)

        return replace(self, left=swap(self.left), right=swap(self.right))

    def code(self, left: str | None, right: str, blocks: int) -> str:
        """The product of ``blocks`` stacked blocks, given the code of the stacked operands."""
        if left is None:
            left = self.ops["ones"].format(shape=row_offset(blocks, self.rows_code or str(self.rows)),
                                           like=self.right[0])
            return self.ops["matmul"].format(a=left, b=right)
        return self.ops["matmul"].format(a=self.ops["T"].format(x=left), b=right)

    def concat(self, names) -> str:
        return self.ops["concat"].format(args=", ".join(names))

    def fallback(self) -> str:
        """The product with both operands concatenated (correct wherever the blocks are)."""
        left = self.concat(self.left) if self.left else None
        return self.code(left, self.concat(self.right), len(self.right))


def row_offset(blocks: int, rows: str) -> str:
    """The first row of block ``blocks`` of a buffer of ``rows``-row blocks, in code."""
    return "0" if blocks == 0 else rows if blocks == 1 else f"{blocks} * {rows}"


def _last_uses(lines: list[Line]) -> dict[str, int]:
    last_use: dict[str, int] = {}
    for k, line in enumerate(lines):
        for name in line.uses:
            last_use[name] = k
    return last_use


def write_in_place(lines: list[Line], keep: set[str]) -> list[Line]:
    """Steps whose operand dies there write into that operand's buffer (``out=``):
    ``_t3 = xp.subtract(X, _t2, out=_t2)`` reuses the memory of ``_t2``.

    Only a buffer that belongs to one name (a fresh result, never aliased, not an input
    or a requested output) is reused, and only at its last use."""
    last_use = _last_uses(lines)
    aliased = {name for line in lines if line.alias for name in (line.alias, line.defines)}
    owned: set[str] = set()
    blocked = keep | aliased
    for k, line in enumerate(lines):
        if line.inplace and line.defines:
            for operand, rhs in line.inplace.items():
                if operand in owned and last_use.get(operand) == k and operand not in blocked:
                    line.text = f"{line.defines} = {rhs}"
                    line.shares = operand
                    owned.discard(operand)
                    break
        if line.defines:
            (owned.add if line.fresh else owned.discard)(line.defines)
    return lines


def release_dead(lines: list[Line], keep: set[str]) -> list[Line]:
    """Insert ``del`` after the last use of each temporary and each intermediate the caller
    did not ask for (a forward value the gradient has finished with), so peak memory stays low."""
    defined = {line.defines for line in lines if line.defines}
    dying: dict[int, list[str]] = {}
    for name, last in _last_uses(lines).items():
        if name in defined and name not in keep:
            dying.setdefault(last, []).append(name)
    out: list[Line] = []
    for k, line in enumerate(lines):
        out.append(line)
        if k in dying:
            out.append(Line("del " + ", ".join(sorted(dying[k]))))
    return out
