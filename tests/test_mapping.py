"""Mapping steps and the shipped mappings: each direction, one behaviour per test."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from helpers import mapping_for

from connectors.base import SharedRow
from syncd import steps
from syncd.errors import MappingError
from syncd.mapping import load_mapping
from syncd.model import Material, ServiceItem, remembered
from syncd.sample import generate


def test_halfwidth_folds_fullwidth_codes_and_dashes():
    assert steps.TEXT_STEPS["halfwidth"]("０７７７—６４２８８２０") == "0777-6428820"


def test_lookup_refuses_unknown_values():
    with pytest.raises(MappingError, match="no entry"):
        steps.lookup({"XK": "01"}, "item_type")("ZZ")


def test_naive_local_time_is_read_in_its_zone_and_written_back():
    read = steps.to_datetime(__import__("zoneinfo").ZoneInfo("Asia/Shanghai"), None)
    value = read(datetime(2026, 11, 26, 18, 0))
    assert value == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    write = steps.from_datetime(__import__("zoneinfo").ZoneInfo("Asia/Shanghai"), None)
    assert write(value) == datetime(2026, 11, 26, 18, 0)


def test_int_refuses_text():
    with pytest.raises(MappingError, match="whole number"):
        steps.COERCE["int"]("二十")


@pytest.mark.parametrize("schema", ["hall_db", "portal_db"])
def test_items_survive_a_round_trip_through_each_mapping(schema):
    mapping = mapping_for(schema)
    for item in generate(300, seed=1):
        record = mapping.from_item(item)
        assert mapping.to_item(record) == item


def test_hall_codes_are_translated_both_ways():
    mapping = mapping_for("hall_db")
    item = next(iter(generate(1, seed=4)))
    record = mapping.from_item(item)
    assert record["SXLX"] in {"XK", "CF", "QZ", "ZS", "JF", "JC", "QR", "JL", "CJ", "QT", "GG"}
    assert record["SFSF"] in {"是", "否"}
    assert mapping.to_item({**record, "SXLX": " xk "}).item_type == "01"


def test_a_record_error_names_channel_item_and_field():
    mapping = mapping_for("hall_db")
    record = mapping.from_item(next(iter(generate(1))))
    with pytest.raises(MappingError) as err:
        mapping.to_item({**record, "BJLX": "急办件"})
    assert err.value.field == "handle_type"
    assert err.value.item_code == record["SXBM"]
    assert err.value.channel == "hall_db"


_ODD_VALUES = ["", " ", "  x ", "ｘｋ", "XK", " xk ", "是", "否", "工作日", "自然人", "在用", "取消",
               "自然人、、企业法人", "、", "窗口办理,,网上办理", ",", "ZZ", None, 0, 5, -1, 3.0, True, False, "12", " 7 ",
               "二十", b"\xd6\xd0\xce\xc4", b"", b"\xff", datetime(2026, 11, 26, 18, 0),
               datetime(2026, 11, 26, 18, 0, tzinfo=UTC), "2026-01-02T03:04:05",
               "2026-01-02 03:04:05", ["自然人"], ("1", "2"), "<b>a</b> &amp; b", "０７７７—６４２８８２０"]


def _outcome(fn, value):
    try:
        result = fn(value)
    except MappingError as exc:
        return "error", str(exc)
    return type(result), result


_EDGE_MAPPING = """
channel: edge
fields:
  item_code: {column: A, steps: [trim, halfwidth, upper]}
  item_name: {column: B, default: 未命名}
  item_type: {column: C, codes: {XK: "01", "1": "01"}}
  dept_name: {column: D, steps: [fold_space, strip_tags]}
  status: {column: E, codes: {在用: 1, 取消: 3}}
  service_objects: {column: F, codes: {自然人: "1", 企业法人: "2"}}
  handle_modes: {column: G, split: "、", steps: [trim]}
  charged: {column: H}
  legal_time_limit: {column: I, steps: [trim]}
  updated_at: {column: J, datetime: {tz: Asia/Shanghai, format: "%Y-%m-%d %H:%M:%S"}}
