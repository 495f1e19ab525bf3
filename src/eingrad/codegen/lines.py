"""The generated function's lines, and the passes over them once all are emitted:
buffers of dying temporaries reused (``out=``), and ``del`` after each last use."""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass, field, replace

__all__ = ["OUT", "Line", "StackedProduct", "complete_uses", "written", "write_in_place", "release_dead",
           "debug_checks"]

# Stands for the array a step writes into, in ``Line.out_to`` (never in generated names).
OUT = "⟨out⟩"


@dataclass
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

    def names(self) -> tuple[str, ...]:
        return (self.left or ()) + self.right

    def renamed(self, old: str, new: str) -> StackedProduct:
        def swap(names):
            return None if names is None else tuple(new if n == old else n for n in names)

        return replace(self, left=swap(self.left), right=swap(self.right))

    def code(self, left: str | None, right: str, blocks: int) -> str:
        """The product of ``blocks`` stacked blocks, given the code of the stacked operands."""
        if left is None:
            left = self.ops["ones"].format(shape=self.rows * blocks, like=self.right[0])
            return self.ops["matmul"].format(a=left, b=right)
        return self.ops["matmul"].format(a=self.ops["T"].format(x=left), b=right)

    def concat(self, names) -> str:
        return self.ops["concat"].format(args=", ".join(names))

    def fallback(self) -> str:
        """The product with both operands concatenated (correct wherever the blocks are)."""
        left = self.concat(self.left) if self.left else None
        return self.code(left, self.concat(self.right), len(self.right))


def _last_uses(lines: list[Line]) -> dict[str, int]:
    last_use: dict[str, int] = {}
    for k, line in enumerate(lines):
        for name in line.uses:
            last_use[name] = k
    return last_use


# A name in generated text: an identifier outside string literals (einsum specs, labels),
# not an attribute (``_t3.T``) and not a keyword argument's name (``out=``, ``axis=``).
_IDENTIFIER = re.compile(r"'[^']*'|\"[^\"]*\"|(?<![.\w])([^\W\d]\w*)\b(?!=(?!=))")


def complete_uses(lines: list[Line], inputs: list[str]) -> list[Line]:
    """Every array a line's text reads is among its ``uses``: the passes below reuse a
    buffer and release a name only after its last read, so a read the emitter did not
    record (a forward value in a diagonal update) is found in the text itself.  Names are
    the inputs and every name a line defines; a line's text is read once (linear)."""
    known = set(inputs) | {line.defines for line in lines if line.defines}
    for line in lines:
        if line.text.startswith("#") or line.text.startswith("del "):
            continue
        text = line.text
        if line.defines and text.startswith(line.defines + " = "):
            text = text[len(line.defines) + 3:]  # what is read: the right-hand side
        found = {m.group(1) for m in _IDENTIFIER.finditer(text)}
        found &= known
        missing = tuple(sorted(found.difference(line.uses)))
        if missing:
            line.uses = tuple(line.uses) + missing
    return lines


# In-place writes that are not ``out=`` steps: ``total += part``, ``_diagonal(T, …)[...] += v``.
_AUGMENTED = re.compile(r"([^\W\d]\w*) [-+*/]= ")
_DIAGONAL = re.compile(r"_diagonal\(([^\W\d]\w*), ")


def written(line: Line) -> str | None:
    """The name whose buffer ``line`` writes into, in place (not a fresh result): the
    operand of a step written into its buffer, the array a sum is accumulated into, the
    array a diagonal is written into, or the stacked buffer a step fills a row block of."""
    if line.shares:
        return line.shares
    if line.defines is None:
        match = _AUGMENTED.match(line.text) or _DIAGONAL.match(line.text)
        return match.group(1) if match else None
    if line.view and f"out={line.view[0]}[" in line.text:
        return line.view[0]  # a redirected step's result, written into its row block
    return None


Region = tuple[str, int | None, int | None]  # (buffer, first row, row after the last); None: all of it


def _overlap(a: Region, b: Region) -> bool:
    if a[0] != b[0]:
        return False
    if a[1] is None or b[1] is None:
        return True
    return a[1] < b[2] and b[1] < a[2]


