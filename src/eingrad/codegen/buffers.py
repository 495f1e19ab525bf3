"""Which buffer each array of the generated code lives in, once buffers are reused, and
the stacked products that this decides: ``Σ_t H_tᵀ dA_t`` is ``H[0:1568].T @ dA[32:1600]``
when the ``H_t`` are consecutive row blocks of one buffer (the forward's stacked product
they were computed into) and the ``dA_t`` are written into row blocks of one, as the
closed form an expert writes for an RNN keeps every step in one array.

Runs after ``write_in_place`` (which decides what shares a buffer) and before
``release_dead`` (which must see the buffers the stacked products read).
"""

from __future__ import annotations

from collections.abc import Callable

from .lines import OUT, Line, StackedProduct, row_offset

__all__ = ["resolve_stacks"]

Place = tuple[str, int, int]  # (buffer, first row, row after the last)


def resolve_stacks(lines: list[Line], inputs: list[str], keep: set[str], fresh: Callable[[], str],
                   masks: set[str] = frozenset()) -> list[Line]:
    """Write each stacked product's operands as views of one buffer where they are
    consecutive row blocks of it, fill row blocks of a new buffer where every operand is
    an elementwise step's result the code may redirect, and concatenate otherwise (a
    few blocks at a time: a copy of all of them would hold as much memory again)."""
    lines = list(lines)
    for line in [line for line in lines if line.stacked]:
        _resolve(line, lines, inputs, keep, fresh, masks)
    return lines


Side = tuple[str, int] | list[str] | None  # (buffer, first row), names to concatenate, or none


