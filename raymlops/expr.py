"""Safe row expressions for filters, derived columns and validation rules (pure: no Ray).

Below every layer: the config checks an expression when it is loaded, ``data/`` evaluates it.

An expression such as ``income > 0 or status == 'student'`` is parsed with :mod:`ast` and
checked against a whitelist; it is never given to ``eval``. What is allowed:

- column names (``age``), or ``col('odd name')`` for names that are not identifiers;
- numbers, strings, ``True``/``False``/``None``;
- ``+ - * / **``, unary ``-``; ``/`` is true division (always floating point);
- comparisons ``== != < <= > >=`` (chains too: ``0 <= p <= 1``), ``x in (1, 2)``,
  ``x not in ['a', 'b']``, ``x is None``, ``x is not None``;
- ``and``, ``or``, ``not`` (SQL three-valued logic: ``null or True`` is True);
- the functions in :data:`FUNCTIONS` (``abs``, ``log``, ``sqrt``, ``is_null``, ``where`` …).

Attribute access, indexing, keyword arguments, lambdas, comprehensions and calls to any other
function are refused with a :class:`ValidationError` naming what was found. A parsed
:class:`Expression` is evaluated column-wise with :mod:`pyarrow.compute` on an Arrow table or
record batch (one Ray Data batch), so it is vectorised and never loops over rows in Python.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from raymlops.exceptions import ValidationError

__all__ = ["FUNCTIONS", "Expression", "parse", "quote_hint", "referenced_columns"]


def quote_hint(name: str) -> str:
    """What a bare word that is no column usually is: text left unquoted (``status == student``)."""
    return f"; to compare with the text {name}, quote it: '{name}'"


MAX_LENGTH = 4000
MAX_NODES = 500

Value: TypeAlias = Any  # a pyarrow Array, ChunkedArray or Scalar
Table: TypeAlias = pa.Table | pa.RecordBatch


def _float(x: Value) -> Value:
    t = x.type
    if pa.types.is_floating(t):
        return x
    return pc.cast(x, pa.float64())


def _round(x: Value, ndigits: Value = None) -> Value:
    digits = 0 if ndigits is None else ndigits
    return pc.round(x, ndigits=int(digits.as_py()) if isinstance(digits, pa.Scalar) else int(digits))


#: name → (pyarrow.compute implementation, fewest arguments, most arguments (None: any))
FUNCTIONS: dict[str, tuple[Callable[..., Value], int, int | None]] = {
    "abs": (pc.abs_checked, 1, 1),
    "sqrt": (lambda x: pc.sqrt(_float(x)), 1, 1),
    "log": (lambda x: pc.ln(_float(x)), 1, 1),
    "log2": (lambda x: pc.log2(_float(x)), 1, 1),
    "log10": (lambda x: pc.log10(_float(x)), 1, 1),
    "log1p": (lambda x: pc.log1p(_float(x)), 1, 1),
    "exp": (lambda x: pc.exp(_float(x)), 1, 1),
    "floor": (pc.floor, 1, 1),
    "ceil": (pc.ceil, 1, 1),
    "round": (_round, 1, 2),
    "min": (lambda *xs: pc.min_element_wise(*xs), 2, None),
    "max": (lambda *xs: pc.max_element_wise(*xs), 2, None),
    "is_null": (lambda x: pc.is_null(x, nan_is_null=True), 1, 1),
    "not_null": (lambda x: pc.invert(pc.is_null(x, nan_is_null=True)), 1, 1),
    "coalesce": (lambda *xs: pc.coalesce(*xs), 1, None),
    "where": (lambda c, a, b: pc.if_else(c, a, b), 3, 3),
    "lower": (pc.utf8_lower, 1, 1),
    "upper": (pc.utf8_upper, 1, 1),
    "length": (pc.utf8_length, 1, 1),
}

_BINOPS: dict[type[ast.operator], tuple[str, Callable[[Value, Value], Value]]] = {
    ast.Add: ("+", pc.add_checked),
    ast.Sub: ("-", pc.subtract_checked),
    ast.Mult: ("*", pc.multiply_checked),
    ast.Div: ("/", lambda a, b: pc.divide(_float(a), _float(b))),
    ast.Pow: ("**", lambda a, b: pc.power(_float(a), _float(b))),
}
_COMPARE: dict[type[ast.cmpop], Callable[[Value, Value], Value]] = {
    ast.Eq: pc.equal,
    ast.NotEq: pc.not_equal,
    ast.Lt: pc.less,
    ast.LtE: pc.less_equal,
    ast.Gt: pc.greater,
    ast.GtE: pc.greater_equal,
}
_ALLOWED_HELP = (
    "allowed: column names, numbers, strings, True/False/None, comparisons, in/not in, is None, "
    "and/or/not, + - * / **, and the functions " + ", ".join(sorted([*FUNCTIONS, "col"]))
)

# a compiled node: table -> value
_Node = Callable[[Table], Value]


@dataclass(frozen=True)
class Expression:
    """A parsed, whitelisted expression; call :meth:`evaluate` on an Arrow table or batch."""

    text: str
    columns: tuple[str, ...] = field(compare=False)
    _fn: _Node = field(repr=False, compare=False)

    def evaluate(self, table: Table) -> Value:
        """The expression's value for every row: an Arrow array of ``table.num_rows`` values."""
        missing = [c for c in self.columns if c not in table.schema.names]
        if missing:
            raise ValidationError(
                f"expression {self.text!r}: column {missing[0]!r} not found (columns: {', '.join(table.schema.names)})"
                f"{quote_hint(missing[0])}"
            )
        try:
            out = self._fn(table)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            if isinstance(exc, ValidationError):
                raise
            raise ValidationError(f"expression {self.text!r}: {_arrow_message(exc)}") from None
        if isinstance(out, pa.Scalar):
            out = pa.repeat(out, table.num_rows)
        if isinstance(out, pa.ChunkedArray):
            out = out.combine_chunks() if out.num_chunks != 1 else out.chunk(0)
        return out

    def mask(self, table: Table) -> pa.Array:
        """Boolean mask of the rows where the expression is true; null (unknown) counts as false."""
        out = self.evaluate(table)
        if not pa.types.is_boolean(out.type):
            raise ValidationError(f"expression {self.text!r}: expected a true/false condition, found values of "
                                  f"type {out.type}")
        return pc.fill_null(out, False)