"""


@pytest.mark.parametrize("schema", ["hall_db", "portal_db", "platform/reference", "edge"])
def test_each_readers_shortcut_gives_what_its_whole_chain_gives(schema, tmp_path):
    """The reader's shortcut for common values must change nothing: same value, same
    type, same error as running every step of the chain. ``edge``: the shapes the
    shipped mappings do not use (codes without split, codes that need coercing, steps
    on numbers and times, defaults). Every value is read twice: a code field's reader
    answers the second time from memory (``steps.remembered_text``)."""
    if schema == "edge":
        (tmp_path / "edge.yaml").write_text(_EDGE_MAPPING, encoding="utf-8")
        mapping = load_mapping(tmp_path / "edge.yaml")
    else:
        mapping = mapping_for(schema)
    records = [mapping.from_item(item) for item in generate(200, seed=7)
               if schema != "edge"]
    for fm in [*mapping.fields, *(f for child in mapping.children for f in child.fields)]:
        whole = steps.compose(fm.read)
        seen = [r.get(fm.column) for r in records if fm.column] + [
            row.get(fm.column) for r in records for child in mapping.children
            for row in r.get(child.record_key) or [] if fm.column]
        for value in [*_ODD_VALUES, *seen] * 2:
            assert _outcome(fm.reader, value) == _outcome(whole, value), (fm.name, value)


def test_a_remembered_reader_reads_each_text_once_and_failures_every_time():
    calls = []

    def read(value):
        calls.append(value)
        if value == "ZZ":
            raise MappingError("unknown code")
        return (value,)

    reader = steps.remembered_text(read, size=2)
    assert [reader(v) for v in ("XK", "XK", 1, 1)] == [("XK",)] * 2 + [(1,)] * 2
    for _ in range(2):
        with pytest.raises(MappingError):
            reader("ZZ")
    assert calls == ["XK", 1, 1, "ZZ", "ZZ"]
    reader("QR"), reader("ST"), reader("XK")  # past its size: forgotten, read again
    assert calls[-3:] == ["QR", "ST", "XK"]


def test_a_column_written_by_two_fields_is_refused_at_its_line(tmp_path):
    path = tmp_path / "twice.yaml"
    text = _EDGE_MAPPING.replace("  charged: {column: H}",
                                 "  charged: {column: H}\n  visit_reason: {column: H}")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MappingError) as err:
        load_mapping(path)
    assert err.value.field == "visit_reason"
    assert err.value.line == text.splitlines().index("  visit_reason: {column: H}") + 1
    assert "written by both 'charged' and 'visit_reason'" in str(err.value)
    path.write_text(_EDGE_MAPPING.replace("  charged: {column: H}", "  charged: {column: H}\n"
                                          "  visit_reason: {column: H, write: false}"),
                    encoding="utf-8")
    assert load_mapping(path).channel == "edge"


def _with_material(record, **row):
    return {**record, "materials": [{"CLMC": "身份证", "CLLX": "其他", "XH": 1, **row}]}


def test_a_child_row_read_before_is_the_same_object():
    mapping = mapping_for("hall_db")
    record = mapping.from_item(next(iter(generate(1, seed=2))))
    first = mapping.to_item(_with_material(record, YJ="《行政许可法》")).materials[0]
    again = mapping.to_item(_with_material(record, YJ="《行政许可法》")).materials[0]
    other = mapping.to_item(_with_material(record, YJ="《档案法》")).materials[0]
    assert again is first
    assert other.legal_basis == "《档案法》"


def test_child_rows_equal_in_value_but_not_in_type_read_apart():
    mapping = mapping_for("hall_db")
    record = mapping.from_item(next(iter(generate(1, seed=2))))
    assert mapping.to_item(_with_material(record, CLMC=1)).materials[0].name == "1"
    assert mapping.to_item(_with_material(record, CLMC=True)).materials[0].name == "True"


def test_a_child_row_holding_a_list_is_read_without_memory():
    mapping = mapping_for("hall_db")
    record = mapping.from_item(next(iter(generate(1, seed=2))))
    assert mapping.to_item(_with_material(record, YJ=["a"])).materials[0].legal_basis == "['a']"


def test_a_bad_child_row_fails_every_time_it_is_read():
    mapping = mapping_for("hall_db")
    record = mapping.from_item(next(iter(generate(1, seed=2))))
    for _ in range(2):
        with pytest.raises(MappingError) as err:
            mapping.to_item(_with_material(record, CLLX="照片"))
        assert err.value.field == "materials[0].material_type"


def test_a_child_value_the_channel_cannot_hold_names_its_row():
    mapping = mapping_for("hall_db")
    item = next(iter(generate(1, seed=2)))
    odd = dataclasses.replace(item.materials[0], material_type="9")
    with pytest.raises(MappingError) as err:
        mapping.from_item(dataclasses.replace(item, materials=(item.materials[0], odd)))
    assert err.value.field == "materials[1].material_type"


@pytest.mark.parametrize("schema", ["hall_db", "edge"])
def test_a_read_item_is_the_item_its_constructor_makes(schema, tmp_path):
    """Items are built slot by slot, not through ``__init__``: every field is set (the
    unmapped ones to their defaults, ``edge`` maps few and no children), the item
    equals and hashes as the constructor's, and it stays frozen."""
    if schema == "edge":
        path = tmp_path / "edge.yaml"
        path.write_text(_EDGE_MAPPING, encoding="utf-8")
        mapping = load_mapping(path)
        records = [{"A": item.item_code, "B": item.item_name, "C": "XK", "D": item.dept_name,
                    "E": "在用"} for item in generate(20, seed=8)]
    else:
        mapping = mapping_for(schema)
        records = [mapping.from_item(item) for item in generate(50, seed=8)]
    for record in records:
        read = mapping.to_item(record)
        made = ServiceItem(**{f.name: getattr(read, f.name)
                              for f in dataclasses.fields(ServiceItem)})
        assert read == made and hash(read) == hash(made)
        assert {type(m) for m in read.materials} <= {Material}
        if schema == "edge":
            assert (read.materials, read.process, read.service_objects) == ((), None, ())
        else:
            assert read.materials
        with pytest.raises(dataclasses.FrozenInstanceError):
            read.item_name = "改名"  # type: ignore[misc]


