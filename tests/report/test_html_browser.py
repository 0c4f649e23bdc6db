"""The HTML report in a real browser: hostile item data renders as inert text.

Each report (reconcile and inspect, full of ``<script>``, attribute breakers,
closing tags, a ``javascript:`` URL and Chinese quotes) is written with
``write_reports`` and opened in headless Chromium with ``--dump-dom``, which
prints the DOM after the page has loaded and its scripts have run. The DOM is
parsed with :mod:`html.parser` and checked: no element or attribute the
template does not itself produce, no ``<script>`` beyond the template's own,
the page's ``<title>`` untouched, and every hostile string back as literal
cell text, in the right cell.

The shipped page carries a Content-Security-Policy that blocks scripts anyway,
so each page is also loaded a second time with the CSP replaced by a probe
script: that proves escaping alone keeps the data inert. The probe records
script errors, hovers every element (an injected ``onmouseover`` would throw),
and after ``load`` writes ``window.__pwned`` and ``document.title`` onto
``<html data-probe>`` — its presence also shows JavaScript does run there.

Needs the ``chromium`` binary (Debian: ``apt-get install -y --no-install-recommends
chromium``; ``SYNCD_CHROMIUM`` may name another). Without it the tests skip,
unless ``SYNCD_REQUIRE_BROWSER=1`` (as CI sets it): then they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from syncd.inspect import Finding, inspect_items
from syncd.model import ServiceItem, uscc_check_char
from syncd.report import write_reports
from syncd.report.data import (
    WHOLE_ITEM,
    ChannelRate,
    Diff,
    FieldRate,
    ReportData,
    SummaryRow,
    TrendPoint,
    inspect_report,
)
from syncd.report.html import TEMPLATES, BarChart, LineChart, charts

SCRIPT = "<script>window.__pwned=1;document.title='PWNED'</script>"
IMG = "\"><img src=x onerror=\"document.title='PWNED'\">"
ATTR = "' onmouseover='x"
CLOSERS = "</textarea></style></script>"
JS_URL = "javascript:alert(1)"
CHINESE = "办理地点“人民广场”「一号窗口」"
HOSTILE = {"script": SCRIPT, "img": IMG, "attr": ATTR, "closers": CLOSERS, "js_url": JS_URL,
           "chinese": CHINESE}

BASE17 = "11450721MB1558081"
CODE = BASE17 + uscc_check_char(BASE17) + "4" + "000104002000"
AT = datetime(2024, 5, 1, 2, 30, tzinfo=UTC)
HALL, PORTAL = f"大厅{SCRIPT}", f"portal{IMG}"

REQUIRE = os.environ.get("SYNCD_REQUIRE_BROWSER") == "1"
CSP_META = re.compile(r'<meta http-equiv="Content-Security-Policy"[^>]*>')
PROBE = """<script>
(function () {
  var errors = [];
  window.addEventListener("error", function (e) { errors.push(String(e.message)); });
  window.addEventListener("load", function () {
    var all = document.querySelectorAll("body *");
    for (var i = 0; i < all.length; i++) all[i].dispatchEvent(new MouseEvent("mouseover"));
    document.documentElement.setAttribute("data-probe", JSON.stringify({
      pwned: window.__pwned === undefined ? null : window.__pwned,
      title: document.title, errors: errors}));
  });
})();
</script>"""


# --- the reports -------------------------------------------------------------

def reconcile_data() -> ReportData:
    diffs = [
        Diff(CODE, SCRIPT, "address", f"办理地点{IMG}", "differs", HALL, CHINESE, CLOSERS),
        Diff(CODE, SCRIPT, "online_url", "网上办理地址", "differs", PORTAL,
             "https://zwfw.example.gov.cn/item/1", JS_URL),
        Diff(CODE, SCRIPT, "version", "版本", "stale", PORTAL, "12", ATTR),
        Diff(CODE[:-1] + "1", IMG, None, None, "missing", PORTAL),
        Diff(CODE[:-1] + "2", ATTR, None, None, "extra", HALL, None, SCRIPT),
    ]
    return ReportData(
        "reconcile", "多渠道一致性比对报告", AT, f"run{CLOSERS}",
        summary=(SummaryRow("items", "比对事项数", 3),
                 SummaryRow("rate", "总体一致率", 0.5, percent=True),
                 SummaryRow("note", f"备注{ATTR}", CHINESE + IMG)),
        channels=(HALL, PORTAL), reference=f"platform{ATTR}",
        channel_rates=(ChannelRate(HALL, 1, 3), ChannelRate(PORTAL, 2, 3)),
        field_rates=(FieldRate("address", f"办理地点{IMG}", 5, 6),
                     FieldRate("online_url", f"网上办理地址{SCRIPT}", 4, 6),
                     FieldRate("version", "版本", 6, 6)),
        diffs=diffs,
        trend=(TrendPoint("r1", AT - timedelta(days=1), {HALL: 0.2, PORTAL: 0.5}),
               TrendPoint("r2", AT, {HALL: 1 / 3, PORTAL: 2 / 3})))


def inspect_data() -> ReportData:
    items = [ServiceItem(CODE, item_name=SCRIPT, item_type="01", dept_name=IMG,
                         handle_modes=("2",), online_depth="3", online_url=JS_URL,
                         consult_phone=ATTR, complaint_phone=CHINESE, region_code=CLOSERS)]
    findings = inspect_items(items) + [
        Finding(CODE, CHINESE, ATTR, "01", "phone_invalid", "电话号码格式不正确",
                "consult_phone", f"咨询电话{CLOSERS}", "警告",
                f"“{SCRIPT}”「{IMG}」{ATTR} {JS_URL}"),
    ]
    assert any(JS_URL in f.message for f in findings[:-1]), "the online_url rule should quote it"
    return inspect_report(items, findings, run_id=f"insp{IMG}", generated_at=AT)


def detail_rows(report: ReportData) -> list[list[str]]:
    """The detail table's cells as the template shows them (None → empty)."""
    if report.kind == "inspect":
        return [[f.item_code, f.item_name or "", f.dept_name or "", f.severity, f.rule_label,
                 f.field_label, f.message] for f in report.findings]
    return [[d.item_code, d.item_name or "", d.channel, d.kind_label,
             d.field_label or d.field or WHOLE_ITEM, d.reference_value or "",
             d.channel_value or ""] for d in report.diffs]


