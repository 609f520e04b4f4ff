"""Chapter parameters: parsing the notebook's ``parameters`` cell, coercing and validating values.

A chapter declares its parameters in one code cell tagged ``parameters``, one per line::

    trials: int = 20                 # >= 1 | Monte Carlo trials per point
    beta_grid: list[float] = [0, 1]  # in [0, 1] | minority ratios beta
    family: str = "gaussian"         # one of gaussian, laplace | class-conditional family
    seed: int = 0                    # >= 0 | master seed

The annotation gives the type, the value is the notebook's own default, and the comment holds an
optional constraint (before ``|``) and the one-line meaning shown by ``fairbook list``.
Constraints on a list apply to every element.
"""
from __future__ import annotations

import ast
import io
import json
import math
import re
import tokenize
from dataclasses import dataclass
from typing import Any

from ..errors import ParameterError

TYPES = ("int", "float", "bool", "str", "list[int]", "list[float]", "list[str]")


@dataclass(frozen=True)
class Constraint:
    """``>= x``, ``> x``, ``<= x``, ``< x``, ``in [a, b]`` or ``one of a, b, c``."""

    kind: str
    bounds: tuple

    @classmethod
    def parse(cls, text: str) -> "Constraint | None":
        text = text.strip()
        if not text:
            return None
        m = re.fullmatch(r"(>=|>|<=|<)\s*(\S+)", text)
        if m:
            return cls(m.group(1), (float(m.group(2)),))
        m = re.fullmatch(r"in\s*\[\s*(\S+)\s*,\s*(\S+)\s*\]", text)
        if m:
            return cls("in", (float(m.group(1)), float(m.group(2))))
        m = re.fullmatch(r"one of\s+(.+)", text)
        if m:
            return cls("one of", tuple(s.strip() for s in m.group(1).split(",")))
        raise ValueError(f"unknown constraint {text!r}")

    def holds(self, v: Any) -> bool:
        if self.kind == "one of":
            return str(v) in self.bounds
        if isinstance(v, float) and not math.isfinite(v):
            return False
        if self.kind == "in":
            return self.bounds[0] <= v <= self.bounds[1]
        x = self.bounds[0]
        return {">=": v >= x, ">": v > x, "<=": v <= x, "<": v < x}[self.kind]

    def describe(self) -> str:
        if self.kind == "in":
            return f"a value in [{_num(self.bounds[0])}, {_num(self.bounds[1])}]"
        if self.kind == "one of":
            return "one of " + ", ".join(self.bounds)
        return f"a value {self.kind} {_num(self.bounds[0])}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str
    default: Any
    meaning: str
    constraint: Constraint | None = None

    def allowed(self) -> str:
        what = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
                "list[int]": "a list of integers", "list[float]": "a list of numbers",
                "list[str]": "a list of strings"}[self.type]
        if self.constraint is None:
            return what
        each = " with every element " if self.type.startswith("list") else ", "
        return what + each + self.constraint.describe()

    def check(self, value: Any, chapter: str, source: str) -> Any:
        """Type-check ``value`` (already parsed) and its constraint; return the normalised value."""
        def fail(why: str) -> ParameterError:
            return ParameterError(
                f"parameter '{self.name}' of chapter '{chapter}' ({source}): {why}; "
                f"got {value!r}; allowed: {self.allowed()}")

        if self.type.startswith("list"):
            if not isinstance(value, (list, tuple)) or len(value) == 0:
                raise fail("expected a non-empty list")
            items = [_scalar(self.type[5:-1], v) for v in value]
            if any(i is None for i in items):
                raise fail(f"every element must be of type {self.type[5:-1]}")
            if self.constraint and not all(self.constraint.holds(i) for i in items):
                raise fail("an element is out of range")
            return items
        out = _scalar(self.type, value)
        if out is None:
            raise fail(f"expected type {self.type}")
        if self.constraint and not self.constraint.holds(out):
            raise fail("value out of range")
        return out


def _scalar(typ: str, v: Any) -> Any:
    """Normalise a parsed scalar to ``typ`` or return None when it is not of that type."""
    if typ == "bool":
        return v if isinstance(v, bool) else None
    if isinstance(v, bool):
        return None
    if typ == "int":
        return v if isinstance(v, int) else None
    if typ == "float":
        return float(v) if isinstance(v, (int, float)) else None
    if typ == "str":
        return v if isinstance(v, str) else None
    raise AssertionError(typ)


def parse_text(spec: ParamSpec, text: str) -> Any:
    """Parse a command-line string for ``spec`` (``-p name value``); type errors surface in ``check``."""
    t = text.strip()
    if spec.type == "bool":
        low = t.lower()
        return {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}.get(low, t)
    if spec.type.startswith("list"):
        if t.startswith("["):
            try:
                return json.loads(t)
            except json.JSONDecodeError:
                return t
        return [parse_scalar_text(spec.type[5:-1], s) for s in t.split(",") if s.strip()] or t
    return parse_scalar_text(spec.type, t)


def parse_scalar_text(typ: str, t: str) -> Any:
    t = t.strip()
    try:
        if typ == "int":
            return int(t)
        if typ == "float":
            return float(t)
    except ValueError:
        return t
    return t


def parse_parameters_cell(source: str, chapter: str) -> dict[str, ParamSpec]:
    """Read the ``parameters`` cell source into ``{name: ParamSpec}``; malformed lines are errors."""
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT}
    specs: dict[str, ParamSpec] = {}
    for node in ast.parse(source).body:
        where = f"chapter '{chapter}', parameters cell line {node.lineno}"
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value):
            raise ParameterError(f"{where}: every line must be 'name: type = value  # meaning'")
        typ = ast.unparse(node.annotation)
        if typ not in TYPES:
            raise ParameterError(f"{where}: type {typ!r} is not one of {', '.join(TYPES)}")
        comment = comments.get(node.lineno, "")
        if not comment:
            raise ParameterError(f"{where}: parameter '{node.target.id}' needs a '# meaning' comment")
        constraint_text, _, meaning = comment.rpartition("|")
        try:
            constraint = Constraint.parse(constraint_text)
        except ValueError as e:
            raise ParameterError(f"{where}: {e}") from None
        textual = typ in ("str", "list[str]")
        if constraint is not None and (constraint.kind == "one of") != textual:
            raise ParameterError(f"{where}: constraint '{constraint_text.strip()}' does not fit type "
                                 f"{typ} ('one of' is for strings, bounds for numbers)")
        spec = ParamSpec(node.target.id, typ, None, meaning.strip(), constraint)
        default = spec.check(ast.literal_eval(node.value), chapter, "notebook default")
        specs[spec.name] = ParamSpec(spec.name, typ, default, spec.meaning, constraint)
    return specs
