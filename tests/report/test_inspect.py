"""The reform's rules: a clean guide passes, each seeded defect gives exactly its findings."""

from __future__ import annotations

from dataclasses import replace

import pytest

from syncd.inspect import RULE_LABELS, inspect_item, inspect_items, summarize
from syncd.inspect_rules import catch_all_phrase, cn_number, has_phone, stated_limits
from syncd.model import Fee, Material, ServiceItem, uscc_check_char

BASE17 = "11450721MB1558081"
USCC = BASE17 + uscc_check_char(BASE17)


def code(catalog: str = "000104002000") -> str:
    return USCC + "4" + catalog


CLEAN = ServiceItem(
    item_code=code(), item_name="固定资产投资项目节能审查", item_type="01",
    dept_name="灵山县行政审批局", status="1", catalog_code="000104002000", dept_code=USCC,
    region_code="450721", exercise_level="4", service_objects=("2",), handle_type="2",
    legal_time_limit=20, legal_limit_unit="1",
    legal_limit_note="自受理之日起二十个工作日内作出决定；二十个工作日内不能作出决定的，可延长十个工作日",
    promised_time_limit=5, promised_limit_unit="1", promised_limit_note="5个工作日",
    visit_count=1, visit_reason="需现场核验原件", handle_modes=("1", "2"),
    online_url="https://zwfw.gxzf.gov.cn/item/000104002000", online_depth="3", charged=False,
    conditions="项目符合国家产业政策和节能标准", process="受理、审查、决定、送达",
    address="灵山县政务服务中心二楼", office_hours="工作日 8:00-12:00，15:00-18:00",
    consult_phone="0777—6428820", complaint_phone="12345",
    legal_basis="《固定资产投资项目节能审查办法》（国家发展改革委令第44号）第五条",
    materials=(Material("节能报告", necessity="1",
                        legal_basis="《固定资产投资项目节能审查办法》第八条"),
               Material("授权委托书", necessity="2")),
)


def variant(n: int, **changes: object) -> ServiceItem:
    """CLEAN with its own valid code (catalog …n) and the given defects."""
    catalog = f"0001040020{n:02d}"
    return replace(CLEAN, **({"item_code": code(catalog), "catalog_code": catalog} | changes))


BAD_CHECK = USCC[:17] + ("0" if USCC[17] != "0" else "1")

# (item, expected (rule, field) findings)
CASES: list[tuple[ServiceItem, list[tuple[str, str]]]] = [
    # the real 广西 defect: 66 / 24 while the notes say 20 / 1 工作日
    (variant(1, legal_time_limit=66, legal_limit_note="20个工作日",
             promised_time_limit=24, promised_limit_note="1个工作日"),
     [("limit_note_mismatch", "legal_time_limit"),
      ("limit_note_mismatch", "promised_time_limit")]),
    (variant(2, promised_time_limit=25, promised_limit_note=None),
     [("promise_exceeds_legal", "promised_time_limit")]),
    (variant(3, promised_limit_unit="2", promised_limit_note=None),
     [("limit_unit_mismatch", "promised_limit_unit")]),
    (variant(4, legal_limit_note="三十日"), [("limit_note_mismatch", "legal_time_limit")]),
    (variant(5, handle_type="1", promised_time_limit=3, promised_limit_note="3个工作日"),
     [("handle_type_limit", "promised_time_limit")]),
    (variant(6, promised_time_limit=0, promised_limit_note=None),
     [("handle_type_limit", "promised_time_limit")]),
    (variant(7, visit_count=2), [("visits_exceed_one", "visit_count")]),
    (variant(8, visit_reason="无"), [("visit_reason_missing", "visit_reason")]),
    (variant(9, online_url="www.example.gov.cn", online_depth=None),
     [("online_incomplete", "online_depth"), ("online_incomplete", "online_url")]),
    (variant(10, online_url=" / "), [("online_incomplete", "online_url")]),
    (variant(11, materials=(Material("身份证", necessity="1", legal_basis="/"),
                            Material("营业执照", necessity="3"))),
     [("material_without_basis", "materials")]),
    (variant(12, conditions="（一）符合产业政策；（二）法律法规规定的其他条件。",
             materials=CLEAN.materials + (Material("其他相关材料", necessity="2"),)),
     [("catch_all_clause", "conditions"), ("catch_all_clause", "materials")]),
    (variant(13, address="无", office_hours=None, consult_phone="/", item_name="  "),
     [("required_missing", "item_name"), ("required_missing", "address"),
      ("required_missing", "office_hours"), ("required_missing", "consult_phone")]),
    (replace(CLEAN, item_code=BAD_CHECK + "4000104002014", catalog_code="000104002014",
             region_code="045072"),
     [("code_invalid", "item_code"), ("code_invalid", "region_code")]),
    (variant(15, catalog_code="000104002099"), [("code_invalid", "catalog_code")]),
    (variant(16, dept_code=BAD_CHECK), [("code_invalid", "dept_code"),
                                         ("code_invalid", "dept_code")]),
    (variant(17, consult_phone="6428820", complaint_phone="见窗口公示"),
     [("phone_invalid", "consult_phone"), ("phone_invalid", "complaint_phone")]),
    (variant(18, charged=True), [("fee_flag_mismatch", "fees")]),
    (variant(19, fees=(Fee("工本费", "10元/本", "《价格法》"),)),
     [("fee_flag_mismatch", "charged")]),
    (variant(20, charged=True, fees=(Fee("工本费", None, "《价格法》"), Fee("检测费", "50元", "无"))),
     [("fee_incomplete", "fees"), ("fee_incomplete", "fees")]),
]


