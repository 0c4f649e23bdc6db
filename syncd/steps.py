"""The steps a mapping chain is built from: each ``value -> value``, raising ``MappingError``.

Steps get the bare value; the mapping adds the channel, item and field to an
error. Each step is testable in a line.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, tzinfo
from typing import Any

from syncd.errors import MappingError

Step = Callable[[Any], Any]

_SPACES = re.compile(r"\s+")
_TAGS = re.compile(r"<[^>]{0,200}>")


def decode(encoding: str) -> Step:
    """Bytes from a legacy column (GBK stored in latin1/BLOB) to text, strictly;
    an empty string is an absent value."""

    def step(value: Any) -> Any:
        if value == "":
            return None
        if isinstance(value, bytes | bytearray | memoryview):
            try:
                text = bytes(value).decode(encoding)
            except UnicodeDecodeError as exc:
                raise MappingError(f"undecodable {encoding} bytes at offset {exc.start}: "
                                   f"{bytes(value)[exc.start:exc.start + 4]!r}") from None
            return text or None
        return value

    return step


def _text(fn: Callable[[str], str]) -> Step:
    def step(value: Any) -> Any:
        return fn(value) if isinstance(value, str) else value

    step.__doc__ = fn.__doc__
    step.text_fn = fn  # type: ignore[attr-defined]  # lets ``compose`` fuse text steps
    return step


def compose(chain: Sequence[Step]) -> Step:
    """One callable for a whole chain: what the mapping runs per value, so the per-field
    cost is a call or two rather than a loop. Adjacent text steps are fused into one."""
    fused: list[Step] = []
    for s in chain:
        fn = getattr(s, "text_fn", None)
        prev = getattr(fused[-1], "text_fn", None) if fused else None
        if fn is not None and prev is not None:
            fused[-1] = _text(lambda text, a=prev, b=fn: b(a(text)))
        else:
            fused.append(s)
    if not fused:
        return _identity
    if len(fused) == 1:
        return fused[0]
    if len(fused) == 2:
        first, second = fused
        return lambda value: second(first(value))
    if len(fused) == 3:
        first, second, third = fused
        return lambda value: third(second(first(value)))
    if len(fused) == 4:
        first, second, third, fourth = fused
        return lambda value: fourth(third(second(first(value))))
    if len(fused) == 5:
        first, second, third, fourth, fifth = fused
        return lambda value: fifth(fourth(third(second(first(value)))))

    def run(value: Any) -> Any:
        for s in fused:
            value = s(value)
        return value

    return run


def _identity(value: Any) -> Any:
    return value


def text_chain(fns: Sequence[Callable[[str], str]]) -> Callable[[str], str] | None:
    """The text functions of a chain as one ``str -> str`` (None when there are none)."""
    if not fns:
        return None
    if len(fns) == 1:
        return fns[0]

    def run(text: str) -> str:
        for fn in fns:
            text = fn(text)
        return text

    return run


def fast_read(slow: Step, *, text: Callable[[str], str] | None, kind: str,
              table: dict[str, Any] | None = None, sep: str | None = None,
              zone: tzinfo | None = None) -> Step:
    """``slow`` (a whole read chain) with a shortcut for the values most records hold.

    Mapping runs once per field of every record, so the chain's step-by-step calls
    are most of a sync's CPU. A non-empty string (or an int, or a datetime, for those
    kinds) takes one specialised function instead; anything else, including every
    value that fails, goes through ``slow``, so results and errors are the same.
    ``table`` must map to values already of the field's type (the caller checks).
    """
    if kind == "int" and table is None:
        def read_int(value: Any) -> Any:
            return value if value.__class__ is int else slow(value)
        return read_int
    if kind == "datetime":
        def read_datetime(value: Any) -> Any:
            if value.__class__ is datetime:
                return (value if value.tzinfo is not None
                        else value.replace(tzinfo=zone)).astimezone(UTC)
            return slow(value)
        return read_datetime
    if table is not None and sep is not None:
        def read_codes(value: Any) -> Any:
            if value.__class__ is str:
                s = text(value) if text else value
                if s:
                    try:
                        return tuple([table[p] for p in map(str.strip, s.split(sep)) if p])
                    except KeyError:
                        pass
            return slow(value)
        return remembered_text(read_codes)
    if table is not None and kind != "codes":
        def read_code(value: Any) -> Any:
            if value.__class__ is str:
                s = text(value) if text else value
                if s:
                    try:
                        return table[s]
                    except KeyError:
                        pass
            return slow(value)
        return remembered_text(read_code)
    if kind in ("text", "phone", "code"):
        def read_text(value: Any) -> Any:
            if value.__class__ is str:
                s = text(value) if text else value
                if s:
                    return s
            return slow(value)
        return read_text
    return slow


#: how many distinct texts a code field's reader remembers
TEXT_MEMORY = 1 << 12
_UNSEEN = object()


def remembered_text(read: Step, size: int = TEXT_MEMORY) -> Step:
    """``read`` (a code field's, which gives an immutable value) remembered for the texts
    it is given: a code column holds a handful of distinct values (XK, 是, 自然人,企业法人 …)
    on every record, each worth reading once. A text that fails to read raises each
    time and is not remembered; values of other types are read each time. Past ``size``
    texts, what is remembered is forgotten and remembering starts again."""
    memory: dict[str, Any] = {}
    get = memory.get

    def remembered(value: Any) -> Any:
        if value.__class__ is not str:
            return read(value)
        out = get(value, _UNSEEN)
        if out is _UNSEEN:
            out = read(value)
            if len(memory) >= size:
                memory.clear()
            memory[value] = out
        return out

    return remembered


def _halfwidth(s: str) -> str:
    """Full-width letters, digits, punctuation and U+3000 to ASCII (for codes and phones).
    ASCII is left as it is (NFKC does not change it), without NFKC's look at each
    character: most codes arrive in ASCII."""
    if s.isascii():
        return s
    return unicodedata.normalize("NFKC", s).replace("—", "-").replace("－", "-")


TEXT_STEPS: dict[str, Step] = {
    "trim": _text(str.strip),
    "fold_space": _text(lambda s: _SPACES.sub(" ", s).strip()),
    "halfwidth": _text(_halfwidth),
    "upper": _text(str.upper),
    "unescape_html": _text(html.unescape),
    "strip_tags": _text(lambda s: _TAGS.sub("", s)),
}


def empty_to_none(value: Any) -> Any:
    """An empty string is an absent value."""
    return None if value == "" else value


def split(sep: str) -> Step:
    """``"1,2"`` → ``["1", "2"]`` (empty parts dropped)."""

    def step(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, list | tuple):
            return list(value)
        return [p.strip() for p in str(value).split(sep) if p.strip()]

    return step


def join(sep: str) -> Step:
    """``("1", "2")`` → ``"1,2"``; an empty list is absent."""

    def step(value: Any) -> Any:
        return sep.join(map(str, value)) if value else None

    return step


def as_list(value: Any) -> Any:
    """Lists stay lists (JSON channels)."""
    return list(value) if value else None


def lookup(table: dict[Any, Any], table_name: str, *, many: bool = False) -> Step:
    """Translate through a code table; a value with no entry is an error, never a pass-through."""

    def one(value: Any) -> Any:
        key = value if isinstance(value, bool) else str(value)
        try:
            return table[key]
        except KeyError:
            raise MappingError(f"code {value!r} has no entry in code table {table_name}") from None

    def step(value: Any) -> Any:
        if value is None:
            return None
        if not many:
            return one(value)
        if isinstance(value, str):  # one code where a list may stand
            return [one(value)]
        return [one(v) for v in _codes_list(value)]

    return step


def default(fallback: Any) -> Step:
    """Use ``fallback`` when the channel has no value."""

    def step(value: Any) -> Any:
        return fallback if value is None else value

    return step


def _to_int(value: Any) -> Any:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise MappingError(f"expected a whole number, got {value!r}")


_TRUE = {"1", "true", "是", "y", "yes"}
_FALSE = {"0", "false", "否", "n", "no"}


def _to_bool(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise MappingError(f"expected a yes/no value, got {value!r}")


def to_text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _codes_list(value: Any) -> list[Any] | tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise MappingError(f"expected a list of codes, got {value!r}")
    return value


def _to_codes(value: Any) -> Any:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in _codes_list(value))


COERCE: dict[str, Step] = {
    "text": to_text,
    "phone": to_text,
    "code": to_text,
    "codes": _to_codes,
    "int": _to_int,
    "bool": _to_bool,
}


def to_datetime(zone: tzinfo, fmt: str | None) -> Step:
    """Channel time → aware UTC datetime; naive values are read in ``zone``."""

    def step(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, datetime):
            dt = value
        elif isinstance(value, date):
            dt = datetime(value.year, value.month, value.day)
        elif isinstance(value, str):
            try:
                dt = (datetime.strptime(value, fmt) if fmt and fmt != "iso"
                      else datetime.fromisoformat(value))
            except ValueError:
                raise MappingError(f"cannot read {value!r} as a date/time"
                                   + (f" in format {fmt!r}" if fmt else "")) from None
        else:
            raise MappingError(f"expected a date/time, got {value!r}")
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=zone)
        return dt.astimezone(UTC)

    return step


def from_datetime(zone: tzinfo, fmt: str | None) -> Step:
    """Aware datetime → the channel's form: ISO with offset, a formatted string, or naive local."""

    def step(value: Any) -> Any:
        if value is None:
            return None
        local = value.astimezone(zone)
        if fmt == "iso":
            return local.isoformat()
        if fmt:
            return local.strftime(fmt)
        return local.replace(tzinfo=None)

    return step
