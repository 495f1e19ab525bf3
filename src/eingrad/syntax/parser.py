"""Recursive-descent parser; applies the summation rule (LANGUAGE.md §5) once.

Parsing runs in two passes.  The first builds a raw syntax tree of what the
user wrote (``tree.py``), with spans.  The second checks the index rules and
builds the explicit :mod:`eingrad.expr` tree: every index that is not a target
index and not bound by ``sum``/``logsumexp`` is summed over the smallest
subexpression that holds all its occurrences.  In a product, that sum covers
only the factors connected by the summed indices, so ``C_ik = A_ij B_jk W_ik``
becomes ``W_ik Σ_j(A_ij B_jk)``.  When that smallest subexpression is a sum of
terms, each term sums its own occurrences (the Einstein convention): in
``L = sum_i(softplus(-y_i X_ij w_j)) + 0.5 lam w_j w_j`` the ``j`` of ``X_ij w_j``
is summed inside the softplus and the ``j`` of ``w_j w_j`` in the last term, and
``s = x_i + c`` is ``Σ_i x_i + c``.
"""

from __future__ import annotations

import difflib
import math
import warnings
from fractions import Fraction

from .. import expr as E
from ..errors import (
    IndexRuleError,
    MatrixNotationWarning,
    ParseError,
    ReservedNameError,
    Span,
    SurprisingSumWarning,
    UnknownFunctionError,
    caret_excerpt,
    user_stacklevel,
)
from ..functions import FUNCTIONS
from ..names import (
    BINDERS,
    DELTAS,
    LINALG,
    OPERATORS,
    SELECTIONS,
    TRANSFORMS,
    fresh_index,
    known_operators,
    reserved_words,
)
from ..program import Program, Statement
from .lexer import Token, number_value, tokenize
from .tree import (
    RAdd,
    RAffine,
    RBinder,
    RCall,
    RChoose,
    RCompare,
    RConst,
    RDelta,
    RMul,
    RPow,
    RSize,
    RTensor,
    RTransform,
    raw_children,
)

_COMPARISONS = (">", ">=", "<", "<=")

_ATOM_START = {"NAME", "NUMBER"}

