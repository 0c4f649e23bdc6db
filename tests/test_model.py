"""The canonical model's rules: code checks, validation, the content hash."""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import random
import tracemalloc
import weakref
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest

from syncd.errors import ValidationError
from syncd.model import (
    CHILD_MEMORY,
    Material,
    ServiceItem,
    child_memory,
    children_remembered,
    comparison_view,
    content_hash,
    kept_json,
    remembered,
    to_data,
    uscc_check_char,
    uscc_problem,
    validate,
)
from syncd.sample import generate

BASE = "11450721MB1558081"
USCC = BASE + uscc_check_char(BASE)


def item(**over) -> ServiceItem:
    values = dict(item_code=USCC + "4" + "000104002000", item_name="固定资产投资项目节能审查",
                  item_type="01", dept_name="灵山县行政审批局", status="1",
                  catalog_code="000104002000", dept_code=USCC, exercise_level="4",
                  legal_time_limit=20, legal_limit_unit="1", consult_phone="0777-6428820",
                  materials=(Material("申请表", "2", "1", 1, "1", "10", "《节约能源法》", 1),
                             Material("营业执照", "1", "1", 1, "1", "20", "《行政许可法》", 2)))
    values.update(over)
    return ServiceItem(**values)


def test_real_credit_codes_pass_the_gb32100_check():
    # from real implementation codes (DOMAIN.md §1.2)
    for code in ("11450721MB15580811", "11450721348531435D", "11440000MB2D0164XH"):
        assert uscc_problem(code) is None, code


def test_a_wrong_check_character_is_named():
    assert "校验位" in uscc_problem("11450721MB15580812")


def test_valid_item_passes():
    validate(item())


@pytest.mark.parametrize(("over", "field"), [
    ({"item_code": USCC + "4" + "00010400200"}, "item_code"),
    ({"item_code": USCC[:-1] + "0" + "4" + "000104002000", "dept_code": None}, "item_code"),
    ({"item_code": USCC + "8" + "000104002000", "exercise_level": None}, "item_code"),
    ({"catalog_code": "000104002001"}, "catalog_code"),
    ({"item_type": "99"}, "item_type"),
    ({"item_name": "／"}, "item_name"),
    ({"promised_time_limit": 5}, "promised_limit_unit"),
    ({"legal_time_limit": -1}, "legal_time_limit"),
    ({"materials": (Material("",),)}, "materials[0].name"),
    ({"materials": (Material("表", necessity="9"),)}, "materials[0].necessity"),
])
def test_rule_breaks_name_their_field(over, field):
    with pytest.raises(ValidationError) as err:
        validate(item(**over))
    assert err.value.field == field


def test_hash_ignores_cosmetics_and_material_order_but_not_content():
    a = item(consult_phone="0777-6428820", conditions="申请人应当具备：<br>（一）合法资格")
    b = item(consult_phone="０７７７—6428820", conditions="申请人应当具备：\n(一)合法资格",
             materials=tuple(reversed(a.materials)))
    assert content_hash(a) == content_hash(b)
    assert content_hash(a) != content_hash(dataclasses.replace(a, legal_time_limit=15))
    assert content_hash(a) == content_hash(dataclasses.replace(a, version=9))  # metadata


def test_plain_data_holds_every_field_as_json():
    """What an outbox row keeps for operators to read: the whole item, as JSON."""
    a = item(updated_at=datetime(2026, 12, 7, 8, 0, tzinfo=UTC), service_objects=("1", "2"))
    data = orjson.loads(orjson.dumps(to_data(a)))
    assert set(data) == {f.name for f in dataclasses.fields(ServiceItem)}
    assert data["updated_at"] == "2026-12-07T08:00:00+00:00"
    assert data["service_objects"] == ["1", "2"] and data["fees"] == []
    assert data["materials"][1] == {f.name: getattr(a.materials[1], f.name)
                                    for f in dataclasses.fields(Material)}


def test_content_hash_is_the_hash_of_the_comparison_view():
    """content_hash embeds each child's JSON, serialised once: the bytes must be those of
    the comparison view itself, or every delivered hash would change."""
    rng = random.Random(3)
    items = [item(), item(materials=()), item(materials=item().materials[:1])]
    for it in generate(300, seed=8):
        children = list(it.materials)
        rng.shuffle(children)
        items += [it, dataclasses.replace(it, materials=tuple(children))]
    for it in items:
        blob = orjson.dumps(comparison_view(it), option=orjson.OPT_SORT_KEYS)
        assert content_hash(it) == hashlib.blake2b(blob, digest_size=16).hexdigest()


def test_a_remembered_child_is_judged_again_in_every_item():
    bad = Material("表", necessity="9")
    for _ in range(2):  # the second time from memory
        with pytest.raises(ValidationError) as err:
            validate(item(materials=(item().materials[0], bad)))
        assert err.value.field == "materials[1].necessity"


def test_fewer_children_are_remembered_meanwhile_and_what_was_more_is_let_go():
    class Child:  # a plain class: it can be watched by weak reference
        pass

    calls = Counter[str]()
    twice = remembered(lambda child: calls.update(["call"]) or 2)
    children = [Child() for _ in range(4)]
    gone = [weakref.ref(c) for c in children[:3]]
    for n in range(3):
        twice(children[n])
    with children_remembered(2):
        assert child_memory() == 2
        twice(children[0])  # remembered from before: not called again
        assert calls["call"] == 3
        twice(children[3])  # over the smaller size: the memory empties, then keeps this one
        del children[:3]
        gc.collect()
        assert [ref() for ref in gone] == [None, None, None]
    assert child_memory() == CHILD_MEMORY
    twice(children[0])  # still remembered
    assert calls["call"] == 4


def test_blocks_remembering_fewer_children_may_end_in_any_order():
    first, second = children_remembered(3), children_remembered(5)
    first.__enter__()
    second.__enter__()
    assert child_memory() == 3
    first.__exit__(None, None, None)  # the first to start ends first
    assert child_memory() == 5
    second.__exit__(None, None, None)
    assert child_memory() == CHILD_MEMORY


def test_kept_json_holds_no_more_than_its_bytes():
    """What the child caches keep: orjson's own output holds ~4 KB each, whatever its
    length, which over thousands of cached children grew a reconcile by 60 MB."""
    rows = [{"name": "申请表", "order": i} for i in range(1000)]
    tracemalloc.start()
    try:
        kept = [kept_json(r) for r in rows]
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert kept[5] == orjson.dumps(rows[5])
    assert held < 1000 * 256, held
