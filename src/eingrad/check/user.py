"""Calling the user's function: arguments by parameter name, exceptions caught, results read."""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["arguments", "call_user", "as_gradient", "unpack", "describe_type"]


def arguments(fn: Callable, available: dict[str, Any], first: list[str], spare: str | None):
    """Positional and keyword arguments for ``fn``, chosen by its parameter names.

    A parameter gets the array of its name; ``**kwargs`` gets the names in
    ``first``; a single unknown parameter gets ``spare`` (the upstream gradient,
    whatever the user called it).  Returns (args, kwargs, note, problem).
    """
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return [], {k: available[k] for k in first}, None, None
    args: list = []
    kwargs: dict[str, Any] = {}
    unknown = []

    def give(p: inspect.Parameter, value: Any) -> None:
        if p.kind is p.POSITIONAL_ONLY:
            args.append(value)
        else:
            kwargs[p.name] = value

    for p in params:
        if p.kind is p.VAR_KEYWORD:
            kwargs.update({k: available[k] for k in first if k not in kwargs})
        elif p.kind is p.VAR_POSITIONAL:
            continue
        elif p.name in available:
            give(p, available[p.name])
        elif p.default is p.empty:
            unknown.append(p)
    note = None
    wanted = {p.name for p in params}
    if len(unknown) == 1 and spare is not None and spare not in wanted:
        p = unknown.pop()
        give(p, available[spare])
        note = f"your function's parameter {p.name!r} was given the upstream gradient {spare}"
    if unknown:
        names = ", ".join(repr(p.name) for p in unknown)
        forward = [k for k in available if k not in first]
        problem = (
            f"your function takes {names}, which {'is not a name' if len(unknown) == 1 else 'are not names'} it can "
            f"be given: name its parameters after {', '.join(first)}"
            + (f" (or a forward value: {', '.join(forward)})" if forward else "")
        )
        return args, kwargs, note, problem
    return args, kwargs, note, None


def call_user(fn: Callable, args: list, kwargs: dict) -> tuple[Any, str | None]:
    """Run the user's function; an exception it raises becomes a sentence, with where it happened."""
    try:
        return fn(*args, **kwargs), None
    except Exception as err:  # noqa: BLE001 - the user's code: reported, not raised
        frames = traceback.extract_tb(err.__traceback__)[1:]
        where = ""
        if frames:
            last = frames[-1]
            where = (
                f" (line {last.lineno} of {last.name}" + (f": {last.line.strip()}" if last.line else "") + ")"
            )
        return None, f"your function raised {type(err).__name__}: {err}{where}"


def describe_type(value: object) -> str:
    if value is None:
        return "None"
    if isinstance(value, np.ndarray):
        return f"one array of shape {value.shape}"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def as_gradient(value: object) -> tuple[np.ndarray | None, str | None]:
    """The user's value as a float64 array, or why it is not one."""
    if isinstance(value, (bool, np.bool_)):
        return None, "is a bool, not an array of numbers"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return np.asarray(value, dtype=np.float64), None
    if value is None:
        return None, "is None: did you forget to return it?"
    if isinstance(value, (list, tuple)):
        return (
            None,
            f"is {describe_type(value)}, not an array: wrap it in np.array(...) or compute it with numpy",
        )
    if not isinstance(value, np.ndarray) and not hasattr(value, "__array__"):
        return None, f"is {describe_type(value)}, not a numpy array"
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":
        return None, f"is an array of {array.dtype}, not of real numbers"
    return array.astype(np.float64), None


def unpack(
    result: object, wrt: list[str], names: list[str]
) -> tuple[dict[str, object], list[str], str | None]:
    """Split what the user returned into one value per wrt: (values, notes, problem)."""
    how = (
        f"return a dict {{{', '.join(repr(w) + ': ...' for w in wrt)}}} or a tuple in the order "
        f"{', '.join(wrt)}"
    )
    if isinstance(result, Mapping):
        values, notes, used = {}, [], set()
        for w, name in zip(wrt, names, strict=True):
            for key in (w, name):
                if key in result:
                    values[w] = result[key]
                    used.add(key)
                    break
        extra = [k for k in result if k not in used]
        if extra:
            notes.append(
                f"ignored the entries {', '.join(map(repr, extra))} of the returned dict "
                f"(the keys it can have are {', '.join(repr(k) for pair in zip(wrt, names, strict=True) for k in pair)})"
            )
        return values, notes, None
    if len(wrt) == 1 and not isinstance(result, (list, tuple)):
        return {wrt[0]: result}, [], None
    if isinstance(result, tuple) or (isinstance(result, list) and len(wrt) > 1):
        if len(result) != len(wrt):
            return (
                {},
                [],
                (
                    f"your function returned {len(result)} values for {len(wrt)} gradient"
                    f"{'s' if len(wrt) > 1 else ''} ({', '.join(names)}): {how}"
                ),
            )
        return dict(zip(wrt, result, strict=True)), [], None
    if len(wrt) > 1:
        return {}, [], f"your function returned {describe_type(result)} for {len(wrt)} gradients: {how}"
    return {wrt[0]: result}, [], None
