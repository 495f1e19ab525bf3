"""``eg.compile``: a callable per program, generated once per signature and reused at
every size: the generated code reads sizes from the arrays.  The signature is each input's
rank and dtype, and a plan bucket of the sizes (see ``shapes.size_key``)."""

from __future__ import annotations

import gc
import os
import warnings
from collections.abc import Mapping
from typing import Any

from .. import expr as E
from ..backends import get_backend
from ..diff import Derivative
from ..errors import (
    EingradError,
    MissingInputError,
    PrecisionWarning,
    SizeError,
    TooLargeError,
    user_stacklevel,
)
from ..evaluate import _is_python_number
from ..program import Program, Statement
from ..recurrence import step_plan
from ..sizes import _declared_sizes, infer_shapes, step_shapes
from .emit import Generator, check_names, statement_text
from .linalg import formed_inverses
from .recur import HELPERS as RECURRENCE_HELPERS
from .recur import emit_loop, laid_out
from .shapes import SizeVars, size_key
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
    for the last shapes it was called with (or for nominal sizes before any call);
    ``fn.generic_source()`` the code that is right at every size (what ``eingrad
    compile -o`` writes).


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
        self._recurrence_plans: list | None = None
        self._steps_axes: frozenset | None = None
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
        whole_inputs, have = set(whole.inputs), set(self.inputs)
        for stmt in self.program.statements:
            for name in ([stmt.like] if stmt.like else []) + [t for _, t, _ in stmt.sizes_from]:
                if name in whole_inputs and name not in have:
                    self.inputs.append(name)
                    have.add(name)
        self._takes = set(whole.inputs) | set(whole.unread) | set(self.inputs)
        # Inputs read as indices (LANGUAGE.md §10): integer arrays, range-checked at each call.
        statements = list(self.program.statements) + ([self.extra] if self.extra is not None else [])
        self._picks = [(k, node) for k, stmt in enumerate(statements) for node in E.walk(stmt.expr)
                       if isinstance(node, E.Pick)]
        self.integer = frozenset(node.table.name for _, node in self._picks)
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
        if self.integer:
            # numpy, CuPy and torch code checks index ranges itself (its gather and scatter
            # helpers: an exported module must too); jax clamps inside jit, so it is checked here.
            self._check_indices(merged, sizes, ranges=self.backend.name not in _CHECKS_RANGES)
        numpy = self.backend.name == "numpy"
        # The common call (float arrays, as last time) skips conversion and the sorted
        # signature: a few microseconds, not tens, for a 0.2 ms gradient.
        # Python numbers take it too: each is made a 0-d array of the dtype it took before.
        jax = self.backend.name == "jax"
        fast = None
        if numpy and sizes is None:
            fast = _fast_signature(merged)
        elif jax and sizes is None:
            # jax: the arrays' types, shapes and dtypes as they were last time (the jitted
            # function then costs what jax.jit's dispatch costs, not a new signature).
            fast = tuple((k, type(v), getattr(v, "shape", None), getattr(v, "dtype", None))
                         for k, v in merged.items())
        hit = self._fast.get(fast) if fast is not None else None
        if hit is None:
            if jax and not self._warned_x64:  # once per signature: float64 given, float32 computed
                self._warn_float64(merged)
            merged, entry = self._entry(merged, sizes, fast)
            if jax and fast is not None:
                self._fast[fast] = (entry, ())
        else:
            entry, numbers = hit
            for name, dtype in numbers:
                merged[name] = self._asarray(merged[name], dtype)
        self._last_source = entry[1]
        declared = dict(sizes) if sizes is not None else None
        try:
            if numpy:  # NaN and overflow propagate silently, as in evaluate
                with _numpy_errstate():
                    result = _run(entry, merged, self.backend.name, declared)
            else:
                result = _run(entry, merged, self.backend.name, declared)
        except SizeError as err:
            # The code's entry check found sizes that disagree: said with the program's text.
            self._infer({k: tuple(_shape(v)) for k, v in merged.items()},
                        _declared_sizes(declared) if declared is not None else None)
            raise err.with_traceback(None) from None
        except CompiledCallError:
            if self.integer:  # a helper found an index outside its axis: say which, where, what value
                self._check_indices(merged, sizes, ranges=True)
            raise
        return result[self.extra.target] if self.extra is not None else result

    def _check_indices(self, arrays: dict[str, Any], sizes: Mapping[str, int] | None,
                       ranges: bool = True) -> None:
        """Every input read as an index holds integers, and (``ranges``) in range of the axis
        it picks (numpy would wrap -1 silently; jax would clamp): an InputError naming the value."""
        import numpy as np

        from ..evaluate import as_index_array, check_index_range

        try:
            for name in sorted(self.integer):
                value = arrays.get(name)
                if value is not None and "int" not in str(getattr(value, "dtype", type(value).__name__)):
                    as_index_array(name, value, self.program.first_use(name).span)
            if not ranges:
                return
            shapes = {k: tuple(_shape(v)) for k, v in arrays.items()}
            info, extra_sizes = self._infer(shapes, _declared_sizes(sizes) if sizes is not None else None)
            for k, pick in self._picks:
                own = extra_sizes if k == len(info.sizes) else info.sizes[k]
                n = own[pick.index]
                y = arrays[pick.table.name]
                if bool(((y < 0) | (y >= n)).any()):
                    host = np.asarray(y.cpu() if hasattr(y, "cpu") else y)
                    check_index_range(pick.table.name, host, n, pick.table.span, "the axis it picks")
        except EingradError as err:
            if self.program.source is not None:
                err.with_source(self.program.source)
            raise err.with_traceback(None) from None

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
            merged = _numpy_inputs(merged, self.integer)
            numbers = tuple((k, merged[k].dtype) for k in numbers)
        # (torch: a tensor that requires grad is part of the signature: no step may write
        # out= while autograd records, so such calls get code that writes nothing in place)
        names = sorted(merged)
        shapes = {k: tuple(_shape(merged[k])) for k in names}
        signature = tuple((k, len(shapes[k]), str(getattr(merged[k], "dtype", type(merged[k]))),
                           bool(getattr(merged[k], "requires_grad", False))) for k in names)
        values = [int(n) for k in names for n in shapes[k]]
        # A recurrence's number of steps is in no key: one code for every sequence length.
        steps = self._recurrence_axes()
        planned = [n for k in names for a, n in enumerate(shapes[k]) if (k, a) not in steps] if steps else list(values)
        if sizes is not None:
            sizes = _declared_sizes(sizes)
            signature += (("sizes", tuple(sorted(sizes))),)
            values += [sizes[k] for k in sorted(sizes)]
            planned = planned + [sizes[k] for k in sorted(sizes) if k not in self._recurrence_indices()]
        # The code is generated once per plan bucket (ranks, dtypes and each size's class):
        # it reads the sizes themselves from the arrays, and checks that they agree.
        key = (signature, size_key(planned))
        entry = self._cache.get(key) or self._cache.get((signature, tuple(values)))
        if entry is None:
            weak = frozenset(k for k, v in merged.items() if _is_python_number(v))
            dtypes = {str(getattr(v, "dtype", "")) for k, v in merged.items() if k not in weak and k not in self.integer}
            fuse = len(dtypes) == 1 and "float" in dtypes.pop()
            fuse = fuse and not any(getattr(v, "requires_grad", False) for v in merged.values())
            itemsize = max((getattr(getattr(v, "dtype", None), "itemsize", 0) or 0 for v in merged.values()),
                           default=0) or 8
            fn, source, generic = self._build(shapes, sizes, weak, fuse, itemsize)
            entry = (fn, source)
            # (code with a size written as a number serves these very sizes only)
            self._cache[key if generic else (signature, tuple(values))] = entry
        if numpy and fast is not None:
            self._asarray = self.backend.load().asarray
            self._fast[fast] = (entry, numbers)
        if numpy and sizes is None and (converted := _fast_signature(merged)) is not None:
            self._fast[converted] = (entry, ())
        return merged, entry

    @property
    def source(self) -> str:
        if self._last_source is None:
            self._last_source = self.generic_source()
        return self._last_source

    def generic_source(self, shapes: Mapping[str, tuple[int, ...]] | None = None,
                       sizes: Mapping[str, int] | None = None) -> str:
        """Code right at every size: generated for sizes like ``shapes`` (and declared
        ``sizes``; 64 where none is given) in which indices that may differ have different
        sizes, so that no step depends on two sizes being equal.  Sizes are read from the
        arrays when it runs, and checked to agree."""
        program = self.obj.program if self.extra is not None else self.obj  # ranks of every input
        ranks = {name: program.rank(name) for name in self.inputs}
        statements = self._sized_statements()
        need = self._size_vars(statements, ranks, set(sizes or ())).undetermined()
        size_vars = self._size_vars(statements, ranks, set(sizes or ()) | need)
        nominal_shapes, nominal = size_vars.distinct(shapes or {}, _declared_sizes(sizes) if sizes else {})
        return self._build(nominal_shapes, nominal)[1]

    def _size_vars(self, statements, ranks: Mapping[str, int], declared: set[str]) -> SizeVars:
        """Which input axis (or declared size) gives each index's size."""
        derivative = None
        if self.extra is not None:
            derivative = ("extra", self.obj, self.program.targets.index(self.obj.output))
        return SizeVars(statements, self.inputs, ranks, declared, derivative)

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
        """(function, source, whether it reads every size from the arrays) for these
        shapes; ``fuse`` when every array input has one floating dtype (steps may then
        reuse the buffers of dying temporaries).  With ``itemsize`` (bytes per element of
        the arrays made), an array the code would make at these shapes that cannot fit is
        refused here (``TooLargeError``), before any code runs."""
        # The cycle collector is paused while code is generated: its passes over every live
        # object, more frequent as the generator's tables grow, made generation superlinear
        # (the generator's objects hold no cycles; they are freed as usual).
        paused = gc.isenabled()
        gc.disable()
        try:
            return self._generate(shapes, declared, weak, fuse, itemsize)
        finally:
            if paused:
                gc.enable()

    # ---------------------------------------------------------------- recurrences
    def _plans(self) -> list[tuple[int, Any, Any]]:
        """(number, recurrence, step plan) of each recurrence group of the program (LANGUAGE.md §12)."""
        if self._recurrence_plans is None:
            self._recurrence_plans = [(r, rec, laid_out(step_plan(self.program, rec)))
                                      for r, rec in enumerate(self.program.recurrences)]
        return self._recurrence_plans

    def _sized_statements(self) -> list[tuple[Any, Statement]]:
        """(key, statement) of every statement whose sizes the code reads: the program's, and
        the parts of recurrences computed over every step before their loop."""
        out: list[tuple[Any, Statement]] = list(enumerate(self.program.statements))
        for r, _, plan in self._plans():
            out += [(("h", r, j), stmt) for j, stmt in enumerate(plan.hoisted)]
        return out

    def _recurrence_axes(self) -> frozenset[tuple[str, int]]:
        """The input axes sized by a recurrence's index: the number of steps, which neither
        the code nor the cache's key depends on."""
        if self._steps_axes is None:
            found: set[tuple[str, int]] = set()
            if self._plans():
                program = self.obj.program if self.extra is not None else self.obj
                ranks = {name: program.rank(name) for name in self.inputs}
                size_vars = self._size_vars(self._sized_statements(), ranks, set())
                for _, _, plan in self._plans():
                    root = size_vars.find(("a", *plan.length_of))
                    found |= {(name, axis) for name, rank in ranks.items() for axis in range(rank)
                              if size_vars.find(("a", name, axis)) == root}
            self._steps_axes = frozenset(found)
        return self._steps_axes

    def _recurrence_indices(self) -> frozenset[str]:
        """The names of the recurrence indices (a declared size of one is a number of steps)."""
        return frozenset(self.program.statement(m).indices[rec.axis_of(m)]
                         for _, rec, _ in self._plans() for m in rec.members)

    def _step_sizes(self, shapes, info, declared) -> dict[int, tuple[list[dict], list[dict]]]:
        """Per recurrence group: the index sizes of its hoisted statements and of its step's."""
        out = {}
        if not self._plans():
            return out
        known = {**shapes, **info.shapes}
        try:
            for r, _, plan in self._plans():
                pre_info, step_info = step_shapes(plan, known, declared)
                if pre_info is not None:
                    known.update(pre_info.shapes)
                hoisted = pre_info.sizes if pre_info is not None else []
                out[r] = (hoisted, step_info.sizes)
        except EingradError as err:
            if self.program.source is not None:
                err.with_source(self.program.source)
            raise err.with_traceback(None) from None
        return out

    def _emit_recurrence(self, gen: Generator, rec, size_vars: SizeVars, values, info, real, steps,
                         real_steps) -> str:
        """A recurrence group: its hoisted statements (ordinary steps of the main function),
        then one call of its loop (codegen/recur.py); returns the loop's source."""
        r, _, plan = next(item for item in self._plans() if item[1] is rec)
        hoisted, step_sizes = steps[r]
        real_hoisted, real_step_sizes = real_steps[r]
        for j, stmt in enumerate(plan.hoisted):
            codes = _Codes(size_vars, ("h", r, j), hoisted[j], values)
            gen.statement(stmt, hoisted[j], statement_text(stmt), None, codes, real_hoisted[j])
        position = {s.target: k for k, s in enumerate(self.program.statements)}
        root = size_vars.find(("a", *plan.length_of))
        loop = emit_loop(
            gen, plan, f"_recurrence_{r}", step_sizes, real_step_sizes,
            member_codes=lambda m: _Codes(size_vars, position[m], info.sizes[position[m]], values),
            member_sizes=lambda m: (info.sizes[position[m]], real[position[m]]),
            program=self.program,
            in_range=lambda name, axis: size_vars.find(("a", name, axis)) == root,
        )
        gen.lines.extend(loop.lines)
        return loop.source

    def _infer(self, shapes, declared):
        """Index sizes of every statement (and of the derivative's formula); errors name the
        arrays."""
        extra_sizes = None
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
        return info, extra_sizes

    def _generate(self, shapes, declared, weak, fuse, itemsize=None):
        info, extra_sizes = self._infer(shapes, declared)  # the sizes given agree
        statements = self._sized_statements()
        size_vars = self._size_vars(statements, {k: len(v) for k, v in shapes.items()}, set(declared or ()))
        real_steps = self._step_sizes(shapes, info, declared)
        # The code is planned for sizes like those given in which sizes that may differ do
        # differ (h = 64 beside a batch of 64 is planned as 65): no step then depends on
        # two sizes being equal, and the code is right at every size.
        real = [*info.sizes, extra_sizes]  # the call's sizes: what allocation checks use
        # The number of steps of a recurrence is planned as _PLANNED_STEPS, whatever it is:
        # one code for every sequence length (it is not part of the cache's key either).
        steps_axes = self._recurrence_axes()
        planned_shapes = {k: tuple(_PLANNED_STEPS if (k, a) in steps_axes else n for a, n in enumerate(v))
                          for k, v in shapes.items()}
        planned_declared = {k: _PLANNED_STEPS if k in self._recurrence_indices() else n
                            for k, n in (declared or {}).items()}
        nominal, nominal_declared = size_vars.distinct(planned_shapes, planned_declared)
        if any(shapes[k] != v for k, v in nominal.items()) or nominal_declared != dict(declared or {}):
            shapes, declared = {**shapes, **nominal}, nominal_declared
            info, extra_sizes = self._infer(shapes, declared)
        values = size_vars.values(shapes, declared or {})
        steps = self._step_sizes(shapes, info, declared)
        gen = Generator(self.backend, weak=weak, fuse=fuse and self.backend.inplace, size_vars=size_vars,
                        debug=self.debug, itemsize=itemsize, integer=self.integer)
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
        real_of = {id(stmt): real[k] for k, stmt in enumerate(self.program.statements)}
        if self.extra is not None:
            planned.append((len(planned), self.extra, extra_sizes))
            real_of[id(self.extra)] = real[-1]
        members = {m: rec for rec in self.program.recurrences for m in rec.members}
        ordinary = [(k, stmt, sizes) for k, stmt, sizes in planned if stmt.target not in members]
        gen.plan(find_stacks(ordinary, set(self.program.inputs)))
        hoisted = [(stmt, sizes) for r, _, plan in self._plans() for stmt, sizes in zip(plan.hoisted, steps[r][0], strict=True)]
        gen.formed_inverses = formed_inverses([stmt for _, stmt, _ in ordinary] + [stmt for stmt, _ in hoisted],
                                              [sz for _, _, sz in ordinary] + [sz for _, sz in hoisted])
        loops: list[str] = []
        for k, stmt, sizes in planned:
            if stmt.target in members:
                rec = members[stmt.target]
                if stmt.target == rec.members[0]:  # the group runs here, as in evaluate
                    loops.append(self._emit_recurrence(gen, rec, size_vars, values, info, real, steps, real_steps))
                continue
            codes = _Codes(size_vars, "extra" if stmt is self.extra else k, sizes, values)
            gen.statement(stmt, sizes, statement_text(stmt) if stmt is not self.extra else str(self.obj), k, codes,
                          real_of[id(stmt)])
        code = gen.function("compiled", self.inputs, self.outputs)
        main = "\n\n".join([code.source] + loops)
        helpers = self.backend.helpers + (RECURRENCE_HELPERS[self.backend.name] if loops else "")
        helpers = used_helpers(helpers + (self.backend.debug_helpers if self.debug else ""), main)
        source = (helpers.strip("\n") + "\n\n\n" if helpers.strip() else "") + main
        namespace: dict[str, Any] = {"xp": self.backend.load()}
        exec(compile(source, f"<eingrad {self.backend.name}>", "exec"), namespace)  # noqa: S102 - built from validated names
        if "_sizes_disagree" in namespace:  # in eingrad, a SizeError (ValueError in a module of its own)
            namespace["_sizes_disagree"] = _sizes_disagree
        fn = namespace["compiled"]
        if self.backend.name == "jax":
            # Already jit-compiled: XLA fuses the steps (6-29x faster than op-by-op dispatch
            # on small problems); still composable with jax.jit, jax.vmap and jax.grad.
            fn = _jitted(fn, self.outputs)
        return fn, source, not gen.literal