def test_a_remembered_function_answers_an_equal_copy_as_the_original():
    calls = []

    def view(material):
        calls.append(material)
        return material.name

    remember = remembered(view)
    first = Material("身份证", legal_basis="《居民身份证法》")
    copy = dataclasses.replace(first)
    assert [remember(first), remember(first), remember(copy)] == ["身份证"] * 3
    assert [c is first for c in calls] == [True, False]  # the copy computed again


def test_shared_child_rows_read_as_plain_ones_do():
    """A connector's ``SharedRow`` is known by its identity; what it reads to is what the
    same values in a plain dict read to, and one that recurs is read once."""
    mapping = mapping_for("hall_db")
    for item in generate(30, seed=9):
        plain = mapping.from_item(item)
        shared = dict(plain, materials=[SharedRow(row) for row in plain["materials"]])
        assert mapping.to_item(shared) == mapping.to_item(plain) == item
        again = mapping.to_item(shared)
        assert all(a is b for a, b in zip(again.materials, mapping.to_item(shared).materials,
                                          strict=True))


def _read_outcome(read, record):
    try:
        return read(record)
    except MappingError as exc:
        return "error", str(exc), exc.field, exc.item_code


@pytest.mark.parametrize("schema", ["hall_db", "portal_db", "edge"])
def test_values_read_without_the_item_are_its_values_and_fail_as_it_does(schema, tmp_path):
    """What reconcile's readers digest: the values ``to_item`` would give (the unmapped
    fields their defaults, ``edge`` maps few and no children), and for a record it
    cannot read, the same error (the first failing field, in the mapping's order),
    unless only a field not asked for fails (the update time: not compared)."""
    from syncd.item_stream import FIELD_NAMES, _digest, exact_digest

    if schema == "edge":
        path = tmp_path / "edge.yaml"
        path.write_text(_EDGE_MAPPING, encoding="utf-8")
        mapping = load_mapping(path)
        records = [{"A": f" {item.item_code.lower()} ", "B": item.item_name, "C": "XK",
                    "D": item.dept_name, "E": "在用", "I": " 5 "}
                   for item in generate(20, seed=8)]
        bad = [{**records[0], "C": "ZZ"}, {**records[1], "C": "ZZ", "I": "五"},
               {**records[2], "A": None, "E": "停用"}]
    else:
        mapping = mapping_for(schema)
        records = [mapping.from_item(item) for item in generate(50, seed=8)]
        column = {f.name: f.column for f in mapping.fields}
        code, legal, promised = (column[n] for n in ("item_code", "legal_time_limit",
                                                      "promised_time_limit"))
        bad = [{**records[0], promised: "两天"}, {**records[1], legal: "十天", promised: "两天"},
               {**records[2], code: 12345, promised: "两天"}]
        if schema == "hall_db":
            bad += [{**records[3], "BJLX": "急办件"}, _with_material(records[4], CLLX="照片")]
    read = mapping.values_reader(FIELD_NAMES)
    for record in records:
        item = mapping.to_item(record)
        code, values = read(record)
        assert (code, values) == (item.item_code, [getattr(item, n) for n in FIELD_NAMES])
        assert _digest(values) == exact_digest(item)
    for record in bad:
        outcome = _read_outcome(read, record)
        assert outcome[0] == "error"
        assert outcome == _read_outcome(lambda r: (mapping.to_item(r), None), record)
    updated = next(f.column for f in mapping.fields if f.name == "updated_at")
    odd_time = {**records[5], updated: "昨天"}
    with pytest.raises(MappingError, match="updated_at"):
        mapping.to_item(odd_time)
    assert read(odd_time) == read(records[5])
    with pytest.raises(ValueError, match="item_code"):
        mapping.values_reader(["item_code", "item_name"])
    with pytest.raises(ValueError, match="colour"):
        mapping.values_reader(["colour"])