def test_clean_item_has_no_findings() -> None:
    assert inspect_item(CLEAN) == []
    assert inspect_item(CLEAN, promise_cut_ratio=0.6) == []


def test_each_defect_gives_exactly_its_findings() -> None:
    items = [CLEAN] + [item for item, _ in CASES]
    got = sorted((f.item_code, f.rule, f.field) for f in inspect_items(items))
    expected = sorted((item.item_code, rule, field) for item, pairs in CASES
                      for rule, field in pairs)
    assert got == expected


@pytest.mark.parametrize(("item", "pairs"), CASES, ids=[p[0][0] for _, p in CASES])
def test_defect_alone(item: ServiceItem, pairs: list[tuple[str, str]]) -> None:
    assert sorted((f.rule, f.field) for f in inspect_item(item)) == sorted(pairs)


def test_findings_name_the_values_and_carry_labels() -> None:
    item = CASES[0][0]
    by_field = {f.field: f for f in inspect_item(item)}
    promised = by_field["promised_time_limit"]
    assert "24" in promised.message and "1个工作日" in promised.message
    assert promised.field_label == "承诺办结时限"
    assert promised.rule_label == RULE_LABELS["limit_note_mismatch"] == "时限与说明不一致"
    assert promised.severity == "错误"
    assert (promised.item_name, promised.dept_name, promised.item_type) == \
        (item.item_name, item.dept_name, item.item_type)


def test_cancellation_is_proposed_for_required_material_without_basis() -> None:
    [finding] = inspect_item(CASES[10][0])
    assert "身份证" in finding.message and "建议取消" in finding.message
    assert finding.field_label == "申请材料"


def test_promise_cut_threshold_only_when_asked() -> None:
    item = variant(30, promised_time_limit=10, promised_limit_note="10个工作日")
    assert inspect_item(item) == []
    [finding] = inspect_item(item, promise_cut_ratio=0.6)
    assert (finding.rule, finding.severity) == ("promise_cut_insufficient", "警告")
    assert "50%" in finding.message and "60%" in finding.message
    assert inspect_item(item, promise_cut_ratio=0.5) == []  # exactly at the threshold


def test_promise_cut_ratio_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError):
        inspect_item(CLEAN, promise_cut_ratio=60)


@pytest.mark.parametrize(("text", "number"), [
    ("20", 20), ("一", 1), ("十", 10), ("十五", 15), ("二十", 20), ("二十五", 25),
    ("九十九", 99), ("两", 2), ("一百零五", 105), ("一百二十", 120), ("工作", None)])
def test_chinese_numerals(text: str, number: int | None) -> None:
    assert cn_number(text) == number


def test_stated_limits_read_number_and_unit() -> None:
    stated = stated_limits("自受理之日起二十个工作日内办结（２０１９年１月３０日起施行），公示30日，3 天")
    assert [(s.days, s.unit) for s in stated] == [(20, "1"), (30, None), (3, None)]
    assert [(s.days, s.unit) for s in stated_limits("1个自然日")] == [(1, "2")]
    assert stated_limits("即时办结") == []


@pytest.mark.parametrize(("value", "ok"), [
    ("0771-1234567", True), ("(0771)1234567", True), ("（0771）1234567", True),
    ("07711234567", True), ("0777—642 8820", True), ("咨询：13812345678", True),
    ("12345政务服务便民热线", True), ("400-123-4567", True), ("6428820", False),
    ("1234567890123", False), ("见窗口公示", False), ("02345", False)])
def test_phone_formats(value: str, ok: bool) -> None:
    assert has_phone(value) is ok


def test_catch_all_phrases_ignore_punctuation_and_report_the_longest() -> None:
    assert catch_all_phrase("法律 、法规规定的其他条件") == "法律、法规规定的其他条件"
    assert catch_all_phrase("需提交其他有关材料") == "其他有关材料"
    assert catch_all_phrase("项目符合国家产业政策") is None


def test_summarize_per_department_and_type() -> None:
    other = replace(variant(40, visit_count=3), dept_name="灵山县自然资源局", item_type="20")
    items = [CLEAN, CASES[0][0], CASES[6][0], other]
    findings = inspect_items(items)
    summary = summarize(findings, items)
    depts = {g.key: g for g in summary.by_dept}
    assert set(depts) == {"灵山县行政审批局", "灵山县自然资源局"}
    approval = depts["灵山县行政审批局"]
    assert (approval.items, approval.items_with_findings, approval.findings) == (3, 2, 3)
    assert approval.by_rule == {"limit_note_mismatch": 2, "visits_exceed_one": 1}
    assert approval.pass_rate == pytest.approx(1 / 3)
    types = {g.key: g for g in summary.by_type}
    assert types["20"].label == "公共服务" and types["01"].label == "行政许可"
    assert (types["20"].items, types["20"].items_with_findings) == (1, 1)
    assert types["20"].by_rule == {"visits_exceed_one": 1}