def _resolve(line: Line, lines: list[Line], inputs: list[str], keep: set[str], fresh: Callable[[], str],
             masks: set[str]) -> None:
    product = line.stacked
    place = _places(lines)
    pairs = _ordered(product, lines, inputs, place)
    sides: list[Side] = []
    for side, cols in ((0, product.left_cols), (1, product.right_cols)):
        names = [p[side] for p in pairs]
        if names[0] is None:
            sides.append(None)
            continue
        spot = _view(names, place, product.rows)
        if spot is None and _redirectable(names, lines, keep, lines.index(line)):
            base = fresh()
            cols_code = (product.left_cols_code, product.right_cols_code)[side] or str(cols)
            _redirect(lines, names, base, product.rows, cols, product.ops, masks,
                      (product.rows_code or str(product.rows), cols_code))
            place = _places(lines)
            spot = (base, 0, len(names) * product.rows)
        if spot is None:
            sides.append(names)
        else:
            line.uses += (spot[0],)
            sides.append(spot[:2])
    extent = _extents(lines)
    blocks = len(pairs)
    chunk = -(-blocks // MAX_CHUNKS) if any(isinstance(s, list) for s in sides) else blocks
    steps = []
    for first in range(0, blocks, chunk):
        last = min(first + chunk, blocks)
        left, right = (_operand(s, first, last, product, extent) for s in sides)
        steps.append(product.code(left, right, last - first))
    line.text = f"{line.defines} = {steps[0]}"
    at = lines.index(line)
    uses = line.uses + (line.defines,)
    lines[at + 1:at + 1] = [Line(f"{line.defines} += {step}", None, uses) for step in steps[1:]]


def _operand(side: Side, first: int, last: int, product: StackedProduct, extent: dict[str, int]) -> str | None:
    """Blocks ``first`` to ``last`` of a stacked operand."""
    if side is None:
        return None
    if isinstance(side, list):
        names = side[first:last]
        return names[0] if len(names) == 1 else product.concat(names)
    base, row = side
    a, b = row + first * product.rows, row + last * product.rows
    if a == 0 and b == extent.get(base):
        return base
    rows = product.rows_code or str(product.rows)  # every block of the buffer has this many rows
    return f"{base}[{row_offset(a // product.rows, rows)}:{row_offset(b // product.rows, rows)}]"


# Operands that must be copied (concatenated) are copied in at most this many pieces.
MAX_CHUNKS = 4


def _ordered(product: StackedProduct, lines: list[Line], inputs: list[str],
             place: dict[str, Place]) -> list[tuple[str | None, str]]:
    """The (left, right) blocks in the order to stack them.  Any order gives the sum, the
    same for both operands: that of one operand's blocks in a buffer; else the order the
    left operands are made in (inputs first, as they are read), which later products follow."""
    pairs = list(zip(product.left or (None,) * len(product.right), product.right, strict=True))
    made = {other.defines: (1, k) for k, other in enumerate(lines) if other.defines}
    made.update({name: (0, k) for k, name in enumerate(inputs)})
    pairs.sort(key=lambda p: made.get(p[0] or p[1], (2, 0)))
    for side in (0, 1):
        names = [p[side] for p in pairs]
        if None not in names and all(place.get(n) for n in names) and len({place[n][0] for n in names}) == 1:
            pairs.sort(key=lambda p, side=side: place[p[side]][1])
            break
    return pairs


def _extents(lines: list[Line]) -> dict[str, int]:
    """Rows of each stacked buffer (its blocks cover it)."""
    extent: dict[str, int] = {}
    for line in lines:
        if line.view:
            extent[line.view[0]] = max(extent.get(line.view[0], 0), line.view[2])
    return extent


def _places(lines: list[Line]) -> dict[str, Place]:
    """Every array that is a row block of a stacked buffer, after buffers are reused."""
    place: dict[str, Place] = {}
    for line in lines:
        if not line.defines:
            continue
        if line.view:
            place[line.defines] = line.view
        elif line.shares and line.shares in place:
            place[line.defines] = place[line.shares]
        elif line.alias and line.alias in place:
            place[line.defines] = place[line.alias]
        else:
            place.pop(line.defines, None)
    return place


def _view(names: list[str | None], place: dict[str, Place], rows: int) -> Place | None:
    """(buffer, first row, last row) when the arrays are consecutive row blocks of one buffer."""
    spots = [place.get(n) for n in names]
    if None in spots or len({s[0] for s in spots}) != 1:
        return None
    for before, after in zip(spots, spots[1:], strict=False):
        if after[1] != before[2]:
            return None
    if any(s[2] - s[1] != rows for s in spots):
        return None
    return spots[0][0], spots[0][1], spots[-1][2]


def _redirectable(names: list[str], lines: list[Line], keep: set[str], at: int) -> bool:
    """Each array is a distinct elementwise result defined before line ``at``, not a
    requested output, not another name's array and not yet in a stacked buffer."""
    if len(set(names)) != len(names):
        return False
    aliased = {n for line in lines if line.alias for n in (line.alias, line.defines)}
    wanted = set(names)
    defining: dict[str, list[int]] = {}
    for k, line in enumerate(lines):
        if line.defines in wanted:
            defining.setdefault(line.defines, []).append(k)
    for name in names:
        if name in keep or name in aliased:
            return False
        where = defining.get(name, [])
        if len(where) != 1 or where[0] > at:
            return False
        line = lines[where[0]]
        if line.out_to is None or line.view is not None:  # not a step, or already in a stack
            return False
    return True


def _redirect(lines: list[Line], names: list[str], base: str, rows: int, cols: int, ops: dict[str, str],
              masks: set[str], codes: tuple[str, str] | None = None) -> None:
    """A buffer for every block, made before the first is computed; each step writes
    its result into its block (``out=base[a:b]``).  Its dtype is that of an operand of the
    first step (not a bool mask: every array input has the one float dtype of the result)."""
    wanted = set(names)
    where = {line.defines: k for k, line in enumerate(lines) if line.defines in wanted}
    first = min(where.values())
    like = next((u for u in lines[first].uses if u not in masks), lines[first].uses[0])
    rows_code, cols_code = codes or (str(rows), str(cols))
    shape = f"({row_offset(len(names), rows_code)}, {cols_code})"
    for k, name in enumerate(names):
        line = lines[where[name]]
        block = f"{base}[{row_offset(k, rows_code)}:{row_offset(k + 1, rows_code)}]"
        line.text = f"{name} = {line.out_to.replace(OUT, block)}"
        line.shares = None
        line.fresh = False
        line.view = (base, k * rows, (k + 1) * rows)
    lines.insert(first, Line(f"{base} = {ops['empty'].format(shape=shape, like=like)}", base, (like,)))
