"""Streaming reconciliation of two channels vs the raw DBAPI read of both sides.

    python bench/run.py reconcile --rows N [--db sqlite|postgres|mysql]...
                                  [--pair hall_db:sqlite,portal_db:postgres]...
                                  [--seed S] [--profile] [--no-reladiff]

Each pair is two channels (the first is the reference, named "hall"; the second
"portal") seeded with the same ``generate(N, seed=S)`` items through their
shipped mappings, after which a known set of differences is injected into the
second channel (about 0.1 % of the items are really different, as many again
only cosmetically):

  missing            the item's rows are absent from the second channel
  extra              an item (generated past N) exists only in the second channel
  consult_phone      another phone number            → differs / consult_phone
  address            another address                 → differs / address
  materials          one material appended           → differs / materials
  cosmetic_phone     the phone in full-width digits  → must NOT be reported
  cosmetic_space     leading/trailing/inner whitespace in address, conditions,
                     office hours                    → must NOT be reported
  cosmetic_order     materials in reverse order      → must NOT be reported

Seeding goes through ``Mapping.from_item`` and plain bulk ``INSERT`` (no upsert,
no per-item child delete) and is not timed; PostgreSQL's tables are then analyzed,
as autovacuum would (``common.analyze``).

Measurements (JSON lines):
  raw_read_<pair>    raw DBAPI: every main, material and fee row of both channels,
                     each table in key order (``ORDER BY`` its item key), a
                     ``fetchmany(1000)`` loop that keeps nothing. Streaming
                     cursors: sqlite3's own, a psycopg server-side (named)
                     cursor, a pymysql ``SSCursor``. Run twice (before and after
                     the syncd phase); ``raw_seconds`` is the faster of the two,
                     so the ratio is never flattered by a cold cache.
  raw_read_apart_<pair>  the same raw reads, both sides at once in one spawned
                     process each (the way reconcile reads its channels).
  reconcile_<pair>   ``syncd.reconcile.reconcile`` over both SqlChannels with
                     reference="hall", as ``syncd report reconcile`` runs it: each
                     channel read, mapped and hashed in a reader process of its own
                     (``--in-process``: both in the one process, one after the
                     other). ratio = seconds / raw_seconds (the sequential raw read,
                     as the target is stated); ratio_vs_raw_apart = seconds /
                     raw_read_apart. The result is checked against the injected
                     differences (item code, kind, field) and the bench raises when
                     they disagree.
  reconcile_fill_<pair>  the same with a state store (as ``syncd report reconcile``
                     runs it), first run on a state DB already migrated (as where
                     syncd has run before): everything is mapped and each record's
                     raw digest and exact digest are stored, and the content hash
                     of each item found alike only after normalising (the 0.1 %
                     cosmetic ones).
  reconcile_warm_<pair>  after 1 % of the second channel's records got a cosmetic
                     edit: only those are mapped again, and as their exact digests
                     now differ from the first channel's, read again on both sides
                     and compared field by field; same checks.
  reladiff_<pair>    where reladiff can reach both sides (it has no SQLite
                     driver, and on MySQL it only accepts numeric or UUID keys,
                     so in practice PostgreSQL vs PostgreSQL): reladiff's
                     HASHDIFF of the two main tables only, key + the columns
                     whose raw values are directly comparable. Its ratio is
                     against the same raw read of all six tables, although it
                     reads only the two main ones.
                     reladiff compares raw column values: no mapping (code
                     tables, 是/否, units, timestamps are left out), no
                     normalisation (the cosmetic changes are reported as
                     differences) and no child tables (material changes are
                     invisible). Its counts are emitted next to what it should
                     see under those rules.

Peak RSS: each measured phase (syncd, reladiff) runs in a fresh ``spawn``ed
child process, so ``peak_rss_mb`` is that child's own high-water RSS (VmHWM; the
whole process: interpreter, imports, connections and the phase; see
``common.peak_rss_mb``) plus the VmHWM of each process below it, the fork server and
the reader processes forked from it (sampled
every 0.2 s while they run; the sum is an upper bound, as their peaks need not
coincide, and a page a reader shares with the fork server counts in both).
``peak_rss_by_process_mb`` lists those VmHWMs: this child's, then each process
below it (fork server first). ``peak_pss_mb`` is the largest sampled sum of the
tree's PSS, where a shared page is split among the processes sharing it: what the
tree really held, up to a peak that fell between two samples. ``base_rss_mb`` is
the child's VmHWM just before the phase started, and ``rss_mb_timeline`` the
current RSS (/proc/self/statm) sampled at ten even points of the phase (readers
included), to show growth. Seeding and the raw read happen in the parent and do
not count.

``--profile`` adds one more (untimed) child run of the syncd phase under
cProfile and prints the top functions to stderr.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import multiprocessing
import pstats
import resource
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from common import analyze, emit, log, peak_rss_mb, scratch_db, timed, workdir
from sqlalchemy.engine import make_url

from syncd.codes import MAPPINGS_DIR
from syncd.legacy_schemas import SCHEMAS, create_legacy_tables
from syncd.mapping import Mapping, load_mapping
from syncd.model import Material, ServiceItem
from syncd.sample import generate
from syncd.sqlutil import make_engine
from syncd.state.store import open_store

NAMES = ("hall", "portal")  # channel names given to reconcile; the first is the reference
REAL = ("missing", "extra", "consult_phone", "address", "materials")
COSMETIC = ("cosmetic_phone", "cosmetic_space", "cosmetic_order")
PLAN = REAL + COSMETIC
SEED_CHUNK = 5000
FETCH = 1000
_FULL_WIDTH = str.maketrans("0123456789-", "０１２３４５６７８９－")
_HALF_WIDTH = str.maketrans("０１２３４５６７８９－—", "0123456789--")

# main-table columns whose raw values mean the same thing in both legacy schemas
# (coded columns, flags, units, lists and timestamps are spelt differently)
RAW_COMPARABLE = {
    "hall_db": ("SXMC", "JBBM", "SSZT", "ZTBM", "QHDM", "FDSX", "FDSXSM", "CNSX", "CNSXSM",
                "DCCS", "DCYY", "WBDZ", "SLTJ", "BLLC", "BLDD", "BLSJ", "ZXDH", "JDTS", "SDYJ",
                "BBH"),
    "portal_db": ("title", "catalog_code", "dept", "dept_code", "region", "legal_days",
                  "legal_note", "promise_days", "promise_note", "visits", "visit_reason",
                  "online_url", "conditions", "flow", "address", "hours", "phone",
                  "complaint_phone", "basis", "version"),
}


def mapping_for(schema: str) -> Mapping:
    return load_mapping(MAPPINGS_DIR / f"{schema}.yaml")


# --- seeding with injected differences -------------------------------------------

@dataclasses.dataclass
class Injected:
    """What was done to the second channel, and what reconcile must therefore report."""

    expected: set[tuple[str, str, str | None]] = dataclasses.field(default_factory=set)
    counts: Counter[str] = dataclasses.field(default_factory=Counter)
    extra_items: int = 0

    def reladiff_expected(self) -> dict[str, int]:
        """What a raw main-table diff over RAW_COMPARABLE columns should report."""
        c = self.counts
        return {"only_first": c["missing"], "only_second": c["extra"],
                "changed": c["consult_phone"] + c["address"] + c["cosmetic_phone"]
                + c["cosmetic_space"]}


def _step(rows: int) -> int:
    """Every step-th item is touched: ~0.2 % of the items, each kind at least twice."""
    return max(1, min(500, rows // (2 * len(PLAN))))


def _altered(item: ServiceItem, kind: str, i: int) -> ServiceItem:
    if kind == "consult_phone":  # generated numbers are 64xxxxx: a 5xxxxxx one always differs
        return dataclasses.replace(item, consult_phone=f"0777-5{i % 1_000_000:06d}")
    if kind == "address":
        return dataclasses.replace(item, address=(item.address or "") + "（二号楼）")
    if kind == "materials":
        extra = Material("补充说明材料", "3", "1", 1, "2", "10", None, len(item.materials) + 1)
        return dataclasses.replace(item, materials=item.materials + (extra,))
    if kind == "cosmetic_phone":
        phone = item.consult_phone or "0777-6420000"
        wide = phone.translate(_HALF_WIDTH).translate(_FULL_WIDTH)
        return dataclasses.replace(item, consult_phone=wide if wide != phone
                                   else phone.translate(_HALF_WIDTH))
    if kind == "cosmetic_space":
        return dataclasses.replace(
            item, address=f"  {item.address}\u3000 ",
            conditions=(item.conditions or "").replace("\n", " \r\n  ") + "\n",
            office_hours=f"{item.office_hours}\t")
    if kind == "cosmetic_order":
        rev = tuple(dataclasses.replace(m, order=n)
                    for n, m in enumerate(reversed(item.materials), 1))
        return dataclasses.replace(item, materials=rev)
    raise ValueError(kind)


def planned_items(rows: int, seed: int, inj: Injected
                  ) -> Iterator[tuple[ServiceItem | None, ServiceItem | None]]:
    """(first channel's item, second channel's item) for every item of the run."""
    step = _step(rows)
    kinds = [k for n, k in zip(range(rows // step), _cycle(PLAN))]
    n_extra = kinds.count("extra")
    for i, item in enumerate(generate(rows + n_extra, seed=seed)):
        if i >= rows:  # only in the second channel
            inj.expected.add((item.item_code, "extra", None))
            yield None, item
            continue
        if i % step or i // step >= len(kinds):
            yield item, item
            continue
        kind = kinds[i // step]
        inj.counts[kind] += 1
        if kind == "missing":
            inj.expected.add((item.item_code, "missing", None))
            yield item, None
        elif kind == "extra":  # this slot only counts one extra item, added past N
            yield item, item
        else:
            if kind in REAL:
                inj.expected.add((item.item_code, "differs", kind))
            yield item, _altered(item, kind, i)
    inj.extra_items = n_extra


def _cycle(seq: tuple[str, ...]) -> Iterator[str]:
    while True:
        yield from seq


class _Writer:
    """Bulk plain INSERTs of mapped records into one legacy schema."""

    def __init__(self, url: str, schema: str) -> None:
        self.engine = make_engine(url)
        self.mapping = mapping_for(schema)
        tables = {t.name: t for t in create_legacy_tables(self.engine, schema)}
        self.main = tables[self.mapping.table or ""]
        self.children = [(c.record_key, tables[c.table or ""]) for c in self.mapping.children]
        self.buf: list[dict[str, Any]] = []
        self.rows = Counter[str]()

    def add(self, item: ServiceItem) -> None:
        self.buf.append(self.mapping.from_item(item))
        if len(self.buf) >= SEED_CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self.buf:
            return
        main = [{k: v for k, v in r.items() if k in self.main.c} for r in self.buf]
        with self.engine.begin() as conn:
            conn.execute(self.main.insert(), main)
            self.rows[self.main.name] += len(main)
            for key, table in self.children:
                kids = [row for r in self.buf for row in r.get(key) or ()]
                if kids:
                    conn.execute(table.insert(), kids)
                    self.rows[table.name] += len(kids)
        self.buf = []

    def close(self) -> None:
        self.flush()
        self.engine.dispose()


def seed_pair(first: tuple[str, str], second: tuple[str, str], rows: int, seed: int) -> Injected:
    """Fill both channels ((schema, url) each); differences go into the second."""
    inj = Injected()
    a, b = _Writer(first[1], first[0]), _Writer(second[1], second[0])
    for x, y in planned_items(rows, seed, inj):
        if x is not None:
            a.add(x)
        if y is not None:
            b.add(y)
    a.close()
    b.close()
    log(f"  seeded {dict(a.rows)} / {dict(b.rows)}")
    return inj


# --- raw read ---------------------------------------------------------------------

def raw_read(url: str, schema: str) -> int:
    """Every row of the channel's main and child tables, key-ordered, through fetchmany."""
    mapping = mapping_for(schema)
    md = sa.MetaData()
    tables = {t.name: t for t in SCHEMAS[schema](md)}
    plan = [(mapping.table or "", mapping.key_column)]
    plan += [(c.table or "", c.parent_key or "") for c in mapping.children]
    engine = make_engine(url)
    dialect = engine.dialect.name
    q = "`" if dialect in ("mysql", "mariadb") else '"'
    total = 0
    raw = engine.raw_connection()
    try:
        driver = raw.driver_connection
        for n, (name, key) in enumerate(plan):
            cols = ", ".join(q + c.name + q for c in tables[name].columns)
            sql = f"select {cols} from {q}{name}{q} order by {q}{key}{q}"
            if dialect == "postgresql":  # server-side cursor: nothing buffered client-side
                cur = driver.cursor(name=f"raw_{n}")
                cur.itersize = FETCH
            elif dialect in ("mysql", "mariadb"):
                import pymysql.cursors
                cur = driver.cursor(pymysql.cursors.SSCursor)
            else:
                cur = driver.cursor()
            cur.execute(sql)
            while batch := cur.fetchmany(FETCH):
                total += len(batch)
            cur.close()
        raw.commit()
    finally:
        raw.close()
        engine.dispose()
    return total