def _arrow_message(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "no kernel matching input types" in text:
        return f"cannot apply it to these column types ({text})"
    return text


def parse(text: str, what: str = "expression") -> Expression:
    """Parse and whitelist-check ``text``; :class:`ValidationError` names what is not allowed."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(f"{what}: expected a non-empty expression string, found {text!r}")
    if len(text) > MAX_LENGTH:
        raise ValidationError(f"{what}: expression longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValidationError(f"{what} {text!r}: not a valid expression ({exc.msg})") from None
    nodes = sum(1 for _ in ast.walk(tree))
    if nodes > MAX_NODES:
        raise ValidationError(f"{what} {text!r}: too complex ({nodes} syntax nodes, at most {MAX_NODES})")
    columns: list[str] = []
    fn = _Compiler(text, what, columns).compile(tree.body)
    return Expression(text=text, columns=tuple(dict.fromkeys(columns)), _fn=fn)


class _Compiler:
    def __init__(self, text: str, what: str, columns: list[str]) -> None:
        self.text = text
        self.what = what
        self.columns = columns

    def fail(self, message: str) -> ValidationError:
        return ValidationError(f"{self.what} {self.text!r}: {message}")

    def compile(self, node: ast.AST) -> _Node:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise self.fail(f"{_describe(node)} is not allowed ({_ALLOWED_HELP})")
        fn: _Node = method(node)
        return fn

    # -- leaves --------------------------------------------------------------------------------
    def _Name(self, node: ast.Name) -> _Node:
        if node.id in ("true", "false", "null"):  # YAML habits
            value = {"true": True, "false": False, "null": None}[node.id]
            return self._constant(value)
        return self._column(node.id)

    def _column(self, name: str) -> _Node:
        self.columns.append(name)
        return lambda t: t.column(name)

    def _Constant(self, node: ast.Constant) -> _Node:
        if node.value is not None and not isinstance(node.value, bool | int | float | str):
            raise self.fail(f"the constant {node.value!r} is not allowed (numbers, strings, True/False/None only)")
        return self._constant(node.value)

    @staticmethod
    def _constant(value: Any) -> _Node:
        scalar = pa.scalar(value)
        return lambda t: scalar

    # -- operators -----------------------------------------------------------------------------
    def _BoolOp(self, node: ast.BoolOp) -> _Node:
        parts = [self.compile(v) for v in node.values]
        op = pc.and_kleene if isinstance(node.op, ast.And) else pc.or_kleene

        def run(t: Table) -> Value:
            out = parts[0](t)
            for p in parts[1:]:
                out = op(out, p(t))
            return out

        return run

    def _UnaryOp(self, node: ast.UnaryOp) -> _Node:
        inner = self.compile(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda t: pc.invert(inner(t))
        if isinstance(node.op, ast.USub):
            return lambda t: pc.negate_checked(inner(t))
        if isinstance(node.op, ast.UAdd):
            return inner
        raise self.fail(f"the operator {type(node.op).__name__} is not allowed ({_ALLOWED_HELP})")

    def _BinOp(self, node: ast.BinOp) -> _Node:
        entry = _BINOPS.get(type(node.op))
        if entry is None:
            raise self.fail(f"the operator {type(node.op).__name__} is not allowed (+ - * / ** only)")
        op = entry[1]
        left, right = self.compile(node.left), self.compile(node.right)
        return lambda t: op(left(t), right(t))

    def _Compare(self, node: ast.Compare) -> _Node:
        steps: list[_Node] = []
        left_node = node.left
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            steps.append(self._compare_one(left_node, op, right_node))
            left_node = right_node

        def run(t: Table) -> Value:
            out = steps[0](t)
            for s in steps[1:]:
                out = pc.and_kleene(out, s(t))
            return out

        return run

    def _compare_one(self, left_node: ast.expr, op: ast.cmpop, right_node: ast.expr) -> _Node:
        left = self.compile(left_node)
        if isinstance(op, ast.Is | ast.IsNot):
            if not (isinstance(right_node, ast.Constant) and right_node.value is None):
                raise self.fail("'is' only compares with None ('x is None', 'x is not None')")
            if isinstance(op, ast.Is):
                return lambda t: pc.is_null(left(t), nan_is_null=True)
            return lambda t: pc.invert(pc.is_null(left(t), nan_is_null=True))
        if isinstance(op, ast.In | ast.NotIn):
            if not isinstance(right_node, ast.Tuple | ast.List | ast.Set):
                raise self.fail("'in' needs a literal list of values, e.g. status in ('a', 'b')")
            values = []
            for elt in right_node.elts:
                if not isinstance(elt, ast.Constant) or not isinstance(elt.value, bool | int | float | str | None):
                    raise self.fail(f"'in' lists may only hold constants, found {_describe(elt)}")
                values.append(elt.value)
            negate = isinstance(op, ast.NotIn)

            def member(t: Table) -> Value:
                x = left(t)
                if isinstance(x, pa.Scalar):
                    x = pa.repeat(x, t.num_rows)
                value_set = pa.array(values) if values else pa.array([], type=x.type)
                if not values or pa.types.is_null(value_set.type):
                    value_set = pa.array(values, type=x.type)
                out = pc.is_in(x, value_set=value_set)
                out = pc.if_else(pc.is_null(x), pa.scalar(None, pa.bool_()), out)
                return pc.invert(out) if negate else out

            return member
        cmp = _COMPARE.get(type(op))
        if cmp is None:
            raise self.fail(f"the comparison {type(op).__name__} is not allowed")
        right = self.compile(right_node)
        return lambda t: cmp(left(t), right(t))

    def _Call(self, node: ast.Call) -> _Node:
        if not isinstance(node.func, ast.Name):
            raise self.fail(f"calling {_describe(node.func)} is not allowed; allowed functions: "
                            + ", ".join(sorted([*FUNCTIONS, "col"])))
        name = node.func.id
        if node.keywords:
            raise self.fail(f"keyword arguments are not allowed ({name}(...))")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(f"*arguments are not allowed ({name}(...))")
        if name == "col":
            if len(node.args) != 1 or not (isinstance(node.args[0], ast.Constant)
                                           and isinstance(node.args[0].value, str)):
                raise self.fail("col() takes one string: the column name, e.g. col('unit price')")
            return self._column(node.args[0].value)
        entry = FUNCTIONS.get(name)
        if entry is None:
            raise self.fail(f"function {name!r} is not allowed; allowed functions: "
                            + ", ".join(sorted([*FUNCTIONS, "col"])))
        impl, lo, hi = entry
        n = len(node.args)
        if n < lo or (hi is not None and n > hi):
            want = str(lo) if lo == hi else f"{lo} or more" if hi is None else f"{lo} to {hi}"
            raise self.fail(f"{name}() takes {want} argument{'s' if want != '1' else ''}, found {n}")
        args = [self.compile(a) for a in node.args]
        return lambda t: impl(*(a(t) for a in args))


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"attribute access ('.{node.attr}')"
    if isinstance(node, ast.Subscript):
        return "indexing ('[...]')"
    if isinstance(node, ast.Lambda):
        return "lambda"
    if isinstance(node, ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
        return "a comprehension"
    if isinstance(node, ast.NamedExpr):
        return "assignment (':=')"
    if isinstance(node, ast.JoinedStr):
        return "an f-string"
    if isinstance(node, ast.IfExp):
        return "'x if c else y' (use where(c, x, y))"
    if isinstance(node, ast.Call):
        return "a call"
    return f"{type(node).__name__}"


def referenced_columns(expressions: Sequence[Expression]) -> list[str]:
    """Every column the expressions read, in first-use order."""
    return list(dict.fromkeys(c for e in expressions for c in e.columns))
