"""The text comparison key: its fast folding must give what NFKC gives."""

from __future__ import annotations

import dataclasses
import html
import random
import re
import unicodedata

from syncd.normalize import _BREAK, _DASHES, _TAG, PLACEHOLDERS, text_key
from syncd.sample import generate

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SPACE = re.compile(r"\s+")


def _reference_key(value: str) -> str:
    """text_key as first written: NFKC over the whole text, then the dash table."""
    s = value
    for _ in range(3):
        unescaped = html.unescape(s)
        if unescaped == s:
            break
        s = unescaped
    if "<" in s:
        s = _TAG.sub("", _BREAK.sub("\n", s))
    s = _CONTROL.sub("", s)
    s = unicodedata.normalize("NFKC", s).translate(_DASHES)
    s = _SPACE.sub(" ", s).strip()
    return "" if s in PLACEHOLDERS else s


_ODD = ["Ａ\u0301", "ｅ\u0308x", "①㎡ﬁ", "\ufe58", "—\u0301", "\u3000\u3000无", "（１）", "０７７７—６４２８８２０",
        "“引号”【括号】〔2026〕", "e\u0301", "ｶﾞ", "\u00a0x\u2003y", "－", "＜b＞", "&amp;lt;p&amp;gt;",
        "Ⅻ", "½", "\u200b", "\U0001d400", "ﾟ", "ﬀ\u0327"]


def test_text_key_agrees_with_whole_text_nfkc():
    texts = list(_ODD)
    for item in generate(300, seed=11):
        texts += [v for v in dataclasses.astuple(item) if isinstance(v, str)]
        texts += [m.name for m in item.materials]
    rng = random.Random(5)
    pool = ("".join(_ODD) + "申请人，；：（）《》、。ａｂｃ１２３ 　-–—‐―−'\"<>&;\u0301\u0327ｶﾞ"
            "\t\n\r\x85\xa0\u2028\x1f")
    texts += ["".join(rng.choice(pool) for _ in range(rng.randint(1, 12))) for _ in range(3000)]
    texts += ["".join(rng.choice("申请人材料 abc1") for _ in range(rng.randint(1, 12)))
              for _ in range(1000)]  # mostly clean: the quick "nothing to clean" path
    for text in texts:
        assert text_key.__wrapped__(text) == _reference_key(text), repr(text)


def test_ascii_takes_the_short_way_to_the_same_key():
    """Printable ASCII skips folding and NFKC (nothing there to change); ASCII with
    control characters, and anything else, still goes through them."""
    from syncd.steps import _halfwidth

    assert text_key("  ABC-123  x ") == "ABC-123 x"
    assert text_key("A\x01B\x7f") == "AB" and text_key("a\tb\nc") == "a b c"
    assert text_key("a&amp;b <br>c") == "a&b c" and text_key("null") == ""
    assert _halfwidth("ABC-12") == "ABC-12" and _halfwidth("ＡＢＣ－１２") == "ABC-12"