#: The deepest nesting of parentheses, calls, sums and unary signs a statement may have.
#: Well below Python's recursion limit, with room for what printing, diff, simplify,
#: evaluate and compile need later (tests/test_hardening_parse.py checks the deepest).
MAX_NESTING = 64


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text  # without a byte-order mark (see _without_bom)
        self.tokens = tokenize(text)
        self.pos = 0
        self.last = len(self.tokens) - 1
        self.tok: Token = self.tokens[0]  # the current token, tokens[pos]
        self.depth = 0

    def enter(self, tok: Token) -> None:
        """One level deeper (a parenthesis, call, sum or sign); refuse past MAX_NESTING."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.error(
                f"nesting too deep: more than {MAX_NESTING} levels of parentheses, calls, sums or signs",
                tok.span,
                hint="split the expression into several statements (a later statement may use "
                "an earlier target)",
            )

    def leave(self) -> None:
        self.depth -= 1

    # ---------------------------------------------------------------- helpers
    def peek(self, k: int = 1) -> Token:
        return self.tokens[min(self.pos + k, len(self.tokens) - 1)]

    def advance(self) -> Token:
        tok = self.tok
        self.pos += 1
        self.tok = self.tokens[min(self.pos, self.last)]
        return tok

    def at(self, text: str) -> bool:
        tok = self.tok
        return tok.text == text and tok.kind == "OP"

    def error(
        self, message: str, span: Span | list[Span] | None = None, hint: str | None = None, cls=ParseError
    ):
        return cls(message, source=self.text, spans=span or self.tok.span, hint=hint)

    def describe(self, tok: Token) -> str:
        if tok.kind == "EOF":
            return "the end of the program"
        if tok.kind == "SEP":
            return "the end of the line" if tok.text == "\n" else "';'"
        return repr(tok.text)

    def expect(self, text: str, hint: str | None = None) -> Token:
        if not self.at(text):
            raise self.error(f"expected {text!r} but found {self.describe(self.tok)}", hint=hint)
        return self.advance()

    def close_paren(self, open_tok: Token, what: str | None = None) -> Token:
        """The ')' that matches ``open_tok``; a missing one is reported at the '('."""
        if self.at(")"):
            return self.advance()
        opening = f"the '(' of {what}" if what else "'('"
        if self.tok.kind in ("SEP", "EOF") or self.at("="):
            # Newlines inside parentheses are whitespace, so the end of the text (or the
            # '=' of the next statement) can be lines away: point at the '(' left open.
            raise self.error(
                f"{opening} is never closed",
                open_tok.span,
                hint="add the ')' that closes it",
            )
        raise self.error(
            f"expected ')' to close {opening}, found {self.describe(self.tok)}",
            [self.tok.span, open_tok.span],
            hint="every '(' needs a matching ')'",
        )

    # ---------------------------------------------------------------- statements
    def parse_program(self) -> list[tuple]:
        statements = []
        while self.tok.kind != "EOF":
            if self.tok.kind == "SEP":
                self.advance()
                continue
            statements.append(self.parse_statement())
            if self.at(")"):
                raise self.error("unmatched ')'", hint="remove it, or add the '(' it closes")
            if self.at("="):
                raise self.error(
                    "a statement has one '=', found a second one",
                    hint="put one statement per line, or separate statements with ';'",
                )
            if self.tok.kind not in ("SEP", "EOF"):
                raise self.error(
                    f"unexpected {self.describe(self.tok)} after the end of a statement",
                    hint="put one statement per line, or separate statements with ';'",
                )
        return statements

    def parse_statement(self) -> tuple:
        start = self.tok.start
        if self.tok.kind != "NAME":
            raise self.error(
                f"a statement starts with the tensor it assigns, found {self.describe(self.tok)}",
                hint="write statements as target = expression, e.g. y_i = A_ij x_j",
            )
        name_tok = self.tok
        if name_tok.text in reserved_words():
            raise self.error(
                f"{name_tok.text!r} is a reserved word and cannot be assigned",
                name_tok.span,
                hint="choose another name for the target",
                cls=ReservedNameError,
            )
        target = self.parse_reference()
        assert isinstance(target, RTensor)
        if not self.at("="):
            hint = None
            if (self.tok.kind == "NAME" or self.at("_")) and self._equals_ahead():
                hint = "multi-letter index names need braces or brackets: A_{batch,hid} or A[batch, hid]"
            raise self.error(
                f"expected '=' after the target {self.text[target.span.start:target.span.end]!r}, "
                f"found {self.describe(self.tok)}",
                hint=hint or "write statements as target = expression",
            )
        self.advance()
        if self.tok.kind in ("SEP", "EOF"):
            raise self.error("the right-hand side of '=' is empty")
        rhs = self.parse_expr()
        return target, rhs, Span(start, self.tokens[self.pos - 1].end)

    def _equals_ahead(self) -> bool:
        """Whether an '=' comes later in the current statement."""
        k = self.pos
        while self.tokens[k].kind not in ("SEP", "EOF"):
            if self.tokens[k].text == "=":
                return True
            k += 1
        return False

    # ---------------------------------------------------------------- expressions
    def parse_expr(self):
        """A comparison (``a > b``: 1 or 0) binds more loosely than ``+``/``-`` (§13)."""
        left = self.parse_additive()
        if not any(self.at(op) for op in _COMPARISONS):
            return left
        op = self.advance()
        if self.tok.kind in ("SEP", "EOF") or self.at(")"):
            raise self.error(f"{op.text!r} needs a right-hand side after it")
        right = self.parse_additive()
        if any(self.at(o) for o in _COMPARISONS):
            raise self.error(
                "chained comparisons are ambiguous",
                Span(_span(left).start, self.tok.end),
                hint="a comparison is 1 or 0: write (a < b) (b < c) for both at once",
            )
        return RCompare(op.text, left, right, _span(left).join(_span(right)))

    def parse_additive(self):
        start = self.tok.start
        terms = [self.parse_term()]
        while self.at("+") or self.at("-"):
            op = self.advance()
            if self.tok.kind in ("SEP", "EOF") or self.at(")"):
                raise self.error(f"{op.text!r} needs a term after it")
            term = self.parse_term()
            if op.text == "-":
                term = RMul((RConst(Fraction(-1), op.span), term), op.span.join(_span(term)))
            terms.append(term)
        if len(terms) == 1:
            return terms[0]
        return RAdd(tuple(terms), Span(start, self.tokens[self.pos - 1].end))

    def parse_term(self):
        start = self.tok.start
        factors = [self.parse_unary()]
        while True:
            if self.at("*") or self.at("/"):
                op = self.advance()
                if self.tok.kind in ("SEP", "EOF") or self.at(")"):
                    raise self.error(f"{op.text!r} needs a factor after it")
                factor = self.parse_unary()
                if op.text == "/":
                    factor = RPow(factor, Fraction(-1), op.span.join(_span(factor)))
                factors.append(factor)
            elif self.tok.kind in _ATOM_START or self.at("(") or self.at("|"):
                factors.append(self.parse_unary())  # juxtaposition: A_ij B_jk
            else:
                break
        if len(factors) == 1:
            return factors[0]
        return RMul(tuple(factors), Span(start, self.tokens[self.pos - 1].end))

    def parse_unary(self):
        if self.at("-") or self.at("+"):
            op = self.advance()
            self.enter(op)
            operand = self.parse_unary()
            self.leave()
            if op.text == "+":
                return operand
            return RMul((RConst(Fraction(-1), op.span), operand), op.span.join(_span(operand)))
        return self.parse_power()

    def parse_power(self):
        base = self.parse_atom()
        if self.at("^") or self.at("**"):
            op = self.advance()
            exponent, end = self.parse_exponent(op)
            base = RPow(base, exponent, Span(_span(base).start, end))
            if exponent.denominator == 1:
                _constant_value(base, self)  # a constant power out of range is refused here
            if self.at("^") or self.at("**"):
                raise self.error(
                    "chained powers are ambiguous",
                    Span(_span(base).start, self.tok.end),
                    hint="write x^(2^3) or (x^2)^3",
                )
        return base

    def parse_exponent(self, op: Token) -> tuple[Fraction, int]:
        sign = 1
        if self.at("-") or self.at("+"):
            sign = -1 if self.advance().text == "-" else 1
        if self.tok.kind == "NUMBER":
            tok = self.advance()
            return sign * number_value(tok.text), tok.end
        if self.at("("):
            open_tok = self.advance()
            self.enter(open_tok)
            inner = self.parse_expr()
            self.leave()
            close = self.close_paren(open_tok, "the exponent")
            value = _constant_value(inner, self)
            if value is None:
                raise self.error(
                    "an exponent must be a constant number",
                    Span(open_tok.start, close.end),
                    hint="powers take constant exponents, e.g. x_i^2 or x_i^(1/3); "
                    "for x^y write exp(y log(x))",
                )
            return sign * value, close.end
        raise self.error(
            f"an exponent must be a constant number, found {self.describe(self.tok)}",
            hint="powers take constant exponents, e.g. x_i^2 or x_i^(-1)",
        )

    def parse_atom(self):
        tok = self.tok
        if tok.kind == "NUMBER":
            self.advance()
            return RConst(number_value(tok.text), tok.span)
        if self.at("|"):
            open_bar = self.advance()
            if self.tok.kind != "NAME":
                raise self.error(
                    f"expected an index name after '|', found {self.describe(self.tok)}",
                    hint="|i| is the size of index i; there is no absolute-value bar: write abs(x)",
                )
            name = self.advance()
            self.check_index_name(name)
            close = self.expect("|", hint="|i| is the size of index i; write abs(x) for |x|")
            return RSize(name.text, Span(open_bar.start, close.end))
        if self.at("("):
            open_tok = self.advance()
            if self.at(")"):
                raise self.error("empty parentheses")
            self.enter(open_tok)
            inner = self.parse_expr()
            self.leave()
            self.close_paren(open_tok)
            return inner
        if tok.kind == "NAME":
            word = tok.text
            if word in SELECTIONS and self.peek().kind == "OP" and self.peek().text == "(":
                return self.parse_selection()
            if word in BINDERS or word in TRANSFORMS or word in LINALG:
                return self.parse_binder()
            if word in SELECTIONS:
                raise self.error(
                    f"{word!r} is a selection and cannot be used as a tensor",
                    tok.span,
                    hint=f"call it as {word}({', '.join('abc'[:SELECTIONS[word]])}), "
                    "or give the tensor another name",
                    cls=ReservedNameError,
                )
            if word in DELTAS:
                return self.parse_delta()
            if word in FUNCTIONS:
                return self.parse_call()
            return self.parse_reference()
        if tok.kind in ("SEP", "EOF"):
            raise self.error("the expression ends too early: a term is missing")
        if self.at(")"):
            raise self.error("unmatched ')'", hint="remove it, or add the '(' it closes")
        raise self.error(f"unexpected {self.describe(tok)} where a term should start")

    def parse_reference(self) -> RTensor:
        name_tok = self.advance()
        name = name_tok.text
        if self.at("(") and self.tok.start == name_tok.end:
            close = difflib.get_close_matches(name, list(FUNCTIONS), n=1)
            known = ", ".join(FUNCTIONS)
            hint = f"did you mean {close[0]}(...)? " if close else ""
            hint += f"known functions: {known}; for a product write '{name} (...)' or '{name}*(...)'"
            raise self.error(f"unknown function {name!r}", name_tok.span, hint, UnknownFunctionError)
        indices, spans, end = self.parse_index_list(name_tok, required=False, positions=True)
        if indices and self.at("(") and self.tok.start == end:
            raise self.unknown_operator(name_tok, end)
        if (self.at("_") or self.at("[")) and self.tok.start == end:
            written = self.text[name_tok.start : end]
            raise self.error(
                f"{written!r} is followed by a second index list",
                hint="write all of a tensor's indices in one list: A_ij, A_{i,j} or A[i, j]",
            )
        return RTensor(name, tuple(indices), Span(name_tok.start, end), tuple(spans))

    def paren_text(self, open_pos: int) -> str:
        """The source of the parenthesis opening at token ``open_pos``, or ``(...)`` if long."""
        depth = 0
        for k in range(open_pos, len(self.tokens)):
            tok = self.tokens[k]
            if tok.kind in ("SEP", "EOF"):
                break
            if tok.text == "(":
                depth += 1
            elif tok.text == ")":
                depth -= 1
                if depth == 0:
                    text = self.text[self.tokens[open_pos].start : tok.end]
                    return text if len(text) <= 40 and "\n" not in text else "(...)"
        return "(...)"

    def unknown_operator(self, name_tok: Token, end: int) -> ParseError:
        """``name_k(...)`` where ``name`` is not a reduction or transform (LANGUAGE.md §8)."""
        written = self.text[name_tok.start : end]
        arg = self.paren_text(self.pos)
        name = name_tok.text
        product = f"for the product of {written} and the parenthesis write '{written} {arg}' or '{written} * {arg}'"
        known = f"the known reductions and transforms are {known_operators()}"
        close = difflib.get_close_matches(name, list(OPERATORS), n=1)
        if close:
            known = f"did you mean {close[0]}_...(...)? " + known
        looks_like_tensor = name[0].isupper() or len(name) == 1 or any(c.isdigit() for c in name)
        if looks_like_tensor and not close:
            message = (
                f"'{written}(' reads as a reduction or transform named {name!r}, "
                f"and there is none: a tensor reference is not followed directly by '('"
            )
            hint = f"{product}; {known}"
        else:
            message = f"unknown reduction or transform {name!r} in '{written}{arg}'"
            hint = f"{known}; {product}"
        return self.error(message, Span(name_tok.start, self.tok.end), hint, UnknownFunctionError)

    def parse_index_list(self, owner: Token, required: bool, positions: bool = False) -> tuple[list[str], list[Span], int]:
        """Indices after a name: ``_ij``, ``_{ij}``, ``_{i,j}``, ``[b, h]``; none if absent.

        Returns the indices, their spans and the offset where the list ends.
        """
        if self.at("_") and self.tok.start == owner.end:
            under = self.advance()
            if self.at("{"):
                self.advance()
                indices, spans = self.parse_braced(under, positions)
                return indices, spans, self.advance().end
            if self.tok.kind == "NAME" and self.tok.start == under.end:
                word = self.advance()
                return (*self.split_letters(word), word.end)
            if self.tok.kind == "NUMBER":
                raise self.error(
                    "index names are letters, not numbers",
                    hint="eingrad indices are symbolic (A_ij); to pick an element, index the array in numpy",
                )
            raise self.error(
                f"expected index names right after '_', found {self.describe(self.tok)}",
                hint="write A_ij, A_{i,j} or A[i, j]",
            )
        if self.at("["):
            self.advance()
            indices, spans = self.parse_names_until("]", positions)
            return indices, spans, self.advance().end
        if required:
            raise self.error(
                f"{owner.text!r} needs indices, e.g. {owner.text}_ij",
                owner.span,
                hint=f"write {owner.text}_ij, {owner.text}_{{i,j}} or {owner.text}[i, j]",
            )
        return [], [], owner.end

    def split_letters(self, word: Token) -> tuple[list[str], list[Span]]:
        for k, ch in enumerate("" if word.text.isalpha() else word.text):
            if not ch.isalpha():
                raise self.error(
                    f"after a bare '_' every letter is one index, but {word.text!r} contains {ch!r}",
                    Span(word.start + k, word.start + k + 1),
                    hint=f"for an index named {word.text!r} use brackets or braces with commas: "
                    f"[{word.text}] or _{{{word.text},...}}; indices are names, not positions",
                )
        spans = [Span(word.start + k, word.start + k + 1) for k in range(len(word.text))]
        return list(word.text), spans

    def parse_braced(self, under: Token, positions: bool = False) -> tuple[list[str], list[Span]]:
        # Without commas every letter is one index (A_{ij}); with commas, names (A_{i,j}).
        close = self.pos
        while self.tokens[close].kind == "NAME" or self.tokens[close].text == ",":
            close += 1
        has_comma = any(t.text == "," for t in self.tokens[self.pos : close])
        if has_comma:
            return self.parse_names_until("}", positions)
        indices: list[str] = []
        spans: list[Span] = []
        while self.tok.kind == "NAME":
            more, more_spans = self.split_letters(self.advance())
            indices += more
            spans += more_spans
        if not indices and self.tok.kind == "NUMBER":
            raise self.error(
                "index names are letters, not numbers",
                hint="eingrad indices are symbolic (A_ij); to pick an element, index the array in numpy",
            )
        if not indices:
            raise self.error("empty index list '{}'", hint="write A_{ij} or remove the braces")
        if not self.at("}"):
            raise self.error(f"expected '}}' to close the index list, found {self.describe(self.tok)}")
        return indices, spans

    def parse_names_until(self, closer: str, positions: bool = False) -> tuple[list[str], list[Span]]:
        indices: list[str] = []
        spans: list[Span] = []
        while True:
            if positions and (self.tok.kind == "NUMBER" or self.tok.text == "-" or (
                    self.tok.kind == "NAME" and self.peek().text in ("+", "-", "*"))):
                position = self.parse_position(closer)
                indices.append(position)  # type: ignore[arg-type]
                spans.append(position.span)
                if self.at(","):
                    self.advance()
                    continue
                if self.at(closer):
                    return indices, spans
                raise self.error(f"expected ',' or {closer!r} after the index position, found {self.describe(self.tok)}",
                                 hint="an index position is affine with integer coefficients: X[n, 2i+k-1]")
            if self.tok.kind != "NAME":
                raise self.error(
                    f"expected an index name, found {self.describe(self.tok)}",
                    hint="index names are letters then letters or digits: A[batch, hid]",
                )
            tok = self.advance()
            if (self.at("[") or self.at("_")) and self.tok.start == tok.end:
                indices.append(self.parse_lookup(tok))  # type: ignore[arg-type]
                spans.append(indices[-1].span)  # type: ignore[attr-defined]
            else:
                self.check_index_name(tok)
                indices.append(tok.text)
                spans.append(tok.span)
            if self.at(","):
                self.advance()
                continue
            if self.at(closer):
                return indices, spans
            if self.tok.text in ("+", "-", "*"):  # index arithmetic where it has no meaning (a sum's list)
                raise self.error(
                    f"index arithmetic ({tok.text}{self.tok.text}...) is not allowed here",
                    Span(tok.start, self.tok.end),
                    hint="a sum, reduction or transform takes index names; an affine position (X[n, i+k], "
                    "LANGUAGE.md §11) goes in a tensor's or a delta's index list",
                )
            raise self.error(
                f"expected ',' or {closer!r} in the index list, found {self.describe(self.tok)}",
                hint="separate multi-letter index names with commas",
            )

    def parse_position(self, closer: str) -> RAffine:
        """An affine index position ``2i+k-1``, ``i-k``, ``-1`` (LANGUAGE.md §11): integer coefficients."""
        start = self.tok.start
        coef: dict[str, int] = {}
        spans: dict[str, Span] = {}
        offset = 0
        sign = 1
        if self.at("-"):
            self.advance()
            sign = -1
        while True:
            factor = 1
            term_start = self.tok.start
            if self.tok.kind == "NUMBER":
                num = self.advance()
                value = number_value(num.text)
                if value.denominator != 1 or not num.text.isdigit():
                    raise self.error(f"the coefficient {num.text!r} of an index position is not an integer",
                                     num.span, hint="index positions are affine with integer coefficients: X[n, 2i+k]")
                factor = int(value)
                if self.at("*"):
                    self.advance()
                if self.tok.kind != "NAME" or self.tok.start != num.end and self.text[num.end:self.tok.start].strip():
                    offset += sign * factor
                    factor = 0
            if factor:
                if self.tok.kind != "NAME":
                    raise self.error(f"expected an index name in the index position, found {self.describe(self.tok)}",
                                     hint="an index position is affine with integer coefficients: X[n, 2i+k-1]")
                name_tok = self.advance()
                self.check_index_name(name_tok)
                if self.at("*") or (self.tok.kind in ("NAME", "NUMBER") and self.tok.text != closer):
                    raise self.error(
                        f"the index position multiplies {name_tok.text!r} by {self.describe(self.peek())}: "
                        "it is not affine",
                        Span(term_start, self.peek().end if self.at("*") else self.tok.end),
                        hint="an index position is affine with integer coefficients: X[n, 2i+k]; "
                        "a product of two indices (X[i*j]) has no meaning")
                coef[name_tok.text] = coef.get(name_tok.text, 0) + sign * factor
                spans.setdefault(name_tok.text, name_tok.span)
            if self.at("+") or self.at("-"):
                sign = 1 if self.advance().text == "+" else -1
                continue
            break
        end = self.tokens[self.pos - 1].end
        terms = tuple(sorted(((a, n) for n, a in coef.items() if a), key=lambda t: t[1]))
        return RAffine(terms, offset, Span(start, end), tuple(spans[n] for _, n in terms))

    def parse_lookup(self, name_tok: Token) -> RTensor:
        """An index position that reads an integer tensor: ``y[n]`` in ``Z[n, y[n]]`` (§10)."""
        self.check_index_name(name_tok)
        indices, spans, end = self.parse_index_list(name_tok, required=True)
        nested = [i for i in indices if not isinstance(i, str)]
        if nested:
            raise self.error(
                f"the index {self.text[name_tok.start:end]!r} reads an integer tensor at a position that "
                "reads another one",
                Span(name_tok.start, end),
                hint="index an integer tensor by names only: compute the inner lookup in a statement of its own",
            )
        return RTensor(name_tok.text, tuple(indices), Span(name_tok.start, end), tuple(spans))

    def check_index_name(self, tok: Token) -> None:
        if tok.text in reserved_words():
            raise self.error(
                f"{tok.text!r} is a reserved word and cannot be an index name",
                tok.span,
                hint="choose another index name",
                cls=ReservedNameError,
            )

    def parse_selection(self) -> RChoose:
        """``max(a, b)``, ``min(a, b)``, ``where(c, a, b)``, ``clip(x, lo, hi)`` (§13)."""
        word = self.advance()
        open_tok = self.advance()
        count = SELECTIONS[word.text]
        usage = f"{word.text}({ {'where': 'c, a, b', 'clip': 'x, lo, hi'}.get(word.text, 'a, b') })"
        args = []
        self.enter(open_tok)
        while True:
            if self.at(")") or self.at(","):
                raise self.error(f"{word.text} takes {count} arguments: {usage}")
            args.append(self.parse_expr())
            if not self.at(","):
                break
            self.advance()
        self.leave()
        close = self.close_paren(open_tok, f"{word.text}(...)")
        if len(args) != count:
            raise self.error(
                f"{word.text} takes {count} arguments, found {len(args)}",
                Span(word.start, close.end),
                hint=f"write {usage}" + (
                    f"; the largest value over an index k is {word.text}_k(...)"
                    if word.text in BINDERS and len(args) == 1 else ""
                ),
            )
        return RChoose(word.text, tuple(args), Span(word.start, close.end))

    def parse_binder(self) -> RBinder | RTransform:
        word = self.advance()
        kind = "sum" if word.text in ("Σ", "∑") else word.text
        if not (self.at("_") and self.tok.start == word.end) and not self.at("["):
            raise self.error(
                f"{word.text!r} needs the index it binds, e.g. {word.text}_k(x_k)",
                word.span,
                hint=f"write {word.text}_k(...) or {word.text}_{{k,l}}(...)",
                cls=ReservedNameError if not self.at("(") else ParseError,
            )
        indices, spans, _ = self.parse_index_list(word, required=True)
        if len(set(indices)) != len(indices):
            raise self.error(f"{word.text} binds the same index twice", Span(spans[0].start, spans[-1].end))
        if kind in LINALG and len(indices) != 2:
            raise self.error(
                f"{word.text} takes the matrix's two indices (rows, columns), found {len(indices)}",
                Span(spans[0].start, spans[-1].end),
                hint=f"write {word.text}_ij(A_ij); other free indices of the argument are batch indices",
            )
        if not self.at("(") and kind == "sum" and (self.tok.kind in _ATOM_START or self.at("|") or self.at("-")):
            # Σ_n G_nh δ_hk: without parentheses a sum binds the rest of the product.
            self.enter(word)
            body = self.parse_term()
            self.leave()
            return RBinder(kind, tuple(indices), body, Span(word.start, _span(body).end), tuple(spans))
        if not self.at("("):
            raise self.error(
                f"expected '(' after {word.text}_{''.join(indices)}, found {self.describe(self.tok)}",
                hint=f"write {word.text}_{''.join(indices)}(...) with the summand in parentheses",
            )
        open_tok = self.advance()
        if self.at(")"):
            raise self.error(f"{word.text}(...) is empty")
        self.enter(open_tok)
        body = self.parse_expr()
        self.leave()
        close = self.close_paren(open_tok, f"{word.text}_{''.join(indices)}(...)")
        node = RTransform if kind in TRANSFORMS else RBinder
        return node(kind, tuple(indices), body, Span(word.start, close.end), tuple(spans))

    def parse_delta(self) -> RDelta:
        word = self.advance()
        if not (self.at("_") and self.tok.start == word.end) and not self.at("["):
            raise self.error(
                f"{word.text!r} is the Kronecker delta and needs indices, e.g. {word.text}_ij",
                word.span,
                hint=f"write {word.text}_ij; a tensor cannot be called {word.text!r}",
                cls=ReservedNameError,
            )
        indices, spans, end = self.parse_index_list(word, required=True, positions=True)
        if len(indices) < 2:
            raise self.error(
                f"{self.text[word.start : end]!r} has one index, but the Kronecker delta needs at least two",
                Span(word.start, end),
                hint=f"write {word.text}_ij for the Kronecker delta; {word.text!r} is reserved, "
                "so give a vector another name (d_i)",
                cls=ReservedNameError,
            )
        if self.at("(") and self.tok.start == end:
            raise self.unknown_operator(word, end)
        return RDelta(tuple(indices), Span(word.start, end), tuple(spans))

    def parse_call(self) -> RCall:
        word = self.advance()
        if self.at("_") and self.tok.start == word.end:
            raise self.error(
                f"the function {word.text!r} takes no indices",
                hint=f"apply it to an indexed expression: {word.text}(x_i)",
                cls=ReservedNameError,
            )
        if not self.at("("):
            raise self.error(
                f"{word.text!r} is a function and cannot be used as a tensor",
                word.span,
                hint=f"call it as {word.text}(...), or give the tensor another name",
                cls=ReservedNameError,
            )
        open_tok = self.advance()
        if self.at(")"):
            raise self.error(f"{word.text}() needs an argument")
        self.enter(open_tok)
        arg = self.parse_expr()
        self.leave()
        if self.at(","):
            raise self.error(f"{word.text} takes one argument")
        close = self.close_paren(open_tok, f"{word.text}(...)")
        return RCall(word.text, arg, Span(word.start, close.end))


def _span(node) -> Span:
    return node.span


def _constant_value(node, parser: _Parser) -> Fraction | None:
    """The exact value of a raw tree made only of numbers, or None."""
    if isinstance(node, RConst):
        return node.value
    if isinstance(node, RAdd):
        values = [_constant_value(t, parser) for t in node.terms]
        if None in values:
            return None
        return _in_range(sum(values, Fraction(0)), node.span, parser.text)  # type: ignore[arg-type]
    if isinstance(node, RMul):
        out = Fraction(1)
        for f in node.factors:
            v = _constant_value(f, parser)
            if v is None:
                return None
            out *= v
        return _in_range(out, node.span, parser.text)
    if isinstance(node, RPow):
        v = _constant_value(node.base, parser)
        if v == 0 and node.exponent < 0:
            raise _division_by_zero(node.span, parser.text)
        if v is None or node.exponent.denominator != 1:
            return None
        return _constant_power(v, node.exponent, node.span, parser.text)
    return None


def _division_by_zero(span: Span, text: str) -> ParseError:
    return ParseError(
        "division by zero: a constant 0 to a negative power",
        source=text,
        spans=span,
        hint="a constant divisor must not be 0 (x / 0 and 0^-1 are refused)",
    )


_FLOAT_MAX = Fraction(1.7976931348623157e308)
_FLOAT_TINY = Fraction(5e-324) / 2  # below this a nonzero value rounds to 0.0


def _in_range(value: Fraction, span: Span, text: str) -> Fraction:
    """``value``, or a ParseError where float64 cannot hold it (constants folded while parsing)."""
    size = abs(value)
    if size > _FLOAT_MAX or (value != 0 and size < _FLOAT_TINY):
        way = "overflows float64 (largest about 1.8e308)" if size > 1 else "underflows float64 to 0"
        raise ParseError(
            f"these constants combine to a number that {way}",
            source=text,
            spans=span,
            hint="rescale the model so that its constants stay within float64's range",
        )
    return value


def _constant_power(value: Fraction, exponent: Fraction, span: Span, text: str) -> Fraction:
    """``value ** exponent`` for an integer exponent, refused before computing when out of range."""
    n = int(exponent)
    if value not in (0, 1, -1):
        size = math.log2(abs(value.numerator)) - math.log2(value.denominator)
        if abs(size * n) > 1100:  # 2^1100 > 1.8e308: out of range whatever the rounding
            _in_range(Fraction(2) ** (1100 if size * n > 0 else -1100), span, text)
        work = abs(n) * (abs(value.numerator).bit_length() + value.denominator.bit_length())
        if work > 1_000_000:
            raise ParseError(
                "this power of a constant is too large to compute exactly",
                source=text,
                spans=span,
                hint="compute the number numerically and write it as a literal",
            )
    return _in_range(value**n, span, text)


# ---------------------------------------------------------------- the summation rule


class _Occurrence:
    __slots__ = ("index", "path", "span", "binder")

    def __init__(self, index: str, path: tuple[int, ...], span: Span, binder):
        self.index = index
        self.path = path
        self.span = span
        self.binder = binder


def _occurrences(node, path, scope: dict, out: list) -> None:
    """Every index occurrence with its path and the binder (if any) that binds it."""
    if isinstance(node, (RTensor, RDelta)):
        for index, span in zip(node.indices, node.index_spans, strict=True):
            if isinstance(index, RTensor):  # a lookup y[n]: its indices occur here
                for inner, inner_span in zip(index.indices, index.index_spans, strict=True):
                    out.append(_Occurrence(inner, path, inner_span, scope.get(inner)))
                continue
            if isinstance(index, RAffine):  # X[n, i+k]: each name of the position occurs here
                for (_, inner), inner_span in zip(index.terms, index.term_spans, strict=True):
                    out.append(_Occurrence(inner, path, inner_span, scope.get(inner)))
                continue
            out.append(_Occurrence(index, path, span, scope.get(index)))
        return
    if isinstance(node, RTransform):
        # softmax_k(e) keeps k: its subscript is an occurrence of k where it stands.
        for index, span in zip(node.indices, node.index_spans, strict=True):
            out.append(_Occurrence(index, path, span, scope.get(index)))
    if isinstance(node, RBinder):
        if node.kind == "inv":
            # A transform: outside, inv_ij(...) is an occurrence of i and j; inside, they
            # are the matrix's axes, local to its parentheses (never summed there).
            for index, span in zip(node.indices, node.index_spans, strict=True):
                out.append(_Occurrence(index, path, span, scope.get(index)))
        scope = dict(scope)
        for index in node.indices:
            scope[index] = node
    for k, child in enumerate(raw_children(node)):
        _occurrences(child, path + (k,), scope, out)


def _binders(node, path=(), out=None) -> list:
    out = [] if out is None else out
    if isinstance(node, RBinder):
        out.append((node, path))
    for k, child in enumerate(raw_children(node)):
        _binders(child, path + (k,), out)
    return out


def _common_prefix(paths: list[tuple[int, ...]]) -> tuple[int, ...]:
    first = paths[0]
    n = len(first)
    for p in paths[1:]:
        n = min(n, len(p))
        for k in range(n):
            if p[k] != first[k]:
                n = k
                break
    return first[:n]


def _node_at(root, path):
    node = root
    for k in path:
        node = raw_children(node)[k]
    return node


def apply_summation_rule(target: RTensor, rhs, text: str) -> E.Expr:
    """Check the index rules of one statement and build its explicit expression."""
    free = target.indices
    seen: dict[str, Span] = {}
    for index, span in zip(target.indices, target.index_spans, strict=True):
        if isinstance(index, RAffine):
            raise IndexRuleError(
                f"the target {target.name!r} has an index position {index!r}, not a name",
                source=text,
                spans=span,
                hint="a target's indices are names; write the arithmetic on the right: Y[n, i] = X[n, i+k] K[k]",
            )
        if isinstance(index, RTensor):
            raise IndexRuleError(
                f"the target {target.name!r} is indexed by the integer tensor {index.name!r}",
                source=text,
                spans=span,
                hint="a target's indices are names; a scatter is written as a sum with a delta: "
                f"A[c] = sum_n(g[n] δ[c, {index.name}[n]])",
            )
        if index in seen:
            raise IndexRuleError(
                f"target index {index!r} is repeated",
                source=text,
                spans=[seen[index], span],
                hint="target indices must be distinct; to take a diagonal write d_i = A_ii",
            )
        seen[index] = span

    occurrences: list[_Occurrence] = []
    _occurrences(rhs, (), {}, occurrences)

    # Binders: their indices occur inside, nowhere else, and are not target indices.
    binder_list = _binders(rhs)
    binder_at = {path: binder for binder, path in binder_list}
    for other, other_path in binder_list:
        # A binder inside another that binds one of the same indices (check its ancestors).
        for depth in range(len(other_path) if other.kind != "inv" else 0):
            binder = binder_at.get(other_path[:depth])
            shared = set(binder.indices) & set(other.indices) if binder is not None else set()
            if shared:
                index = sorted(shared)[0]
                raise IndexRuleError(
                    f"index {index!r} is bound twice, one {other.kind} inside the other",
                    source=text,
                    spans=[
                        binder.index_spans[binder.indices.index(index)],
                        other.index_spans[other.indices.index(index)],
                    ],
                    hint="rename the inner index: a bound index is local to its parentheses",
                )
    bound_inside = {(o.index, id(o.binder)) for o in occurrences if o.binder is not None}
    _check_transforms(rhs, text)
    for binder, _ in binder_list:
        word = binder.kind
        for index, span in zip(binder.indices, binder.index_spans, strict=True):
            if index in free and binder.kind != "inv":
                raise IndexRuleError(
                    f"index {index!r} is bound by {word}_{index}(...) but is also a target index",
                    source=text,
                    spans=[span, target.index_spans[free.index(index)]],
                    hint=f"a bound index disappears; remove {index!r} from the target or from {word}",
                )
            if (index, id(binder)) not in bound_inside:
                raise IndexRuleError(
                    f"{word}_{index}(...) binds {index!r}, but {index!r} does not occur inside it",
                    source=text,
                    spans=binder.span,
                    hint=f"use {index!r} inside the parentheses, or remove it from {word}"
                    if binder.kind not in LINALG else
                    f"{word}_{''.join(binder.indices)}(e) is over the matrix whose rows and columns "
                    f"are indices of e: write e with both, e.g. {word}_ij(A_ij)",
                )

    occurring = {o.index for o in occurrences}
    for index, span in zip(target.indices, target.index_spans, strict=True):
        if index not in occurring:
            unused = sorted({o.index for o in occurrences if o.binder is None and o.index not in free})
            hint = "every target index must appear on the right-hand side"
            if unused:
                hint += f"; did you mean one of the summed indices {', '.join(map(repr, unused))}?"
            raise IndexRuleError(
                f"target index {index!r} does not occur on the right-hand side",
                source=text,
                spans=span,
                hint=hint,
            )

    implicit: dict[str, list[_Occurrence]] = {}
    for o in occurrences:
        if o.binder is None and o.index not in free:
            implicit.setdefault(o.index, []).append(o)
    sums_at: dict[tuple[int, ...], list[str]] = {}
    binder_indices = {i for binder, _ in binder_list for i in binder.indices}

    def place(index: str, occs: list[_Occurrence]) -> None:
        lca = _common_prefix([o.path for o in occs])
        node = _node_at(rhs, lca)
        if isinstance(node, RAdd):
            # Einstein convention: each term of a sum sums its own occurrences, so in
            # sum_i(f(X_ij w_j)) + w_j w_j the two j's are two separate sums.
            by_term: dict[int, list[_Occurrence]] = {}
            for o in occs:
                by_term.setdefault(o.path[len(lca)], []).append(o)
            for group in by_term.values():
                place(index, group)
            return
        if index in binder_indices:
            _check_no_shadowing(index, lca, occs[0].span, binder_list, text)
        sums_at.setdefault(lca, []).append(index)
        if len(occs) == 1:
            _warn_if_hidden_inside(rhs, lca, index, occs[0], text)

    for index, occs in implicit.items():
        place(index, occs)

    taken = {o.index for o in occurrences} | set(free)
    return _build(rhs, (), sums_at, text, taken)


def _check_transforms(node, text: str) -> None:
    """Every index a transform keeps (softmax_k) occurs inside its parentheses."""
    if isinstance(node, RTransform):
        inside: list[_Occurrence] = []
        _occurrences(node.body, (), {}, inside)
        for index, span in zip(node.indices, node.index_spans, strict=True):
            if index not in {o.index for o in inside}:
                raise IndexRuleError(
                    f"{node.kind}_{index}(...) is taken over {index!r}, but {index!r} does not occur inside it",
                    source=text,
                    spans=[span, node.span],
                    hint=f"use {index!r} inside the parentheses, e.g. {node.kind}_{index}(z_{index})",
                )
    for child in raw_children(node):
        _check_transforms(child, text)


def _check_no_shadowing(index: str, lca: tuple[int, ...], span: Span, binder_list, text: str) -> None:
    """An implicit sum over ``index`` may not enclose a binder of the same name."""
    for binder, path in binder_list:
        if index in binder.indices and path[: len(lca)] == lca and binder.kind != "inv":
            raise IndexRuleError(
                f"index {index!r} is summed implicitly around {binder.kind}_{index}(...), "
                f"which binds {index!r} again",
                source=text,
                spans=[span, binder.index_spans[binder.indices.index(index)]],
                hint=f"rename one of them: the {index!r} bound by {binder.kind} is local to its parentheses",
            )


#: How many warnings parsing has issued in this process (ProgramBuilder.build parses a
#: chunk again, to warn with the whole program's positions, when parsing it warned).
warnings_issued = 0


def _note_warning() -> None:
    global warnings_issued
    warnings_issued += 1


def _warn_if_hidden_inside(rhs, lca, index, occ: _Occurrence, text: str) -> None:
    """``L = log(p_i)`` sums inside the log: legal, but rarely what was meant."""
    node = rhs
    for depth in range(len(lca)):
        if isinstance(node, (RCall, RPow, RTransform, RChoose, RCompare)) or (
            isinstance(node, RBinder) and node.kind != "sum"
        ):
            if isinstance(node, RCall):
                what = node.fn
            elif isinstance(node, RChoose):
                what = node.op
            elif isinstance(node, RPow):
                what = "a power"
            elif isinstance(node, RCompare):
                what = "a comparison"
            else:
                what = node.kind
            where = f"{what}(...)" if isinstance(node, (RCall, RBinder, RTransform, RChoose)) else what
            _note_warning()
            warnings.warn(
                SurprisingSumWarning(
                    f"index {index!r} occurs once, inside {where}: it is summed inside, "
                    f"before {what} is applied\n{caret_excerpt(text, [occ.span])}\n"
                    f"  hint: to apply {what} to each element and then sum, write sum_{index}(...) "
                    f"around it, e.g. L = sum_i(log(p_i))"
                ),
                stacklevel=user_stacklevel(),
            )
            return
        node = raw_children(node)[lca[depth]]


def _lookup_tensor(node: RTensor) -> E.Tensor:
    return E.Tensor(node.name, node.indices, node.span)  # type: ignore[arg-type]


def _build_gather(node: RTensor, taken: set[str]) -> E.Expr:
    """``Z[n, y[n]]`` as ``Σ_c Z[n,c] δ[c, y[n]]``, ``c`` a new name (LANGUAGE.md §10)."""
    indices: list[str] = []
    picks: list[E.Expr] = []
    for index in node.indices:
        if isinstance(index, RTensor):
            c = fresh_index(taken, "c")
            taken.add(c)
            indices.append(c)
            picks.append(E.Pick(c, _lookup_tensor(index), index.span))
        elif isinstance(index, RAffine):
            j = fresh_index(taken, "j")
            taken.add(j)
            indices.append(j)
            picks.append(E.Shift(j, index.terms, index.offset, index.span))
        else:
            indices.append(index)
    body = E.mul(E.Tensor(node.name, tuple(indices), node.span), *picks)
    return E.sum_([p.index for p in picks], body)  # type: ignore[attr-defined]


def _build_pick(node: RDelta, text: str) -> E.Expr:
    """``δ[c, y[n]]``: the one-hot delta of a lookup (a name and one lookup, in either order)."""
    names = [i for i in node.indices if isinstance(i, str)]
    positions = [i for i in node.indices if isinstance(i, RAffine)]
    if positions:
        if len(names) != 1 or len(positions) != 1 or len(node.indices) != 2:
            raise IndexRuleError(
                "a delta with an index position takes exactly one index name and one position",
                source=text,
                spans=node.span,
                hint="write δ[j, i+k]",
            )
        return E.Shift(names[0], positions[0].terms, positions[0].offset, node.span)
    lookups = [i for i in node.indices if isinstance(i, RTensor)]
    if len(names) != 1 or len(lookups) != 1:
        raise IndexRuleError(
            "a delta with an integer tensor among its positions takes exactly one index name and one lookup",
            source=text,
            spans=node.span,
            hint="write δ[c, y[n]]",
        )
    return E.Pick(names[0], _lookup_tensor(lookups[0]), node.span)


def _build(node, path, sums_at, text: str, taken: set[str] | None = None) -> E.Expr:
    """The explicit expression for ``node``, inserting the implicit sums."""
    taken = set() if taken is None else taken
    children = [_build(c, path + (k,), sums_at, text, taken) for k, c in enumerate(raw_children(node))]

    summed = sums_at.get(path, [])
    if isinstance(node, RMul):
        factors: list[E.Expr] = []
        for child in children:
            factors.extend(child.factors if isinstance(child, E.Mul) else (child,))
        constants = [f.value for f in factors if isinstance(f, E.Const)]
        if len(constants) > 1:  # folded into one by E.mul: 1e300 1e300 x
            _in_range(math.prod(constants, start=Fraction(1)), node.span, text)
        if summed:
            return _sum_connected_factors(factors, summed)
        return E.mul(*factors)
    if isinstance(node, RTensor) and not all(isinstance(i, str) for i in node.indices):
        built: E.Expr = _build_gather(node, taken)
    elif isinstance(node, RDelta) and not all(isinstance(i, str) for i in node.indices):
        built = _build_pick(node, text)
    elif isinstance(node, RTensor):
        built = E.Tensor(node.name, node.indices, node.span)
    elif isinstance(node, RDelta):
        built = E.Delta(node.indices, node.span)
    elif isinstance(node, RConst):
        built = E.Const(node.value)
    elif isinstance(node, RSize):
        built = E.Size(node.index)
    elif isinstance(node, RAdd):
        built = E.add(*children)
        _check_folded(built, node.span, text)
    elif isinstance(node, RPow):
        base = children[0]
        if base == E.ZERO and node.exponent < 0:
            raise _division_by_zero(node.span, text)
        if isinstance(base, E.Const) and node.exponent.denominator == 1:
            built = E.Const(_constant_power(base.value, node.exponent, node.span, text))
        else:
            built = E.power(base, node.exponent)
        if isinstance(built, E.Pow):  # (x^1e300)^1e300 merges into one exponent
            _in_range(built.exponent, node.span, text)
    elif isinstance(node, RCall):
        built = E.call(node.fn, children[0])
    elif isinstance(node, RBinder) and node.kind in LINALG:
        built = E.MatFn(node.kind, node.indices, children[0], node.span)
    elif isinstance(node, RBinder):
        built = _binder(node.kind, node.indices, children[0])
    elif isinstance(node, RTransform):
        built = softmax(node.indices, children[0])
    elif isinstance(node, RChoose):
        built = E.choose(node.op, *children)
    elif isinstance(node, RCompare):
        built = E.compare(node.op, children[0], children[1])
    else:  # pragma: no cover - the parser builds no other node
        raise AssertionError(node)
    return E.sum_(summed, built) if summed else built


def _binder(kind: str, indices: tuple[str, ...], body: E.Expr) -> E.Expr:
    """The node a reduction ``kind_{indices}(body)`` stands for (names.REDUCTIONS)."""
    if kind == "logsumexp":
        return E.logsumexp(indices, body)
    if kind in ("max", "min"):
        return E.reduce_(kind, indices, body)
    if kind == "mean":
        return mean(indices, body)
    return E.sum_(indices, body)


def mean(indices, body: E.Expr) -> E.Expr:
    """``mean_K(e)`` is ``Σ_K (|k|^-1 … e)``: one factor 1/|k| per index, inside the sum.

    The printers write this exact form back as ``mean_K(e)`` (docs/language.md).
    """
    bound = sorted(dict.fromkeys(indices))
    return E.sum_(bound, E.mul(*(E.power(E.Size(k), -1) for k in bound), body))


def softmax(indices, body: E.Expr) -> E.Expr:
    """``softmax_K(e)`` is ``exp(e - logsumexp_K(e))``, the log-sum-exp binding ``K`` again.

    Inside the log-sum-exp ``K`` is bound; outside it stays free.  The printers write
    this exact form back as ``softmax_K(e)``; the derivatives and the compiled softmax
    (codegen.rewrite.softmax_parts) are those of the log-sum-exp.
    """
    return E.call("exp", E.add(body, E.neg(E.logsumexp(indices, body))))


def _check_folded(e: E.Expr, span: Span, text: str) -> None:
    """Constants folded together (``x + 1e308 + 1e308``) must stay within float64's range."""
    for part in e.children if isinstance(e, E.Add) else (e,):
        if isinstance(part, E.Const):
            _in_range(part.value, span, text)