def write_in_place(lines: list[Line], keep: set[str]) -> list[Line]:
    """Steps whose operand dies there write into that operand's buffer (``out=``):
    ``_t3 = xp.subtract(X, _t2, out=_t2)`` reuses the memory of ``_t2``.

    Only a buffer that belongs to one name (a fresh result, never aliased, not an input
    or a requested output) is reused, only at its last use, and only where no other live
    value shares its memory.  Which memory each value may share is a property of the
    lines: a fresh result has a buffer of its own (a row block of a stacked product's
    buffer: those rows of it); a result written into an operand lives in that operand's
    buffer; every other line (a transpose, a slice, a reshape, another name for an
    array, a reduction to a number) may share memory with every array it reads.  A value
    is live at a step that reads it, after it while a later step reads it, and to the
    end if it is returned (``keep``)."""
    last_use = _last_uses(lines)
    aliased = {name for line in lines if line.alias for name in (line.alias, line.defines)}
    protected = keep | aliased
    memory = _Memory(keep, last_use)
    region_of = memory.region_of

    owned: set[str] = set()
    for k, line in enumerate(lines):
        if line.inplace and line.defines:
            for operand, rhs in line.inplace.items():
                if (operand in owned and last_use.get(operand) == k and operand not in protected
                        and not memory.shared(operand, k)):
                    line.text = f"{line.defines} = {rhs}"
                    line.shares = operand
                    owned.discard(operand)
                    break
        if line.defines:
            (owned.add if line.fresh or line.shares else owned.discard)(line.defines)
            if line.shares:
                mine = region_of(line.shares)
            elif line.view:
                base, first, stop = line.view
                mine = frozenset((r[0], first, stop) if r[1] is None else (r[0], r[1] + first, r[1] + stop)
                                 for r in region_of(base))
            elif line.fresh:
                mine = frozenset({(line.defines, None, None)})
            else:
                mine = frozenset().union(*(region_of(u) for u in line.uses if u != line.defines))
            memory.add(line.defines, mine)
    return lines


class _Memory:
    """Which values may live in which buffer (regions), indexed for ``shared``: by buffer,
    then by row range, the ranges of a buffer sorted by first row (row blocks of a
    stacked buffer are found by bisection, not by a scan of every block)."""

    def __init__(self, keep: set[str], last_use: dict[str, int]) -> None:
        self.keep, self.last_use = keep, last_use
        self.regions: dict[str, frozenset[Region]] = {}
        self.holders: dict[str, dict[tuple, set[str]]] = {}  # buffer -> (first, stop) -> names
        self.starts: dict[str, list[tuple[int, int]]] = {}  # buffer -> its row ranges, sorted
        self.longest: dict[str, int] = {}  # buffer -> the most rows of one range

    def region_of(self, name: str) -> frozenset[Region]:
        found = self.regions.get(name)
        return frozenset({(name, None, None)}) if found is None else found  # an input: its own

    def add(self, name: str, regions: frozenset[Region]) -> None:
        self.regions[name] = regions
        for buffer, first, stop in regions:
            by_range = self.holders.setdefault(buffer, {})
            key = (first, stop)
            if key not in by_range:
                by_range[key] = set()
                if first is not None:
                    bisect.insort(self.starts.setdefault(buffer, []), key)
                    self.longest[buffer] = max(self.longest.get(buffer, 0), stop - first)
            by_range[key].add(name)

    def _ranges(self, buffer: str, first: int | None, stop: int | None):
        """The row ranges of ``buffer`` that may overlap [first, stop) (all for None)."""
        by_range = self.holders.get(buffer, {})
        if first is None:
            return list(by_range)
        starts = self.starts.get(buffer, [])
        lo = bisect.bisect_right(starts, (first - self.longest.get(buffer, 0), math.inf))
        hi = bisect.bisect_left(starts, (stop, -math.inf))
        return [(None, None)] * ((None, None) in by_range) + starts[lo:hi]

    def shared(self, operand: str, k: int) -> bool:
        """Another value that may share ``operand``'s memory is live at line ``k``: read
        there or later, or returned."""
        mine = self.region_of(operand)
        for buffer, first, stop in mine:
            by_range = self.holders.get(buffer, {})
            for key in self._ranges(buffer, first, stop):
                names = by_range[key]
                for name in list(names):
                    if name == operand:
                        continue
                    if name not in self.keep and self.last_use.get(name, -1) < k:
                        names.discard(name)  # dead for good: no later line reads it
                        continue
                    if any(_overlap(a, b) for a in mine for b in self.regions[name]):
                        return True
        return False


def release_dead(lines: list[Line], keep: set[str]) -> list[Line]:
    """Insert ``del`` after the last use of each temporary and each intermediate the caller
    did not ask for (a forward value the gradient has finished with), so peak memory stays low.
    The uses are complete (``complete_uses``): diagonal updates and accumulations included."""
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


def debug_checks(lines: list[Line], skip: set[str]) -> list[Line]:
    """Before every in-place write, a run-time check that the buffer written shares memory
    with no other value still bound (``_check_write``, a backend helper); ``skip``: names
    that are not values (stacked buffers, read only through their row blocks' names)."""
    out: list[Line] = []
    for line in lines:
        name = written(line)
        if name is not None:
            dest = name
            if line.view and line.shares is None and line.defines:
                dest = f"{line.view[0]}[{line.view[1]}:{line.view[2]}]"
            ignore = tuple(sorted({name} | skip))
            out.append(Line(f"_check_write({dest}, {name!r}, locals(), {ignore!r})", None, (name,)))
        out.append(line)
    return out
