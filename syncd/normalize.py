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
_CONTROLS = "".join(map(chr, [*range(0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)]))
_DASHES = str.maketrans({"—": "-", "–": "-", "‐": "-", "‑": "-", "―": "-", "−": "-",
                         "〔": "[", "〕": "]", "【": "[", "】": "]", "“": '"', "”": '"',
                         "‘": "'", "’": "'"})
#: what NFKC and then ``_DASHES`` make of the commonest foldable characters (full-width
#: ASCII forms, the ideographic space, dashes, brackets, quotes), and control characters
#: (dropped): one regex pass replaces the few of them a text holds far faster than NFKC
#: reads the whole text
_FOLDS = {chr(c): chr(c - 0xFEE0) for c in range(0xFF01, 0xFF5F)} | {"\u3000": " "} | {
    chr(k): v for k, v in _DASHES.items()} | dict.fromkeys(_CONTROLS, "")
_FOLD = re.compile("[" + "".join(re.escape(c) for c in _FOLDS) + "]")
_PHONE_SEP = re.compile(r"(?<=\d)[\s\-]+(?=\d)")
_WORKDAYS = re.compile(r"^(\d+)\s*个?(工作日|自然日|日|天)$")


def is_placeholder(value: object) -> bool:
    """True for None and for the placeholders guides use instead of leaving a blank."""
    if value is None:
        return True
    if isinstance(value, str):
        return text_key(value) == ""
    return False


# guides repeat boilerplate (hours, addresses, bases) endlessly; a few thousand entries
# keep it (16,384 hit 1% more often over 100k items, and held 6 MB more in each reader)
@lru_cache(maxsize=1 << 12)
def text_key(value: str | None) -> str:
    """The comparison key of a free-text field."""
    if not value:
        return ""
    s = value
    if "&" in s:
        for _ in range(3):  # doubly escaped text (&amp;amp;) is common
            unescaped = html.unescape(s)
            if unescaped == s:
                break
            s = unescaped
    if "<" in s:
        s = _BREAK.sub("\n", s)
        s = _TAG.sub("", s)
    if not (s.isascii() and s.isprintable()):  # printable ASCII has nothing to fold
        s = _FOLD.sub(_fold, s)
        if not unicodedata.is_normalized("NFKC", s):  # anything else NFKC would change
            s = unicodedata.normalize("NFKC", s).translate(_DASHES)
    s = " ".join(s.split())  # runs of whitespace (str.isspace, as regex \s) to one space
    return "" if s in PLACEHOLDERS else s


def _fold(match: re.Match[str]) -> str:
    return _FOLDS[match[0]]


@lru_cache(maxsize=1 << 12)
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