def _sum_connected_factors(factors: list[E.Expr], summed: list[str]) -> E.Expr:
    """Wrap each group of factors linked by summed indices in one sum, in place."""
    group_of = list(range(len(factors)))

    def find(k: int) -> int:
        while group_of[k] != k:
            group_of[k] = group_of[group_of[k]]
            k = group_of[k]
        return k

    for index in summed:
        holders = [k for k, f in enumerate(factors) if index in f.free]
        for k in holders[1:]:
            group_of[find(k)] = find(holders[0])
    groups: dict[int, list[int]] = {}
    indices_of: dict[int, list[str]] = {}
    for k in range(len(factors)):
        groups.setdefault(find(k), []).append(k)
    for index in summed:
        holders = [k for k, f in enumerate(factors) if index in f.free]
        indices_of.setdefault(find(holders[0]), []).append(index)
    if len(groups) == 1 or any(len(g) == len(factors) for g in groups.values()):
        return E.sum_(summed, E.mul(*factors))
    out: list[E.Expr] = []
    for k, factor in enumerate(factors):
        root = find(k)
        if root not in indices_of:
            out.append(factor)
        elif groups[root][0] == k:
            out.append(E.sum_(indices_of[root], E.mul(*(factors[m] for m in groups[root]))))
    return E.mul(*out)


