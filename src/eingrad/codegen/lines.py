"""The generated function's lines, and the passes over them once all are emitted:
buffers of dying temporaries reused (``out=``), and ``del`` after each last use."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Line", "write_in_place", "release_dead"]


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
    for k, line in enumerate(lines):
        if line.inplace and line.defines:
            for operand, rhs in line.inplace.items():
                if operand in owned and last_use.get(operand) == k and operand not in keep | aliased:
                    line.text = f"{line.defines} = {rhs}"
                    owned.discard(operand)
                    break
        if line.defines:
            (owned.add if line.fresh else owned.discard)(line.defines)
    return lines


def release_dead(lines: list[Line], keep: set[str]) -> list[Line]:
    """Insert ``del`` after the last use of each temporary and each intermediate the caller
    did not ask for (a forward value the gradient has finished with), so peak memory stays low."""
    last_use = _last_uses(lines)
    defined = {line.defines for line in lines if line.defines}
    out: list[Line] = []
    for k, line in enumerate(lines):
        out.append(line)
        dead = [n for n, last in last_use.items() if last == k and n in defined and n not in keep]
        if dead:
            out.append(Line("del " + ", ".join(sorted(dead))))
    return out