# --- reading a DOM -----------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}
TEXTS = ("h1", "h2", "figcaption")


class Dom(HTMLParser):
    """What the checks need from a serialized document (entities decoded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, list[tuple[str, str | None]]]] = []  # start tags
        self.head_title = ""
        self.body_text: list[str] = []                      # outside <script>/<style>
        self.tables: list[list[tuple[str, list[str]]]] = []  # rows: ("th"|"td", cell texts)
        self.texts: dict[str, list[str]] = {}               # of TEXTS elements, in order
        self.stack: list[str] = []

    @classmethod
    def parse(cls, text: str) -> Dom:
        dom = cls()
        dom.feed(text)
        dom.close()
        return dom

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, attrs))
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append(("td", []))
        elif tag in ("td", "th") and self.tables and self.tables[-1]:
            kind, cells = self.tables[-1][-1]
            self.tables[-1][-1] = ("th" if tag == "th" else kind, [*cells, ""])
        if tag in TEXTS:
            self.texts.setdefault(tag, []).append("")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.stack:
            while self.stack.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if self.stack[-2:] == ["head", "title"]:
            self.head_title += data
        if "body" in self.stack and not {"script", "style"} & set(self.stack):
            self.body_text.append(data)
        if self.stack and self.stack[-1] in TEXTS:
            self.texts[self.stack[-1]][-1] += data
        if {"td", "th"} & set(self.stack) and self.tables and self.tables[-1]:
            kind, cells = self.tables[-1][-1]
            cells[-1] += data

    def tags(self, name: str) -> list[dict[str, str | None]]:
        return [dict(attrs) for tag, attrs in self.elements if tag == name]

    def rows(self, table: int, kind: str = "td") -> list[list[str]]:
        return [cells for k, cells in self.tables[table] if k == kind]


def template_vocabulary() -> tuple[set[str], set[str], int]:
    """Tags and attribute names the template writes itself, and its own ``<script>``s."""
    source = Dom.parse((TEMPLATES / "report.html.j2").read_text(encoding="utf-8"))
    tags = {tag for tag, _ in source.elements}
    attrs = {name for _, attrs in source.elements for name, _ in attrs}
    return tags, attrs, len(source.tags("script"))


# --- driving Chromium --------------------------------------------------------

def chromium() -> str:
    """The browser binary, or skip (fail under SYNCD_REQUIRE_BROWSER=1) when there is none."""
    named = os.environ.get("SYNCD_CHROMIUM")
    found = shutil.which(named) if named else next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if found:
        return found
    why = (f"SYNCD_CHROMIUM={named!r} is not an executable" if named else
           "Chromium is not installed (apt-get install -y --no-install-recommends chromium)")
    if REQUIRE:
        pytest.fail(f"SYNCD_REQUIRE_BROWSER=1 but {why}")
    pytest.skip(why)


def dump_dom(browser: str, page: Path, profile: Path) -> str:
    """The DOM of ``page`` after load and scripts, serialized by headless Chromium."""
    done = subprocess.run(
        [browser, "--headless=new", "--disable-gpu", "--no-sandbox", "--no-first-run",
         "--disable-extensions", "--host-resolver-rules=MAP * ~NOTFOUND",
         f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, encoding="utf-8", timeout=60, check=False)
    assert done.returncode == 0 and "<html" in done.stdout, \
        f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done.stdout


@dataclass(frozen=True)
class Loaded:
    report: ReportData
    dom: Dom        # as Chromium left it
    probed: bool    # CSP swapped for the probe script


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Loaded]:
    """Both reports, each loaded as shipped and with the probe, in parallel."""
    browser = chromium()
    root = tmp_path_factory.mktemp("browser")
    jobs: dict[tuple[str, str], tuple[ReportData, Path]] = {}
    for report in (reconcile_data(), inspect_data()):
        [path] = write_reports(report, ["html"], root / "out")
        page = path.read_text(encoding="utf-8")
        probed, swaps = CSP_META.subn(lambda _: PROBE, page)
        assert swaps == 1, "the page should carry exactly one CSP meta tag"
        probe_path = path.with_name(f"probed-{path.name}")
        probe_path.write_text(probed, encoding="utf-8")
        jobs[report.kind, "shipped"] = (report, path)
        jobs[report.kind, "probed"] = (report, probe_path)
    with ThreadPoolExecutor(len(jobs)) as pool:
        doms = dict(zip(jobs, pool.map(
            lambda kv: dump_dom(browser, kv[1][1], root / f"profile-{'-'.join(kv[0])}"),
            jobs.items()), strict=True))
    return {key: Loaded(report, Dom.parse(doms[key]), key[1] == "probed")
            for key, (report, _) in jobs.items()}


CASES = [(kind, variant) for kind in ("reconcile", "inspect") for variant in ("shipped", "probed")]


@pytest.fixture(params=CASES, ids=["-".join(c) for c in CASES])
def page(request: pytest.FixtureRequest, loaded: dict[tuple[str, str], Loaded]) -> Loaded:
    return loaded[request.param]


# --- the checks --------------------------------------------------------------

def test_no_injected_element_attribute_or_script(page: Loaded) -> None:
    tags, attrs, own_scripts = template_vocabulary()
    dom = page.dom
    found_tags = {tag for tag, _ in dom.elements}
    allowed = tags | ({"script"} if page.probed else set())
    assert found_tags <= allowed, f"elements the template never writes: {found_tags - allowed}"
    assert not dom.tags("img") and not dom.tags("textarea")
    assert len(dom.tags("script")) == own_scripts + page.probed
    found_attrs = {name for _, a in dom.elements for name, _ in a}
    allowed = attrs | ({"data-probe"} if page.probed else set())
    assert found_attrs <= allowed, \
        f"attributes the template never writes: {found_attrs - allowed}"
    assert not [n for n in found_attrs if n.startswith("on")]
    assert not [v for _, a in dom.elements for n, v in a
                if v and re.sub(r"\s", "", v).lower().startswith("javascript:")]
    assert len(dom.tags("style")) == 1


def test_title_unchanged_and_no_script_ran(page: Loaded) -> None:
    assert page.dom.head_title == page.report.title
    assert "PWNED" not in page.dom.head_title
    [html] = page.dom.tags("html")
    if not page.probed:
        [csp] = [m for m in page.dom.tags("meta")
                 if m.get("http-equiv") == "Content-Security-Policy"]
        assert "default-src 'none'" in (csp["content"] or "")
        assert "data-probe" not in html
        return
    # the probe ran (so JavaScript works here) and saw nothing else run
    assert html.get("data-probe"), "the probe script did not run: is JavaScript working?"
    probe = json.loads(html["data-probe"] or "")
    assert probe == {"pwned": None, "title": page.report.title, "errors": []}


def test_hostile_text_shows_literally_in_its_cell(page: Loaded) -> None:
    report, dom = page.report, page.dom
    detail = len(dom.tables) - 1
    assert dom.rows(detail) == detail_rows(report)
    if report.kind == "reconcile":
        assert [r[0] for r in dom.rows(0)] == list(report.channels)
        assert [r[1] for r in dom.rows(1)] == [f.field_label for f in report.field_rates]
        assert dom.rows(detail, "th")[0][5] == f"基准值（{report.reference}）"
    else:
        assert [r[0] for r in dom.rows(0)] == [g.label for g in report.by_dept]
    text = "".join(dom.body_text)
    for name, hostile in HOSTILE.items():
        assert hostile in text, f"{name} string not shown literally"
    assert report.run_id in text


def test_the_page_is_whole(page: Loaded) -> None:
    """Not a blank or truncated page: heading, cards, every chart and table drawn."""
    report, dom = page.report, page.dom
    drawn = charts(report)
    assert dom.texts["h1"] == [report.title]
    assert dom.texts["h2"][0] == "图表"
    assert dom.texts["figcaption"] == [c.title for c in drawn]
    assert len([d for d in dom.tags("div") if d.get("class") == "card"]) == len(report.summary)
    assert len(dom.tags("svg")) == len(drawn) >= 2
    assert len(dom.tags("figure")) == len(drawn)
    bars = [c for c in drawn if isinstance(c, BarChart)]
    lines = [c for c in drawn if isinstance(c, LineChart)]
    assert all(c.bars for c in bars)
    # a rect per bar; per line chart a frame plus a legend swatch per series
    assert len(dom.tags("rect")) == sum(len(c.bars) for c in bars) + \
        sum(1 + len(c.series) for c in lines)
    assert len(dom.tags("polyline")) == sum(len(c.series) for c in lines)
    assert len(dom.tags("circle")) == sum(len(s.dots) for c in lines for s in c.series)
    assert bool(lines) == (report.kind == "reconcile")
    assert len(dom.tags("table")) == 3
    assert dom.tags("html")[0].get("lang") == "zh-CN"