# The number of steps the code of a recurrence is planned for (it runs at every number).
_PLANNED_STEPS = 64

# Backends whose generated gathers and scatters check their index ranges (codegen/gather.py).
_CHECKS_RANGES = frozenset({"numpy", "cupy", "torch"})


def _jitted(fn, outputs: list[str]):
    """``jax.jit(fn)``, its outputs in the program's order (jit sorts a dict's keys)."""
    import jax

    # Declared sizes shape the arrays: static, one jitted function per set of them.
    jitted: dict[tuple | None, Any] = {None: jax.jit(lambda arrays: fn(arrays, None))}

    def run(arrays, sizes=None):
        key = None if sizes is None else tuple(sorted(sizes.items()))
        if key not in jitted:
            jitted[key] = jax.jit(lambda arrays: fn(arrays, dict(key)))
        out = jitted[key](arrays)
        return {name: out[name] for name in outputs}

    run.jitted = jitted[None]
    return run


class _Codes:
    """The size variable of each index of one statement, looked up when the code needs it
    (a variable no step reads is never defined), and only where its size at the shapes the
    code is generated for is the index's (else the number is written)."""

    def __init__(self, size_vars: SizeVars, key, sizes: dict[str, int], values: dict) -> None:
        self.size_vars, self.key, self.sizes, self.values = size_vars, key, sizes, values

    def get(self, index: str) -> str | None:
        root = self.size_vars.find(("i", self.key, index))
        if self.values.get(root) != self.sizes.get(index):
            return None
        return self.size_vars.var(self.key, index)