def raw_read_apart(sides: list[tuple[str, str]]) -> float:
    """Both channels' raw reads at once, one spawned process each (as reconcile reads
    them); seconds from the first start to the last exit."""
    ctx = multiprocessing.get_context("spawn")
    start = time.perf_counter()
    procs = [ctx.Process(target=raw_read, args=(url, schema)) for schema, url in sides]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"raw read process failed (exit code {proc.exitcode})")
    return time.perf_counter() - start


# --- the measured phases, each in a fresh spawned child ---------------------------

def _pss_mb(pid: str) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


class _RssSampler(threading.Thread):
    """Every ``interval`` seconds (Linux /proc): the current RSS of this process and every
    process below it (syncd's fork server, and reconcile's channel readers forked from
    it), and each one's VmHWM, so the peak counts the readers too."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval, self.samples, self.done = interval, [], threading.Event()
        self.page = resource.getpagesize()
        self.child_peaks: dict[int, float] = {}
        self.peak_pss = 0.0  # the largest sampled sum of PSS over the tree

    def _children(self) -> list[int]:
        """Every descendant: children, their children, and so on."""
        pids: list[int] = []
        parents = ["self"]
        while parents:
            found: list[int] = []
            for parent in parents:
                for task in Path(f"/proc/{parent}/task").glob("*/children"):
                    try:
                        found += [int(p) for p in task.read_text().split()]
                    except OSError:
                        continue
            pids += found
            parents = [str(p) for p in found]
        return pids

    def current(self) -> float:
        total = pss = 0.0
        for pid in ["self", *map(str, self._children())]:
            try:
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * self.page / 2**20
                pss += _pss_mb(pid)
                if pid != "self":
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            self.child_peaks[int(pid)] = max(self.child_peaks.get(int(pid), 0.0),
                                                             int(line.split()[1]) / 1024)
            except (OSError, ValueError, IndexError):
                continue  # the process ended between listing and reading
        self.peak_pss = max(self.peak_pss, pss)
        return total

    def run(self) -> None:
        while not self.done.wait(self.interval):
            self.samples.append(self.current())

    def peak(self) -> float:
        """This process's VmHWM plus each child's (an upper bound on the tree's peak)."""
        return peak_rss_mb() + sum(self.child_peaks.values())

    def peak_shared_once(self) -> float:
        """The largest sampled sum of the tree's PSS (proportional set size): a page that
        processes share (the imports the fork server made before forking the readers)
        is split among them, not counted once per process as in :meth:`peak`. Sampled,
        so it can miss a peak between two samples: a lower bound on the true peak."""
        self.current()
        return self.peak_pss

    def timeline(self, points: int = 10) -> list[float]:
        s = self.samples + [self.current()]
        return [round(s[min(len(s) - 1, (len(s) * k) // points)], 1) for k in range(1, points + 1)]


def _child_reconcile(conn: Any, sides: list[tuple[str, str]], profile_to: str | None,
                     state_url: str | None = None, in_process: bool = False) -> None:
    try:
        from connectors.sql import SqlChannel
        from syncd.channel_reader import Opener
        from syncd.config import ChannelConfig
        from syncd.reconcile import reconcile
        from syncd.state.store import open_store

        store = open_store(state_url) if state_url else None

        channels = {name: (SqlChannel(name, make_engine(url), mapping_for(schema)),
                           mapping_for(schema))
                    for name, (schema, url) in zip(NAMES, sides, strict=True)}
        # as `syncd report reconcile` runs it: each channel read in a process of its own
        openers = None if in_process else {
            name: Opener(ChannelConfig(name, "sql", url, MAPPINGS_DIR / f"{schema}.yaml"))
            for name, (schema, url) in zip(NAMES, sides, strict=True)}
        base = peak_rss_mb()
        sampler = _RssSampler()
        sampler.start()
        prof = cProfile.Profile() if profile_to else None
        start = time.perf_counter()
        if prof:
            prof.enable()
        result = reconcile(channels, reference=NAMES[0], store=store, openers=openers)
        if prof:
            prof.disable()
        seconds = time.perf_counter() - start
        sampler.done.set()
        peak, peak_pss = sampler.peak(), sampler.peak_shared_once()
        if prof and profile_to:
            prof.dump_stats(profile_to)
        for ch, _m in channels.values():
            ch.close()
        if store is not None:
            store.close()
        by_process = [peak_rss_mb(), *sampler.child_peaks.values()]
        conn.send({"seconds": seconds, "peak_rss_mb": peak, "peak_pss_mb": peak_pss,
                   "peak_rss_by_process_mb": [round(mb, 1) for mb in by_process],
                   "base_rss_mb": base, "timeline": sampler.timeline(), "items": result.items,
                   "diffs": [(d.item_code, d.kind, d.field) for d in result.diffs],
                   "unreadable": result.unreadable[:20], "n_unreadable": len(result.unreadable),
                   "consistent": {n: s.consistent for n, s in result.stats.items()},
                   "reused": result.reused, "compared_again": result.compared_again})
    except BaseException as exc:  # noqa: BLE001 - shipped to the parent
        import traceback
        conn.send({"error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"})
    finally:
        conn.close()


def _reladiff_target(schema: str, url: str) -> tuple[str, tuple[str, ...]]:
    """reladiff's URI and table path for one of our scratch databases."""
    u = make_url(url)
    table = mapping_for(schema).table or ""
    auth = u.username + (f":{u.password}" if u.password else "")
    if u.get_backend_name() == "postgresql":
        schema_name = str(u.query.get("options", "")).removeprefix("-csearch_path=")
        return f"postgresql://{auth}@{u.host}:{u.port}/{u.database}", (schema_name, table)
    return f"mysql://{auth}@{u.host}:{u.port}/{u.database}", (table,)


def _child_reladiff(conn: Any, sides: list[tuple[str, str]]) -> None:
    try:
        from reladiff import Algorithm, connect_to_table, diff_tables

        segs = []
        for schema, url in sides:
            uri, path = _reladiff_target(schema, url)
            segs.append(connect_to_table(uri, path, mapping_for(schema).key_column,
                                         extra_columns=RAW_COMPARABLE[schema]))
        base = peak_rss_mb()
        sampler = _RssSampler()
        sampler.start()
        start = time.perf_counter()
        minus, plus = set(), set()
        with diff_tables(*segs, algorithm=Algorithm.HASHDIFF) as diff:
            for sign, row in diff:
                (minus if sign == "-" else plus).add(row[0])
        seconds = time.perf_counter() - start
        sampler.done.set()
        conn.send({"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "base_rss_mb": base,
                   "timeline": sampler.timeline(),
                   "only_first": len(minus - plus), "only_second": len(plus - minus),
                   "changed": len(minus & plus)})
    except BaseException as exc:  # noqa: BLE001
        import traceback
        conn.send({"error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"})
    finally:
        conn.close()


def in_child(target: Any, *args: Any) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(child, *args))
    proc.start()
    child.close()
    try:
        out = parent.recv()
    except EOFError:
        out = {"error": "child died without a result"}
    proc.join()
    if proc.exitcode not in (0, None) and "error" not in out:
        out["error"] = f"child exit code {proc.exitcode}"
    return out


def reladiff_problem(kinds: tuple[str, str]) -> str | None:
    try:
        import reladiff  # noqa: F401
    except ImportError as exc:
        return f"reladiff is not importable ({exc}); pip install reladiff into the venv"
    if "sqlite" in kinds:
        return "reladiff has no SQLite driver (it supports PostgreSQL, MySQL and warehouses)"
    if "mysql" in kinds:  # sqeleton's MySQL has SUPPORTS_ALPHANUMS = False
        return ("reladiff cannot key a MySQL/MariaDB table by a string code (item codes are "
                "alphanumeric; it raises 'Cannot use a column of type Text() as a key')")
    for kind, module in (("postgres", "psycopg2"), ("mysql", "mysql.connector")):
        if kind in kinds:
            try:
                __import__(module)
            except ImportError:
                return f"reladiff needs {module} for {kind} (pip install " \
                       f"{'psycopg2-binary' if kind == 'postgres' else 'mysql-connector-python'})"
    return None


# --- one pair ---------------------------------------------------------------------

def run(pair: list[tuple[str, str]], rows: int, seed: int, *, profile: bool,
        use_reladiff: bool, in_process: bool) -> None:
    kinds = (pair[0][1], pair[1][1])
    label = kinds[0] if kinds[0] == kinds[1] else f"{kinds[0]}_{kinds[1]}"
    with workdir() as tmpname, scratch_db(kinds[0], Path(tmpname)) as url_a, \
            scratch_db(kinds[1], Path(tmpname)) as url_b:
        tmp = Path(tmpname)
        sides = [(pair[0][0], url_a), (pair[1][0], url_b)]
        log(f"[{label}] seeding {rows} items: {pair[0][0]}@{kinds[0]} (reference) and "
            f"{pair[1][0]}@{kinds[1]} with injected differences")
        with timed() as seed_t:
            inj = seed_pair(sides[0], sides[1], rows, seed)
            for _schema, url in sides:
                analyze(url)
        log(f"  seeding took {seed_t[0]:.1f}s; injected {dict(inj.counts)}, "
            f"{inj.extra_items} extra items")

        raws = []
        for attempt in (1, 2):
            if attempt == 2:
                log(f"[{label}] syncd reconcile (spawned child)")
                res = in_child(_child_reconcile, sides, None, None, in_process)
                if "error" in res:
                    raise RuntimeError(f"reconcile child failed: {res['error']}")
            with timed() as raw_t:
                raw_rows = sum(raw_read(url, schema) for schema, url in sides)
            raws.append(raw_t[0])
        raw_seconds = min(raws)
        emit(name=f"raw_read_{label}", rows=rows, table_rows=raw_rows,
             seconds=round(raw_seconds, 3), runs=[round(r, 3) for r in raws])
        apart = min(raw_read_apart(sides) for _ in range(2))
        emit(name=f"raw_read_apart_{label}", rows=rows, table_rows=raw_rows,
             seconds=round(apart, 3), note="both sides at once, one process each")
        mode = {"readers": "in_process" if in_process else "one process per channel",
                "raw_apart_seconds": round(apart, 3)}

        _emit_checked(f"reconcile_{label}", res, raw_seconds, inj, rows, **mode)

        if use_reladiff:
            why = reladiff_problem(kinds)
            if why:
                log(f"[{label}] reladiff skipped: {why}")
            else:
                log(f"[{label}] reladiff (spawned child)")
                rd = in_child(_child_reladiff, sides)
                if "error" in rd:
                    log(f"[{label}] reladiff failed: {rd['error']}")
                else:
                    emit(name=f"reladiff_{label}", rows=rows, seconds=round(rd["seconds"], 3),
                         raw_seconds=round(raw_seconds, 3),
                         ratio=round(rd["seconds"] / raw_seconds, 3),
                         peak_rss_mb=round(rd["peak_rss_mb"], 1),
                         base_rss_mb=round(rd["base_rss_mb"], 1),
                         only_first=rd["only_first"], only_second=rd["only_second"],
                         changed=rd["changed"],
                         diffs=rd["only_first"] + rd["only_second"] + rd["changed"],
                         expected_raw=inj.reladiff_expected(),
                         scope="main table only, raw values of RAW_COMPARABLE columns; "
                               "no mapping, no normalisation, no child tables")

        # The same reconcile with a state store, as `syncd report reconcile` runs it (after
        # reladiff, which would see the touched rows): the first run maps everything and
        # keeps each record's raw and exact digests (fill); after 1% of the second
        # channel's records are touched (a cosmetic edit, so the expected differences stay
        # the same), the next run maps only those and compares them field by field (warm).
        state_url = f"sqlite:///{tmp / 'state.db'}"
        # the state DB exists, migrated, as it does where syncd has run before (its first
        # open migrates it, importing Alembic: ~10 MB more in that one process)
        open_store(state_url).close()
        log(f"[{label}] syncd reconcile with a state store, first run (spawned child)")
        res = in_child(_child_reconcile, sides, None, state_url, in_process)
        _emit_checked(f"reconcile_fill_{label}", res, raw_seconds, inj, rows, **mode)
        touched = touch(*sides[1], every=100)
        log(f"[{label}] touched {touched} records; reconcile again (spawned child)")
        res = in_child(_child_reconcile, sides, None, state_url, in_process)
        _emit_checked(f"reconcile_warm_{label}", res, raw_seconds, inj, rows, touched=touched,
                      **mode)

        if profile:
            log(f"[{label}] profiling the syncd phase (cProfile, untimed)")
            out = tmp / "reconcile.prof"
            res = in_child(_child_reconcile, sides, str(out), None, in_process)
            if "error" in res:
                raise RuntimeError(f"profiled reconcile failed: {res['error']}")
            log(f"  profiled run: {res['seconds']:.1f}s")
            for order in ("tottime", "cumulative"):
                buf = io.StringIO()
                pstats.Stats(str(out), stream=buf).sort_stats(order).print_stats(30)
                log(buf.getvalue())


def _emit_checked(name: str, res: dict[str, Any], raw_seconds: float, inj: Injected, rows: int,
                  **extra: Any) -> None:
    """One reconcile measurement; raises when its differences are not the injected ones."""
    if "error" in res:
        raise RuntimeError(f"{name} child failed: {res['error']}")
    found = set(res["diffs"])
    by_kind = Counter(k if k != "differs" else f"differs:{f}" for _c, k, f in found)
    missed, spurious = inj.expected - found, found - inj.expected
    ok = not missed and not spurious and res["n_unreadable"] == 0 \
        and res["items"] == rows + inj.extra_items
    emit(name=name, rows=rows, items=res["items"],
         seconds=round(res["seconds"], 3), raw_seconds=round(raw_seconds, 3),
         ratio=round(res["seconds"] / raw_seconds, 3),
         **({"ratio_vs_raw_apart": round(res["seconds"] / extra["raw_apart_seconds"], 3)}
            if "raw_apart_seconds" in extra else {}),
         peak_rss_mb=round(res["peak_rss_mb"], 1), peak_pss_mb=round(res["peak_pss_mb"], 1),
         base_rss_mb=round(res["base_rss_mb"], 1),
         peak_rss_by_process_mb=res["peak_rss_by_process_mb"],
         rss_mb_timeline=res["timeline"], diffs=len(res["diffs"]),
         diffs_by_kind=dict(sorted(by_kind.items())), expected_diffs=len(inj.expected),
         injected=dict(inj.counts), cosmetic_injected=sum(inj.counts[k] for k in COSMETIC),
         unreadable=res["n_unreadable"], reused=res["reused"],
         compared_again=res["compared_again"], correct=ok, **extra)
    if not ok:
        raise AssertionError(
            f"[{name}] reconcile disagrees with the injected differences: "
            f"{len(missed)} not found (e.g. {sorted(missed)[:5]}), "
            f"{len(spurious)} not injected (e.g. {sorted(spurious)[:5]}), "
            f"{res['n_unreadable']} unreadable (e.g. {res['unreadable'][:3]}), "
            f"items {res['items']} vs expected {rows + inj.extra_items}")


def touch(schema: str, url: str, *, every: int) -> int:
    """A cosmetic edit (a trailing space in office hours) on every ``every``-th record."""
    mapping = mapping_for(schema)
    column = next(f.column for f in mapping.fields if f.name == "office_hours")
    table = next(t for t in SCHEMAS[schema](sa.MetaData()) if t.name == mapping.table)
    key = table.c[mapping.key_column]
    engine = make_engine(url)
    touched = 0
    with engine.begin() as conn:
        codes = [code for i, code in enumerate(conn.execute(sa.select(key).order_by(key))
                                               .scalars()) if i % every == 0]
        for i in range(0, len(codes), 1000):
            touched += conn.execute(sa.update(table).where(
                key.in_(codes[i:i + 1000]), table.c[column].is_not(None)).values(
                {column: table.c[column] + " "})).rowcount
    engine.dispose()
    return touched


def parse_pair(spec: str) -> list[tuple[str, str]]:
    sides = []
    for part in spec.split(","):
        schema, _, kind = part.strip().partition(":")
        if schema not in SCHEMAS or kind not in ("sqlite", "postgres", "mysql"):
            raise argparse.ArgumentTypeError(
                f"bad side {part!r}: want schema:db with schema in {sorted(SCHEMAS)} "
                "and db in sqlite|postgres|mysql")
        sides.append((schema, kind))
    if len(sides) != 2:
        raise argparse.ArgumentTypeError("a pair is two sides: hall_db:sqlite,portal_db:postgres")
    return sides


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench/run.py reconcile",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--db", action="append", choices=["sqlite", "postgres", "mysql"],
                        help="hall_db and portal_db on this kind of database (repeatable)")
    parser.add_argument("--pair", action="append", type=parse_pair,
                        help="schema:db,schema:db, the first is the reference (repeatable)")
    parser.add_argument("--profile", action="store_true",
                        help="also run the syncd phase under cProfile (stderr)")
    parser.add_argument("--no-reladiff", dest="reladiff", action="store_false")
    parser.add_argument("--in-process", action="store_true",
                        help="read the channels one after another in one process instead "
                             "of one reader process per channel (as the CLI does)")
    args = parser.parse_args(argv)
    if args.rows < 2 * len(PLAN):
        parser.error(f"--rows must be at least {2 * len(PLAN)}")
    pairs = [[("hall_db", db), ("portal_db", db)] for db in args.db or []] + (args.pair or [])
    for pair in pairs or [[("hall_db", "sqlite"), ("portal_db", "sqlite")]]:
        run(pair, args.rows, args.seed, profile=args.profile, use_reladiff=args.reladiff,
            in_process=args.in_process)
