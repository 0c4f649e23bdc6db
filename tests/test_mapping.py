"""Mapping steps and the shipped mappings: each direction, one behaviour per test."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from helpers import mapping_for
from syncd import steps
from syncd.errors import MappingError
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
