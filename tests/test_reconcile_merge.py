"""The reconcile merge on in-memory channels: edge cases the database tests do not reach."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import APART
from helpers import ListChannel, mapping_for, run_reconcile

from syncd.model import CHILD_MEMORY, child_memory
from syncd.reconcile import AGAIN_CHILDREN, reconcile
from syncd.sample import generate


@APART
@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "spilled"])
def test_two_records_that_map_to_one_item_are_reported_not_overwritten(tmp_path, apart,
                                                                       ordered):
    """In a channel listed in key order and in one sorted through a spill alike (the
    spill once kept only the last record of a code)."""
    hall, portal = mapping_for("hall_db"), mapping_for("portal_db")
    items = sorted(generate(5, seed=2), key=lambda i: i.item_code)
    ref = ListChannel("portal", [portal.from_item(i) for i in items])
    records = [hall.from_item(i) for i in items]
    twin = dict(records[2], SXBM=records[2]["SXBM"].lower() + " ", SXMC="另一条记录")
    listed = records[:3] + [twin] + records[3:]
    other = ListChannel("hall", listed if ordered else listed[::-1], ordered)
    result = run_reconcile({"portal": (ref, portal), "hall": (other, hall)}, "portal",
                           workdir=tmp_path, apart=apart)
    assert result.diffs == []  # the first record agrees with the reference
    [(channel, code, reason)] = result.unreadable
    assert (channel, code) == ("hall", items[2].item_code) and "重复" in reason


@APART
@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "spilled"])
def test_a_record_without_an_item_code_is_reported_not_fatal(tmp_path, apart, ordered):
    """A blank key (or one that reads as blank) cannot be merged with any channel's
    items: it is listed as unreadable under its raw key, and the rest is compared; each
    such record, in a channel sorted through a spill too. A record listed twice there
    (as a listing by update time may) is one record."""
    from syncd.item_stream import NO_CODE

    hall, portal = mapping_for("hall_db"), mapping_for("portal_db")
    items = sorted(generate(5, seed=2), key=lambda i: i.item_code)
    records = [hall.from_item(i) for i in items]
    blanks = [{**records[0], "SXBM": ""}, {**records[1], "SXBM": "  "}]
    result = run_reconcile({"portal": (ListChannel("portal", [portal.from_item(i) for i in items]),
                                       portal),
                            "hall": (ListChannel("hall", blanks + records[2:] if ordered
                                                 else records[:1:-1] + blanks + records[3:4],
                                                 ordered), hall)},
                           "portal", workdir=tmp_path, apart=apart)
    assert result.unreadable == [("hall", "", f"item_code: {NO_CODE}"),
                                 ("hall", "  ", f"item_code: {NO_CODE}")]
    assert sorted((d.item_code, d.kind) for d in result.diffs) == [
        (items[0].item_code, "missing"), (items[1].item_code, "missing")]


@APART
def test_unordered_channel_is_sorted_through_disk(tmp_path, apart):
    hall, portal = mapping_for("hall_db"), mapping_for("portal_db")
    items = list(generate(300, seed=3))
    changed = dataclasses.replace(items[150], address="钦州市灵山县某某路1号")
    ref = ListChannel("hall", sorted((hall.from_item(i) for i in items), key=lambda r: r["SXBM"]))
    shuffled = [portal.from_item(i) for i in reversed(items[:150] + [changed] + items[151:])]
    result = run_reconcile({"hall": (ref, hall),
                            "portal": (ListChannel("portal", shuffled, False), portal)},
                           "hall", workdir=tmp_path, apart=apart)
    assert [(d.item_code, d.field) for d in result.diffs] == [(changed.item_code, "address")]
    assert result.stats["portal"].consistent == 299


@APART
def test_differences_past_the_cap_are_counted_not_kept(tmp_path, apart):
    hall, portal = mapping_for("hall_db"), mapping_for("portal_db")
    items = sorted(generate(40, seed=4), key=lambda i: i.item_code)
    ref = ListChannel("hall", [hall.from_item(i) for i in items])
    other = ListChannel("portal", [portal.from_item(dataclasses.replace(i, address="别处"))
                                   for i in items])
    result = run_reconcile({"hall": (ref, hall), "portal": (other, portal)}, "hall",
                           workdir=tmp_path, apart=apart, max_diffs=10)
    assert len(result.diffs) == 10 and result.total_diffs == 40
    assert result.stats["portal"].consistent == 0


def test_a_channel_that_cannot_be_read_fails_the_report_with_its_name(tmp_path):
    from click.testing import CliRunner
    from helpers import seed, write_config

    from syncd.cli import main

    hall, empty = f"sqlite:///{tmp_path}/hall.db", f"sqlite:///{tmp_path}/empty.db"
    seed(hall, "hall_db", generate(5, seed=1))
    cfg = write_config(tmp_path / "syncd.toml", state_db=f"sqlite:///{tmp_path}/state.db",
                       channels={"hall": ("sql", hall, "hall_db.yaml"),
                                 "portal": ("sql", empty, "portal_db.yaml")}, jobs={})
    result = CliRunner().invoke(main, ["--config", str(cfg), "report", "reconcile",
                                       "--channels", "hall,portal", "--out", str(tmp_path)])
    assert result.exit_code == 3, result.output
    assert "channel=portal" in result.output and "portal_guide" in result.output
    assert "Traceback" not in result.output


def test_a_value_that_breaks_a_rule_is_compared_not_dropped(tmp_path):
    """A placeholder name fails validation (inspect reports that); reconcile still shows
    what the channel says, as a difference."""
    hall, portal = mapping_for("hall_db"), mapping_for("portal_db")
    items = sorted(generate(5, seed=6), key=lambda i: i.item_code)
    ref = ListChannel("hall", [hall.from_item(i) for i in items])
    broken = [dataclasses.replace(i, item_name="无") if n == 1 else i for n, i in enumerate(items)]
    other = ListChannel("portal", [portal.from_item(i) for i in broken])
    result = reconcile({"hall": (ref, hall), "portal": (other, portal)}, "hall",
                       workdir=tmp_path)
    assert result.unreadable == []
    assert [(d.item_code, d.field, d.channel_value) for d in result.diffs] == [
        (items[1].item_code, "item_name", "无")]


class _KeyedReads(ListChannel):
    """Notes how many children each memory keeps whenever items are read again by key."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sizes: list[int] = []

    def scan(self, page_size: int, *, keys=None):
        if keys is not None:
            self.sizes.append(child_memory())
        yield from super().scan(page_size, keys=keys)


@pytest.mark.parametrize("readers", [2, 1], ids=["every-channel-apart", "one-read-here"])
def test_items_compared_again_keep_few_children_only_where_readers_read_every_channel(
        tmp_path, readers):
    """The process that merges reads again only the items it compares: with every channel
    streamed by a reader, its memories of children are kept small meanwhile."""
    hall, portal = mapping_for("hall_db"), mapping_for("portal_db")
    items = sorted(generate(30, seed=5), key=lambda i: i.item_code)
    channels = {"hall": (_KeyedReads("hall", [hall.from_item(i) for i in items]), hall),
                "portal": (_KeyedReads("portal", [portal.from_item(
                    dataclasses.replace(i, address="别处") if n % 10 == 0 else i)
                    for n, i in enumerate(items)]), portal)}
    result = run_reconcile(channels, "hall", workdir=tmp_path, apart=True, max_readers=readers)
    assert result.total_diffs == 3
    expected = AGAIN_CHILDREN if readers == 2 else CHILD_MEMORY
    assert [channels[n][0].sizes for n in channels][:readers] == [[expected]] * readers
    assert child_memory() == CHILD_MEMORY
