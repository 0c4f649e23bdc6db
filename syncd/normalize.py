"""Comparison keys for text: what two channels must agree on, not how they spell it.

Text is stored as received; these keys are only for hashing and comparing.
The cleaning order follows the survey of real guides (DOMAIN.md §3): unescape
HTML repeatedly, breaks to newlines, strip tags, drop control characters,
fold full/half width, unify dashes and brackets, collapse whitespace, and read
placeholders (无, /, 暂无 …) as empty.
"""

from __future__ import annotations

import html
import re
import unicodedata
from functools import lru_cache

PLACEHOLDERS = frozenset({"", "无", "/", "／", "-", "—", "暂无", "null", "NULL", "None", "无。"})

_TAG = re.compile(r"<[^>]{0,200}>")
_BREAK = re.compile(r"<\s*(br|/p|p)\s*/?\s*>", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SPACE = re.compile(r"\s+")
_DASHES = str.maketrans({"—": "-", "–": "-", "‐": "-", "‑": "-", "―": "-", "−": "-",
                         "〔": "[", "〕": "]", "【": "[", "】": "]", "“": '"', "”": '"',
                         "‘": "'", "’": "'"})
#: what NFKC and then ``_DASHES`` make of the commonest foldable characters (full-width
#: ASCII forms, the ideographic space, dashes, brackets, quotes): a regex replaces the
#: few of them a text holds far faster than NFKC reads the whole text
_FOLDS = {chr(c): chr(c - 0xFEE0) for c in range(0xFF01, 0xFF5F)} | {"\u3000": " "} | {
    chr(k): v for k, v in _DASHES.items()}
_FOLD = re.compile("[" + "".join(re.escape(c) for c in _FOLDS) + "]")
#: anything the cleaning below would change: an entity or tag, a control or foldable
#: character, whitespace other than single inner spaces. Most texts have none, and one
#: search (with an NFKC check) tells so far faster than running every step.
_WORK = re.compile(r"[&<\x00-\x1f\x7f-\x9f" + "".join(re.escape(c) for c in _FOLDS)
                   + r"]|\s\s|[^\S ]|^\s|\s$")
_PHONE_SEP = re.compile(r"(?<=\d)[\s\-]+(?=\d)")
_WORKDAYS = re.compile(r"^(\d+)\s*个?(工作日|自然日|日|天)$")


def is_placeholder(value: object) -> bool:
    """True for None and for the placeholders guides use instead of leaving a blank."""
    if value is None:
        return True
    if isinstance(value, str):
        return text_key(value) == ""
    return False


@lru_cache(maxsize=1 << 14)  # guides repeat boilerplate (hours, addresses, bases) endlessly
def text_key(value: str | None) -> str:
    """The comparison key of a free-text field."""
    if not value:
        return ""
    if _WORK.search(value) is None and unicodedata.is_normalized("NFKC", value):
        return "" if value in PLACEHOLDERS else value
    s = value
    for _ in range(3):  # doubly escaped text (&amp;amp;) is common
        unescaped = html.unescape(s)
        if unescaped == s:
            break
        s = unescaped
    if "<" in s:
        s = _BREAK.sub("\n", s)
        s = _TAG.sub("", s)
    s = _CONTROL.sub("", s)
    s = _FOLD.sub(_fold, s)
    if not unicodedata.is_normalized("NFKC", s):  # anything else NFKC would change
        s = unicodedata.normalize("NFKC", s).translate(_DASHES)
    s = _SPACE.sub(" ", s).strip()
    return "" if s in PLACEHOLDERS else s


def _fold(match: re.Match[str]) -> str:
    return _FOLDS[match[0]]


@lru_cache(maxsize=1 << 14)
def phone_key(value: str | None) -> str:
    """Phones: ``0777—6428820`` and ``0777-642 8820`` compare equal."""
    s = text_key(value)
    return _PHONE_SEP.sub("", s)


def limit_key(value: object) -> str:
    """Time limits: ``20``, ``"20"`` and ``"20个工作日"`` compare equal (unit is its own field)."""
    if value is None:
        return ""
    s = text_key(str(value))
    m = _WORKDAYS.match(s)
    return m.group(1) if m else s
