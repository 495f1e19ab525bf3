"""``eg.compile``: a callable per program, generated and cached per shape signature."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

from .. import expr as E
from ..backends import get_backend
from ..diff import Derivative
from ..errors import EingradError, MissingInputError, PrecisionWarning, TooLargeError, user_stacklevel
from ..evaluate import _is_python_number
from ..program import Program, Statement
from ..sizes import _declared_sizes, infer_shapes
from .emit import Generator, check_names, statement_text
from .linalg import formed_inverses
from .stacks import find_stacks

__all__ = ["CompiledFunction", "CompiledCallError", "UnsafeWriteError", "compile_program"]


class CompiledCallError(EingradError, RuntimeError):
    """The array library refused a step of the generated code (arrays of two dtypes or
    on two devices, for instance); says which statement the step comes from."""


class UnsafeWriteError(CompiledCallError):
    """``compile(..., debug=True)``: a step of the generated code was about to write into
    a buffer whose memory a live value shares (a view, a returned array, a value read
    later).  A bug in the code generator, caught before it gave a wrong result."""


def _unsafe_write(err: BaseException) -> tuple[str, str] | None:
    """(buffer, live value) of the ``_UnsafeWrite`` a debug check of generated code raised
    (a class the generated source defines, so that the source shown runs on its own)."""
    if type(err).__name__ == "_UnsafeWrite" and len(err.args) == 2:
        return err.args
    return None


# ``EINGRAD_COMPILE_DEBUG=1``: every compiled function is built in debug mode.
DEBUG_ENV = "EINGRAD_COMPILE_DEBUG"


def _debug_default() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


class CompiledFunction:
    """Call it like ``eg.evaluate``: ``fn(**arrays)`` gives ``{target: array}`` for a
    program, or one array for a derivative.  ``fn.source`` is the generated code
    for the last shapes it was called with (or for nominal sizes before any call).

    ``debug``: before every in-place write the generated code checks that the buffer
    written shares memory with no other live value, raising :class:`UnsafeWriteError`
    (numpy, cupy and torch; the other backends write nothing in place).  Off by default;
    on for every compiled function when the environment variable ``EINGRAD_COMPILE_DEBUG``
    is set (to anything but ``0``).
    """

    def __init__(
        self, obj: Program | Derivative, backend: str = "numpy", outputs: list[str] | None = None,
        debug: bool | None = None,
    ) -> None:
        self.backend = get_backend(backend)
        self.debug = _debug_default() if debug is None else bool(debug)
        self.backend.load()  # a missing package is reported now, naming the extra to install
        self.obj = obj
        self._module = None
        self._cache: dict[tuple, tuple[Any, str]] = {}
        self._fast: dict[tuple, tuple[Any, str]] = {}  # float ndarrays only, by (name, shape, dtype)
        self._last_source: str | None = None
        self._warned_x64 = False
        if isinstance(obj, Derivative):
            name = _fresh_target_name(obj)
            stmt = Statement(name, obj.indices, obj.expr)
            self.program = obj.program.needed_for([obj.output])
            self.extra = stmt
            self.outputs = [name]
        else:
            self.program = obj
            self.extra = None
            self.outputs = list(obj.targets)
            if outputs is not None:
                # Only what the requested targets need is computed (a gradient program
                # asked for dLdW alone does not evaluate the forward Y = X W + b).
                # As plain strings: a numpy string names a target too, and is written into code.
                self.outputs = list(dict.fromkeys(str(o) if isinstance(o, str) else o
                                                  for o in ([outputs] if isinstance(outputs, str) else outputs)))
                # Unknown names are reported now; inputs only other targets read are not needed.
                self.program = obj.needed_for(self.outputs)
                # A gradient of an intermediate whose right-hand side fixes no size (dLds3_nh = v_h)
                # has that intermediate's shape: the statements that size it are kept for shape
                # inference (code is emitted only for what the outputs read).
                while shapers := [name for stmt in self.program.statements
                                  for name in ([stmt.like] if stmt.like else []) + [t for _, t, _ in stmt.sizes_from]
                                  if obj.is_target(name) and not self.program.is_target(name)]:
                    self.program = obj.needed_for(self.program.targets + shapers)
        # What the generated code reads: the program's inputs, and wrt where the output does
        # not read it (a zero derivative takes wrt's shape and dtype).
        self.inputs = list(self.program.inputs)
        if self.extra is not None and obj.wrt not in self.inputs:
            self.inputs.append(obj.wrt)
        whole = obj.program if self.extra is not None else obj
        # A gradient statement takes the shape of the tensor it is the gradient of (dLdb_h
        # has b's shape): asked for alone, it may read neither b nor anything sized like it.
        for stmt in self.program.statements:
            for name in ([stmt.like] if stmt.like else []) + [t for _, t, _ in stmt.sizes_from]:
                if name in whole.inputs and name not in self.inputs:
                    self.inputs.append(name)
        self._takes = set(whole.inputs) | set(whole.unread) | set(self.inputs)
        # Before any code is generated: a bad name raises here, and nothing runs.
        extra = (self.extra,) if self.extra is not None else ()
        wrt = (obj.wrt,) if isinstance(obj, Derivative) else ()
        check_names(self.program.statements + extra, self.backend, wrt)

    # ---------------------------------------------------------------- calling
    def __call__(
        self,
        arrays: Mapping[str, Any] | None = None,
        /,
        *,
        sizes: Mapping[str, int] | None = None,
        **named: Any,
    ):
        """``sizes`` declares index sizes no array fixes (indices only in deltas), as for
        :func:`eingrad.evaluate`; pass arrays as one mapping for an input named ``sizes``."""
        merged = dict(arrays or {})
        merged.update(named)
        if len(self.inputs) < len(self._takes):
            # The arrays the whole program takes are accepted; those not read are dropped.
            merged = {k: v for k, v in merged.items() if k in self.inputs or k not in self._takes}
        if self.extra is not None:
            if self.obj.wrt not in merged:
                raise MissingInputError(f"input {self.obj.wrt!r} was not passed", hint=f"pass it: {self.obj} has its shape")
        numpy = self.backend.name == "numpy"
        if self.backend.name == "jax" and not self._warned_x64:
            self._warn_float64(merged)
        # The common call (float arrays, as last time) skips conversion and the sorted
        # signature: a few microseconds, not tens, for a 0.2 ms gradient.
        # Python numbers take it too: each is made a 0-d array of the dtype it took before.
        fast = _fast_signature(merged) if numpy and sizes is None else None
        hit = self._fast.get(fast) if fast is not None else None
        if hit is None:
            merged, entry = self._entry(merged, sizes, fast)
        else:
            entry, numbers = hit
            for name, dtype in numbers:
                merged[name] = self._asarray(merged[name], dtype)
        self._last_source = entry[1]
        if numpy:  # NaN and overflow propagate silently, as in evaluate
            with _numpy_errstate():
                result = _run(entry, merged, self.backend.name)
        else:
            result = _run(entry, merged, self.backend.name)
        return result[self.extra.target] if self.extra is not None else result

    def _warn_float64(self, arrays: dict[str, Any]) -> None:
        """float64 arrays given to the jax backend while JAX computes in float32 (x64 off):
        the results come back float32, so say so once, and how to keep float64."""
        import jax

        if jax.config.jax_enable_x64:
            return
        wide = sorted(k for k, v in arrays.items() if str(getattr(v, "dtype", "")) in ("float64", "complex128"))
        if wide:
            self._warned_x64 = True
            warnings.warn(
                f"the jax backend computes in float32: JAX's 64-bit mode is off, so the float64 "
                f"input{'s' if len(wide) > 1 else ''} {', '.join(map(repr, wide))} "
                f"{'are' if len(wide) > 1 else 'is'} rounded to float32 and the results are float32; "
                "to keep float64, run jax.config.update('jax_enable_x64', True) at start-up",
                PrecisionWarning,
                stacklevel=user_stacklevel(),
            )

    def _entry(self, merged: dict[str, Any], sizes: Mapping[str, int] | None,
               fast: tuple | None = None) -> tuple[dict[str, Any], tuple]:
        """The inputs as the generated code takes them, and the (function, source) for their
        signature, generated on first use; the fast path's ``fast`` signature of the inputs
        as passed, if any, is remembered with it."""
        numpy = self.backend.name == "numpy"
        if numpy:
            ndarray = self.backend.load().ndarray
            numbers = [k for k, v in merged.items() if type(v) is not ndarray]  # made 0-d arrays
            merged = _numpy_inputs(merged)
            numbers = tuple((k, merged[k].dtype) for k in numbers)
        # (torch: a tensor that requires grad is part of the signature: no step may write
        # out= while autograd records, so such calls get code that writes nothing in place)
        signature = tuple(sorted((k, tuple(_shape(v)), str(getattr(v, "dtype", type(v))),
                                  bool(getattr(v, "requires_grad", False))) for k, v in merged.items()))
        if sizes is not None:
            sizes = _declared_sizes(sizes)
            signature += (("sizes", tuple(sorted(sizes.items()))),)
        entry = self._cache.get(signature)
        if entry is None:
            weak = frozenset(k for k, v in merged.items() if _is_python_number(v))
            dtypes = {str(getattr(v, "dtype", "")) for k, v in merged.items() if k not in weak}
            fuse = len(dtypes) == 1 and "float" in dtypes.pop()
            fuse = fuse and not any(getattr(v, "requires_grad", False) for v in merged.values())
            itemsize = max((getattr(getattr(v, "dtype", None), "itemsize", 0) or 0 for v in merged.values()),
                           default=0) or 8
            entry = self._build({k: tuple(_shape(v)) for k, v in merged.items()}, sizes, weak, fuse, itemsize)
            self._cache[signature] = entry
        if numpy and fast is not None:
            self._asarray = self.backend.load().asarray
            self._fast[fast] = (entry, numbers)
        if numpy and sizes is None and (converted := _fast_signature(merged)) is not None:
            self._fast[converted] = (entry, ())
        return merged, entry

    @property
    def source(self) -> str:
        if self._last_source is None:
            program = self.obj.program if self.extra is not None else self.obj  # ranks of every input
            shapes = {name: (64,) * program.rank(name) for name in self.inputs}
            # Every index 64, also those that only deltas fix.
            nominal = {i: 64 for stmt in self.program for i in E.all_indices(stmt.expr) | set(stmt.indices)}
            if self.extra is not None:
                nominal.update({self.obj.origins.get(i, i): 64 for i in self.extra.indices})
            self._last_source = self._build(shapes, nominal)[1]
        return self._last_source

    def __repr__(self) -> str:
        return f"<compiled {self.backend.name} function of {len(self.program)} statements>"

    def _repr_markdown_(self) -> str:
        return "```python\n" + self.source + "```"

    # ---------------------------------------------------------------- generating
    def _build(
        self,
        shapes: dict[str, tuple[int, ...]],
        declared: Mapping[str, int] | None = None,
        weak: frozenset[str] = frozenset(),
        fuse: bool = True,
        itemsize: int | None = None,
    ):
        """Source and function for these shapes; ``fuse`` when every array input has one
        floating dtype (steps may then reuse the buffers of dying temporaries).  With
        ``itemsize`` (bytes per element of the arrays made), an array the code would make
        that cannot fit is refused here (``TooLargeError``), before any code runs."""
        try:
            only_wrt = set(self.inputs) - set(self.program.inputs)
            info = infer_shapes(self.program, {k: v for k, v in shapes.items() if k not in only_wrt}, declared,
                                context={k: v for k, v in shapes.items() if k in only_wrt})
            if self.extra is not None:
                all_shapes = {**shapes, **info.shapes}
                own = info.sizes[self.program.targets.index(self.obj.output)]
                extra_sizes = self.obj.index_sizes(all_shapes, own, declared)
        except EingradError as err:
            if self.program.source is not None:
                err.with_source(self.program.source)
            raise err.with_traceback(None) from None
        gen = Generator(self.backend, weak=weak, fuse=fuse and self.backend.inplace, debug=self.debug,
                        itemsize=itemsize)
        for name in self.inputs:
            gen.var(name)
        emitted = {s.target for s in self.program.needed_for(self.outputs)} if self.extra is None else set()
        if self.extra is not None:
            # A derivative needs only the forward values its formula reads (the Hessian
            # 2 δ_ln V_jo V_jm of a factorisation needs none): shapes come from the whole
            # forward program, code only for what is read.
            read = [name for name in E.mentions(self.extra.expr) if self.program.is_target(name)]
            emitted = {s.target for s in self.program.needed_for(read)} if read else set()
        planned = [(k, stmt, sizes) for k, (stmt, sizes) in enumerate(zip(self.program.statements, info.sizes,
                                                                              strict=True)) if stmt.target in emitted]
        if self.extra is not None:
            planned.append((len(planned), self.extra, extra_sizes))
        gen.plan(find_stacks(planned, set(self.program.inputs)))
        gen.formed_inverses = formed_inverses([stmt for _, stmt, _ in planned], [sz for _, _, sz in planned])
        for k, stmt, sizes in planned:
            gen.statement(stmt, sizes, statement_text(stmt) if stmt is not self.extra else str(self.obj), k)
        code = gen.function("compiled", self.inputs, self.outputs)
        helpers = self.backend.helpers + (self.backend.debug_helpers if self.debug else "")
        source = helpers.lstrip("\n") + "\n\n" + code.source
        namespace: dict[str, Any] = {"xp": self.backend.load()}
        exec(compile(source, f"<eingrad {self.backend.name}>", "exec"), namespace)  # noqa: S102 - built from validated names
        fn = namespace["compiled"]
        if self.backend.name == "jax":
            # Already jit-compiled: XLA fuses the steps (6-29x faster than op-by-op dispatch
            # on small problems); still composable with jax.jit, jax.vmap and jax.grad.
            fn = _jitted(fn, self.outputs)
        return fn, source


def _jitted(fn, outputs: list[str]):
    """``jax.jit(fn)``, its outputs in the program's order (jit sorts a dict's keys)."""
    import jax

    jitted = jax.jit(fn)

    def run(arrays):
        out = jitted(arrays)
        return {name: out[name] for name in outputs}

    run.jitted = jitted
    return run


def _run(entry: tuple[Any, str], arrays: dict[str, Any], backend: str) -> Any:
    """Call generated code; an error the array library raises names the statement."""
    fn, source = entry
    try:
        return fn(arrays)
    except Exception as err:  # noqa: BLE001 - reported with the statement it came from
        line = None
        unsafe = _unsafe_write(err)
        tb = err.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename.startswith("<eingrad"):
                # the generated function's line (a debug check's, not its helper's)
                line = tb.tb_lineno if line is None or unsafe is None else line
            tb = tb.tb_next
        lines = source.splitlines()
        step = lines[line - 1].strip() if line and line <= len(lines) else None
        comment = next((lines[k].strip()[2:] for k in range(min(line or 0, len(lines)) - 1, -1, -1)
                        if lines[k].strip().startswith("# ")), None) if line else None
        where = f" in the code for {comment}" if comment else ""
        if isinstance(err, MemoryError):  # numpy's names the shape and the bytes
            raise TooLargeError(f"the {backend} backend could not allocate an array{where}: {err}",
                                hint="use smaller sizes, or fewer outputs at once") from None
        if unsafe is not None:
            step = lines[line].strip() if line and line < len(lines) else step  # the write checked
            raise UnsafeWriteError(
                f"the generated {backend} code" + (f" for {comment}" if comment else "")
                + f" was about to write into {unsafe[0]} in place while {unsafe[1]}, which shares its memory, "
                "is still live" + (f"\n  the step: {step}" if step else ""),
                hint="this is a bug in eingrad's code generator (please report it); "
                     "eg.evaluate(...) computes the same",
            ) from None
        raise CompiledCallError(
            f"the {backend} backend failed{where}: {type(err).__name__}: {err}"
            + (f"\n  the step: {step}" if step else ""),
            hint="pass arrays of one dtype, on one device; eg.evaluate(...) computes the same with numpy",
        ) from None


def _fast_signature(arrays: dict[str, Any]) -> tuple | None:
    """(name, shape, dtype) of each input when every input is a float (or complex) numpy
    array, which the generated code takes as it is, or a Python float or int or a numpy
    float scalar (name, type), which it takes as a 0-d array of the dtype it was given
    last time (a Python number's depends on the arrays' dtypes, part of the key); None
    otherwise."""
    import numpy as np

    key = []
    for name, value in arrays.items():
        kind = type(value)
        if kind is np.ndarray:
            if value.dtype.kind not in "fc":
                return None
            key.append((name, value.shape, value.dtype))
        elif kind is float or kind is int or kind is np.float64 or kind is np.float32:
            key.append((name, kind))
        else:
            return None
    return tuple(key)


def _numpy_errstate():
    import numpy as np

    return np.errstate(all="ignore")


def _numpy_inputs(arrays: dict[str, Any]) -> dict[str, Any]:
    """Inputs as numeric arrays, as ``evaluate`` takes them: integers become float64, and
    Python numbers are weak (NEP 50), taking the dtype of the arrays passed with them."""
    import numpy as np

    from ..evaluate import as_input_array

    weak = [k for k, v in arrays.items() if _is_python_number(v)]
    out = {k: as_input_array(k, v) for k, v in arrays.items()}
    strong = [a.dtype for k, a in out.items() if k not in weak]
    if weak and strong:
        dtype = np.result_type(*strong, *(arrays[k] for k in weak))
        out.update((k, out[k].astype(dtype)) for k in weak)
    return out


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(getattr(value, "shape", ()))


def _fresh_target_name(d: Derivative) -> str:
    base = f"d{d.output}d{d.wrt}" if d.order == 1 else f"d{d.order}{d.output}d{d.wrt}{d.order}"
    taken = set(d.program.targets) | set(d.program.inputs)
    name = base if base.isidentifier() else "derivative"
    while name in taken:
        name += "x"
    return name


def compile_program(
    obj: Program | Derivative, backend: str = "numpy", outputs: list[str] | None = None,
    debug: bool | None = None,
) -> CompiledFunction:
    return CompiledFunction(obj, backend, outputs, debug)