def _warn_if_matrix_notation(target: RTensor, rhs, span: Span, text: str) -> None:
    """``Y = X W + b``: legal (a product of scalars), but it looks like pasted matrix algebra.

    Warns when a statement has no index anywhere, assigns a capitalised name and
    multiplies two or more capitalised names (matrices are written in capitals).
    """
    if not target.name[0].isupper():
        return
    stack = [rhs]
    capitals: list[RTensor] = []
    while stack:
        node = stack.pop()
        if isinstance(node, (RTensor, RDelta, RSize, RBinder)):
            if not isinstance(node, RTensor) or node.indices:
                return  # indices somewhere: index notation
            continue
        if isinstance(node, RMul):
            named = [f for f in node.factors if isinstance(f, RTensor) and f.name[0].isupper()]
            if len(named) > len(capitals):
                capitals = named
        stack.extend(raw_children(node))
    if len(capitals) < 2:
        return
    product = " ".join(f.name for f in capitals)
    _note_warning()
    warnings.warn(
        MatrixNotationWarning(
            f"{target.name} = ... has no indices, so {product} is a product of scalars, "
            f"not a matrix product\n{caret_excerpt(text, [c.span for c in capitals])}\n"
            "  hint: eingrad reads index notation: write the matrix product with indices, "
            "e.g. Y_nh = X_nd W_dh + b_h (see docs/language.md)"
        ),
        stacklevel=user_stacklevel(),
    )


