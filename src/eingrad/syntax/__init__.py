"""Lexer and parser of the index-notation language (LANGUAGE.md §1–5)."""

from .parser import parse_expression, parse_program

__all__ = ["parse_program", "parse_expression"]