def _sizes_disagree(index, n, first, m, second):
    raise SizeError(f"index {index!r} has size {n} in {first} but size {m} in {second}",
                    hint="the same index must have the same size in every array")


def _run(entry: tuple[Any, str], arrays: dict[str, Any], backend: str, sizes: dict | None = None) -> Any:
    """Call generated code; an error the array library raises names the statement."""
    fn, source = entry
    try:
        return fn(arrays, sizes)
    except EingradError as err:
        raise err.with_traceback(None) from None
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


def _numpy_inputs(arrays: dict[str, Any], integer: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Inputs as numeric arrays, as ``evaluate`` takes them: integers become float64, and
    Python numbers are weak (NEP 50), taking the dtype of the arrays passed with them."""
    import numpy as np

    from ..evaluate import as_input_array

    weak = [k for k, v in arrays.items() if _is_python_number(v) and k not in integer]
    out = {k: np.asarray(v) if k in integer else as_input_array(k, v) for k, v in arrays.items()}
    strong = [a.dtype for k, a in out.items() if k not in weak and k not in integer]
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


def used_helpers(helpers: str, code: str) -> str:
    """The helper source with only the functions and classes ``code`` calls, directly or
    through another helper; imports and assignments stay (they are a few lines)."""
    import ast
    import re

    tree = ast.parse(helpers)
    lines = helpers.splitlines()
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    wanted: set[str] = set()
    pending = [code] + [ast.get_source_segment(helpers, n) or "" for n in tree.body if n.__class__.__name__
                        not in ("FunctionDef", "ClassDef")]
    while pending:
        for word in set(re.findall(r"[A-Za-z_]\w*", pending.pop())) & (defs.keys() - wanted):
            wanted.add(word)
            pending.append(ast.get_source_segment(helpers, defs[word]) or "")
    kept = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name not in wanted:
            continue
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
        kept.append("\n".join(lines[start:node.end_lineno]))
    return "\n\n\n".join(kept) + ("\n" if kept else "")
