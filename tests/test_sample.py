"""The shared sample generator: deterministic, prefix-stable, unique, valid, editable."""

from __future__ import annotations

import itertools
from datetime import timezone

import pytest

from syncd.model import content_hash, uscc_problem, validate
from syncd.normalize import limit_key
from syncd.sample import edit, generate


def test_deterministic_for_n_and_seed():
    assert list(generate(300, seed=7)) == list(generate(300, seed=7))
    assert list(generate(50, seed=1)) != list(generate(50, seed=2))


def test_shorter_run_is_a_prefix_of_a_longer_one():
    assert list(generate(100, seed=3)) == list(generate(1000, seed=3))[:100]


def test_item_codes_and_names_are_unique_over_20k():
    items = list(generate(20_000))
    assert len({i.item_code for i in items}) == len(items)
    assert len({i.item_name for i in items}) == len(items)


def test_5k_items_are_valid_and_coherent():
    for item in generate(5_000, seed=11):
        validate(item)
        assert uscc_problem(item.dept_code) is None
        assert item.item_code == item.dept_code + item.exercise_level + item.catalog_code
        assert item.region_code == "450721" and item.dept_name.startswith("灵山县")
        assert 0 <= item.promised_time_limit <= item.legal_time_limit
        assert item.promised_limit_unit == item.legal_limit_unit
        assert limit_key(item.legal_limit_note) == str(item.legal_time_limit)
        assert limit_key(item.promised_limit_note) == str(item.promised_time_limit)
        if item.handle_type == "1":
            assert item.promised_time_limit in (0, 1)
        else:
            assert item.promised_time_limit > 0
        assert (item.visit_count == 1) == bool(item.visit_reason)
        assert ("2" in item.handle_modes) == bool(item.online_url) == bool(item.online_depth)
        assert item.charged == bool(item.fees)
        assert 1 <= len(item.materials) <= 6
        assert [m.order for m in item.materials] == list(range(1, len(item.materials) + 1))
        assert item.updated_at.tzinfo is timezone.utc and item.updated_at.microsecond == 0
        assert item.updated_at.year == 2026


def test_distribution_is_realistic():
    items = list(generate(4_000))
    share = {t: sum(i.item_type == t for i in items) / len(items) for t in ("01", "20")}
    assert share["01"] > 0.3 and share["20"] > 0.15
    assert sum(i.exercise_level == "4" for i in items) > 0.7 * len(items)
    assert any(i.exercise_level == "3" for i in items)
    assert any("—" in i.consult_phone or "０" in i.consult_phone for i in items)
    assert any(i.status == "2" for i in items) and any(i.charged for i in items)


def test_unknown_region_is_refused():
    with pytest.raises(ValueError):
        next(generate(1, region_code="999999"))


@pytest.mark.parametrize("k", range(8))
def test_edit_changes_content_and_stays_valid(k):
    for item in itertools.islice(generate(400, seed=5), 0, None, 4):
        changed = edit(item, k)
        validate(changed)
        assert content_hash(changed) != content_hash(item)
        assert changed.version == item.version + 1
        assert (changed.updated_at - item.updated_at).total_seconds() == k + 1
        assert changed.promised_time_limit <= changed.legal_time_limit
        assert limit_key(changed.promised_limit_note) == str(changed.promised_time_limit)
        assert edit(item, k) == changed  # deterministic


def test_repeated_edits_keep_changing():
    item = next(generate(1))
    hashes = {content_hash(item)}
    for k in range(12):
        item = edit(item, k)
        validate(item)
        hashes.add(content_hash(item))
    assert len(hashes) == 13