# ---------------------------------------------------------------- entry points


def _without_bom(text: str) -> str:
    """The text without the UTF-8 byte-order mark an editor may leave at its start
    (so that columns and excerpts are those the user sees)."""
    return text[1:] if text.startswith("\ufeff") else text


def parse_program(text: str) -> Program:
    """Parse program text into a :class:`Program` with explicit sums."""
    if not isinstance(text, str):
        raise TypeError(f"parse() takes the program text as a str, got {type(text).__name__}")
    text = _without_bom(text)
    parser = _Parser(text)
    statements = []
    for target, rhs, span in parser.parse_program():
        if not target.indices:
            _warn_if_matrix_notation(target, rhs, span, text)
        expr = apply_summation_rule(target, rhs, text)
        statements.append(Statement(target.name, target.indices, expr, span, target.span))
    if not statements:
        raise ParseError("the program is empty", source=text, spans=Span(0, len(text)),
                         hint="write at least one statement, e.g. y_i = A_ij x_j")
    return Program(tuple(statements), text)


def parse_expression(text: str, free: tuple[str, ...] | list[str] = ()) -> E.Expr:
    """Parse one right-hand side whose free indices are ``free`` (used by printers and tests)."""
    text = _without_bom(text)
    parser = _Parser(text)
    rhs = parser.parse_expr()
    if parser.tok.kind not in ("SEP", "EOF"):
        raise parser.error(f"unexpected {parser.describe(parser.tok)} after the expression")
    span = Span(0, 0)
    target = RTensor("_", tuple(free), span, tuple(span for _ in free))
    return apply_summation_rule(target, rhs, text)
