"""Typed settings sections: the rules a field's values obey and the check every section runs when built.

Dagster-free and free of the product's own sections, so a model module (``core/models/``) can declare its
settings table next to its fit function. :mod:`recsys_assets.settings` assembles the sections into the
settings file.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
import types
import zoneinfo
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin, get_type_hints


class SettingsError(ValueError):
    """The settings file has an unknown key, a value of the wrong type, or an invalid value."""


# ---------------------------------------------------------------------------------------------------
# Rules a field's values obey, declared in the field's annotation: ``Annotated[int, Range(gt=0)]``.


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


@dataclass(frozen=True)
class Range:
    """Finite numbers within bounds (``None`` = unbounded), or one of ``special`` values that mean
    something of their own (e.g. ``-1`` = the library's default); ``note`` explains them."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    special: tuple[float, ...] = ()
    note: str = ""

    def admits(self, value: Any) -> bool:
        if value in self.special:
            return True
        return (
            math.isfinite(value)
            and (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )

    def describe(self, kind: str) -> str:
        low = (
            ("[", ">=", self.ge)
            if self.ge is not None
            else ("(", ">", self.gt)
            if self.gt is not None
            else None
        )
        high = (
            ("]", "<=", self.le)
            if self.le is not None
            else (")", "<", self.lt)
            if self.lt is not None
            else None
        )
        if low and high:
            text = f"{kind} in {low[0]}{_number(low[2])}, {_number(high[2])}{high[0]}"
        elif low or high:
            _, op, bound = low or high  # type: ignore[misc]
            text = f"{kind} {op} {_number(bound)}"
        else:
            text = kind
        if self.special:
            text = " or ".join([*(_number(v) for v in self.special), text])
        return f"{text} ({self.note})" if self.note else text


KiB, MiB, GiB, TiB = 1024, 1024**2, 1024**3, 1024**4
# The units DuckDB's memory_limit understands (case-insensitive): 1000^i and 1024^i bytes.
_SIZE_UNITS = {
    **dict.fromkeys(("b", "byte", "bytes"), 1),
    **dict.fromkeys(("k", "kb", "kilobyte", "kilobytes"), 1000),
    **dict.fromkeys(("m", "mb", "megabyte", "megabytes"), 1000**2),
    **dict.fromkeys(("g", "gb", "gigabyte", "gigabytes"), 1000**3),
    **dict.fromkeys(("t", "tb", "terabyte", "terabytes"), 1000**4),
    "kib": KiB,
    "mib": MiB,
    "gib": GiB,
    "tib": TiB,
}
_SIZE = re.compile(r"\s*((?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*([a-z%]+)\s*", re.IGNORECASE)


def physical_memory_bytes() -> int | None:
    """This machine's physical memory in bytes, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def parse_size(value: str | float) -> int:
    """Bytes in a memory size written as DuckDB's ``memory_limit`` is: ``"3GiB"``, ``"500MB"``,
    ``"1.5 GB"`` (KB, MB, GB, TB = 1000^i bytes; KiB, MiB, GiB, TiB = 1024^i), ``"50%"`` of physical
    memory; a bare number (not a string) is GiB. Raises ``ValueError`` on anything else."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int | float):
        size = float(value) * GiB
    else:
        match = _SIZE.fullmatch(value)
        number, unit = (float(match.group(1)), match.group(2).lower()) if match else (math.nan, "")
        total = physical_memory_bytes()
        if unit == "%" and total is not None and number <= 100:
            size = total * number / 100
        else:
            size = number * _SIZE_UNITS.get(unit, math.nan)
    if not math.isfinite(size) or size <= 0:
        raise ValueError(f"not a size: {value!r}")
    return int(size)


def _format_size(n: float) -> str:
    return f"{n / GiB:.3g}GiB" if n >= GiB else f"{n / MiB:.3g}MiB"


@dataclass(frozen=True)
class MemorySize:
    """A memory size as :func:`parse_size` reads it, at least ``minimum`` bytes and at most this machine's
    physical memory; with ``allow_empty`` the empty string (= "derived", see the field) is allowed too."""

    minimum: int = 128 * MiB
    allow_empty: bool = False

    def admits(self, value: Any) -> bool:
        if self.allow_empty and value == "":
            return True
        try:
            size = parse_size(value)
        except ValueError:
            return False
        total = physical_memory_bytes()
        return size >= self.minimum and (total is None or size <= total)

    def describe(self, kind: str) -> str:
        total = physical_memory_bytes()
        upper = f" to this machine's {_format_size(total)}" if total is not None else ""
        text = (
            f'a size such as "3GiB", "500MB" or "50%" (of physical memory), or a number of GiB, from '
            f"{_format_size(self.minimum)}{upper}"
        )
        return f'"" or {text}' if self.allow_empty else text


@dataclass(frozen=True)
class TimeZone:
    """An IANA time zone name."""

    def admits(self, value: Any) -> bool:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return False
        return True

    def describe(self, kind: str) -> str:
        return 'a known time zone such as "UTC" or "Europe/Berlin"'


@dataclass(frozen=True)
class CronFields:
    """A cron expression of five fields (Dagster checks the fields themselves when it builds the schedule)."""

    def admits(self, value: Any) -> bool:
        return len(value.split()) == 5

    def describe(self, kind: str) -> str:
        return 'a cron expression of 5 fields such as "0 3 * * *"'


@dataclass(frozen=True)
class NonEmpty:
    """A string with something besides white space."""

    def admits(self, value: Any) -> bool:
        return bool(value.strip())

    def describe(self, kind: str) -> str:
        return "a non-empty string"


PositiveInt = Annotated[int, Range(gt=0)]
NonNegativeInt = Annotated[int, Range(ge=0)]
PositiveFloat = Annotated[float, Range(gt=0)]
NonNegativeFloat = Annotated[float, Range(ge=0)]
Fraction = Annotated[float, Range(ge=0, le=1)]
# Every seed reaches numpy and Annoy; Annoy's set_seed takes a C int.
Seed = Annotated[int, Range(ge=0, le=2**31 - 1)]
CPU_COUNT = os.cpu_count() or 1


class Section:
    """A settings table: checks every field against its declared type and rule when built, and stores
    ints given for float fields as floats (so equal settings have equal fingerprints). ``TABLE`` is the
    TOML table's name, used in messages."""

    TABLE: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            checked = _check_field(type(self), f.name, value)
            if checked is not value:
                object.__setattr__(self, f.name, checked)


# ---------------------------------------------------------------------------------------------------
# Checking values against the declarations.


@functools.cache
def _field_spec(cls: type, name: str) -> tuple[Any, tuple[Any, ...]]:
    """A field's base type and the rules declared for it in ``Annotated[...]``."""
    hint = get_type_hints(cls, include_extras=True)[name]
    if get_origin(hint) is Annotated:
        base, *rules = get_args(hint)
        return base, tuple(rules)
    return hint, ()


def _toml(value: Any) -> str:
    """``value`` as it would be written in TOML (shortened to stay on one line)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        # TOML's own spelling of the special floats; Python's repr of the others reads back in TOML.
        text = {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, list | tuple):
        text = "[" + ", ".join(_toml(v) for v in value) + "]"
    else:
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_KINDS = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    dict: "a table",
    list: "an array",
}


def _kind(value: Any) -> str:
    return next((text for t, text in _KINDS.items() if isinstance(value, t)), type(value).__name__)


def _coerce(base: Any, value: Any) -> tuple[bool, Any]:
    """Whether ``value`` has type ``base`` (an int is a float; a bool is not an int), and the value
    converted to it."""
    if get_origin(base) is Literal:
        return any(value == choice and type(value) is type(choice) for choice in get_args(base)), value
    allowed = get_args(base) if get_origin(base) is types.UnionType else (base,)
    if isinstance(value, bool):
        return bool in allowed, value
    if isinstance(value, int) and int not in allowed and float in allowed:
        return True, float(value)
    return isinstance(value, allowed), value


# What a value of a declared type must be, as a message says it (a float must also be finite).
_TYPE_NAMES = {
    bool: "true or false",
    int: "an integer",
    float: "a finite number",
    str: "a string",
    tuple: "an array",
    dict: "a table",
}


def _type_name(base: Any) -> str:
    """``base`` (a type or a union of types) in words, e.g. "a string or an integer"."""
    allowed = get_args(base) if get_origin(base) is types.UnionType else (base,)
    names = [_TYPE_NAMES.get(t) for t in allowed]
    return " or ".join(names) if all(names) else "a value"  # type: ignore[arg-type]


def _check_field(cls: type, name: str, value: Any) -> Any:
    """``value`` converted to the field's type; :class:`SettingsError` (one line: table, key, value and what
    is allowed) when it has the wrong type or breaks the field's rule."""
    base, rules = _field_spec(cls, name)
    typed, converted = _coerce(base, value)
    if get_origin(base) is Literal:
        allowed, admitted = "one of " + ", ".join(_toml(choice) for choice in get_args(base)), typed
    else:
        kind = _type_name(base)
        allowed = " and ".join(rule.describe(kind) for rule in rules) or kind
        finite = not isinstance(converted, float) or math.isfinite(converted)
        admitted = typed and finite and all(rule.admits(converted) for rule in rules)
    if admitted:
        return converted
    got = "" if typed or get_origin(base) is Literal else f" (got {_kind(value)})"
    raise SettingsError(f"[{cls.TABLE or cls.__name__}] {name} = {_toml(value)}: must be {allowed}{got}")
