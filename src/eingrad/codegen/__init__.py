"""The compiler: index notation to straight-line array code for a backend."""

from .compile import CompiledFunction, compile_program

__all__ = ["CompiledFunction", "compile_program"]
