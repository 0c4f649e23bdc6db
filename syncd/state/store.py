"""StateStore: syncd's memory of what was delivered, where each job stands, and what failed.

Only the engine and the CLI/daemon use it; connectors never do. Every page's
outcomes and its checkpoint are written in one transaction, so the state is
never ahead of what is recorded (at-least-once, and the hashes make re-sending
a no-op).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import and_, bindparam, delete, func, inspect, select, text, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from syncd.errors import JobBusyError, StateError
from syncd.sqlutil import fetch_rows, make_engine, upsert, upsert_values
from syncd.state import tables as t

Clock = Callable[[], datetime]
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: the newest migration's revision (a test checks it is Alembic's head) and where Alembic
#: records a DB's: a state DB already there is opened without importing Alembic, whose
#: modules a process would keep for nothing (10 MB)
HEAD = "0003"
VERSION_TABLE = "syncd_alembic_version"


#: item_state.content_hash of an item sent but not yet recorded as delivered
UNCONFIRMED = ""


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Delivered:
    """An item a target now holds."""

    item_code: str
    content_hash: str
    target_version: int | None = None

    def __reduce__(self) -> tuple[Any, tuple[str, str, int | None]]:
        # a worker sends one per item delivered: as a plain call this pickles in a third
        # of the time a slotted dataclass's own state handling takes, both ways
        return Delivered, (self.item_code, self.content_hash, self.target_version)


@dataclass(frozen=True, slots=True)
class Failed:
    """An item that did not land: retried later (pending) or a dead letter (dead)."""

    item_code: str
    content_hash: str
    payload: dict[str, Any]
    error: str
    status: str  # pending | dead
    details: list[dict[str, str]] = field(default_factory=list)
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A record that could not be mapped or validated."""

    item_code: str | None
    field: str | None
    reason: str


@dataclass
class PageOutcome:
    """Everything one page produced, recorded together with the checkpoint."""

    target: str
    delivered: list[Delivered] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (item_code, detail)


def _aware(dt: datetime | None) -> datetime | None:
    """SQLite and MySQL hand back naive datetimes; syncd stores UTC."""
    return dt.replace(tzinfo=UTC) if dt is not None and dt.tzinfo is None else dt


class StateStore:
    """The state DB (SQLite file by default; PostgreSQL/MySQL by URL)."""

    def __init__(self, url: str, *, clock: Clock = utcnow, backoff: Callable[[int], float]
                 | None = None, max_attempts: int = 8) -> None:
        self.url = url
        self.clock = clock
        self.max_attempts = max_attempts
        self.backoff = backoff or (lambda attempts: min(3600.0, 30.0 * 2 ** (attempts - 1)))
        try:
            self.engine: Engine = make_engine(url)
        except Exception as exc:  # noqa: BLE001 - URL errors come in many types
            raise StateError(f"cannot open state DB: {exc}") from exc

    # --- schema ---------------------------------------------------------------
    def upgrade(self) -> None:
        """Apply Alembic migrations up to head (idempotent); a DB already at head is
        left as it is without importing Alembic."""
        if self._at_head():
            return
        from alembic import command  # here: only to migrate
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except OperationalError as exc:
            raise StateError(f"cannot migrate state DB: {exc.orig}") from exc

    def _at_head(self) -> bool:
        with self.engine.connect() as conn:
            if not inspect(conn).has_table(VERSION_TABLE):
                return False
            versions = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars()
            return list(versions) == [HEAD]

    def close(self) -> None:
        self.engine.dispose()

    # --- runs -----------------------------------------------------------------
    def begin_run(self, run_id: str, job: str, *, trigger: str, mode: str, dry_run: bool) -> None:
        with self.engine.begin() as conn:
            conn.execute(t.job_run.insert().values(
                id=run_id, job=job, trigger=trigger, mode=mode, dry_run=int(dry_run),
                started_at=self.clock(), outcome="running"))

    def finish_run(self, run_id: str, *, outcome: str, counts: dict[str, int],
                   error: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(t.job_run).where(t.job_run.c.id == run_id).values(
                finished_at=self.clock(), outcome=outcome, error=error, **counts))

    def runs(self, job: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        q = select(t.job_run).order_by(t.job_run.c.started_at.desc()).limit(limit)
        if job:
            q = q.where(t.job_run.c.job == job)
        with self.engine.connect() as conn:
            return [self._run_row(r._asdict()) for r in conn.execute(q)]

    def run(self, run_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.job_run).where(t.job_run.c.id == run_id)).first()
            if row is None:
                return None
            out = self._run_row(row._asdict())
            out["quarantine"] = [r._asdict() for r in conn.execute(
                select(t.quarantine.c.item_code, t.quarantine.c.field, t.quarantine.c.reason)
                .where(t.quarantine.c.run_id == run_id).order_by(t.quarantine.c.id).limit(1000))]
            return out

    @staticmethod
    def _run_row(row: dict[str, Any]) -> dict[str, Any]:
        for key in ("started_at", "finished_at"):
            row[key] = _aware(row[key]).isoformat() if row[key] else None
        return row

    # --- the job lock (backstop when no daemon serialises runs) ---------------
    def acquire_lock(self, job: str, owner: str, run_id: str) -> None:
        """Take the job's lock, or raise JobBusyError naming who holds it."""
        try:
            with self.engine.begin() as conn:
                conn.execute(t.job_lock.insert().values(job=job, owner=owner, run_id=run_id,
                                                        acquired_at=self.clock()))
        except IntegrityError:
            holder = self.lock_holder(job)
            raise JobBusyError(f"job {job!r} is already running"
                               + (f" (run {holder['run_id']}, {holder['owner']})" if holder else "")
                               ) from None

    def lock_holder(self, job: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.job_lock).where(t.job_lock.c.job == job)).first()
        return row._asdict() if row else None

    def release_lock(self, job: str, run_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(t.job_lock).where(and_(t.job_lock.c.job == job,
                                                       t.job_lock.c.run_id == run_id)))

    def break_lock_if_dead(self, job: str, owner_alive: Callable[[str], bool]) -> bool:
        """Free the job's lock when its owner process is gone (after a crash or SIGKILL).

        The interrupted run is marked ``interrupted``; True when a lock was freed.
        """
        with self.engine.begin() as conn:
            row = conn.execute(select(t.job_lock).where(t.job_lock.c.job == job)).first()
            if row is None or owner_alive(row.owner):
                return False
            conn.execute(delete(t.job_lock).where(and_(t.job_lock.c.job == job,
                                                       t.job_lock.c.run_id == row.run_id)))
            conn.execute(update(t.job_run).where(and_(t.job_run.c.id == row.run_id,
                                                      t.job_run.c.outcome == "running"))
                         .values(outcome="interrupted", finished_at=self.clock(),
                                 error=f"owner {row.owner} died; next run resumes from the checkpoint"))
        return True

    # --- checkpoints and delivered hashes -------------------------------------
    def checkpoint(self, job: str, channel: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(t.checkpoint.c.cursor).where(and_(
                t.checkpoint.c.job == job, t.checkpoint.c.channel == channel))).scalar()

    def reset_checkpoint(self, job: str, channel: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(t.checkpoint).where(and_(t.checkpoint.c.job == job,
                                                         t.checkpoint.c.channel == channel)))

    def delivered_hashes(self, job: str, target: str, codes: Sequence[str]) -> dict[str, str]:
        """The last hash delivered to ``target`` for each of ``codes`` that has one."""
        return self._delivered(t.item_state.c.content_hash, job, target, codes)

    def delivered_versions(self, job: str, target: str, codes: Sequence[str]) -> dict[str, int]:
        """The target's version of each of ``codes`` as of the last delivery (two-way jobs)."""
        return {c: int(v) for c, v in
                self._delivered(t.item_state.c.target_version, job, target, codes).items()}

    def _delivered(self, column: Any, job: str, target: str, codes: Sequence[str]
                   ) -> dict[str, Any]:
        """``column`` of the delivered state of each of ``codes`` where it is set."""
        if not codes:
            return {}
        s = t.item_state
        with self.engine.connect() as conn:
            rows = conn.execute(select(s.c.item_code, column).where(and_(
                s.c.job == job, s.c.target == target, s.c.item_code.in_(list(codes)),
                column.is_not(None))))
            return {code: value for code, value in rows}

    def conflicts(self, *, job: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Items both sides changed (two-way jobs), newest first, for an operator to settle."""
        c = t.conflict
        q = select(c).order_by(c.c.id.desc()).limit(limit)
        if job:
            q = q.where(c.c.job == job)
        with self.engine.connect() as conn:
            return [{**row._asdict(), "created_at": _aware(row.created_at)}
                    for row in conn.execute(q)]

    def delivered_codes_between(self, job: str, target: str, after: str | None,
                                upto: str | None) -> list[str]:
        """Codes delivered to ``target`` with ``after < code <= upto`` (None = unbounded)."""
        s = t.item_state
        cond = and_(s.c.job == job, s.c.target == target)
        if after is not None:
            cond = and_(cond, s.c.item_code > after)
        if upto is not None:
            cond = and_(cond, s.c.item_code <= upto)
        with self.engine.connect() as conn:
            return list(conn.execute(select(s.c.item_code).where(cond)).scalars())

    def unconfirm(self, job: str, target: str, codes: Sequence[str]) -> None:
        """Clear the delivered hash of ``codes`` before they are sent again.

        A write that lands but is not recorded (a crash in between) leaves the
        target ahead of the state. Were the source then to go back to what the state
        holds, the item would compare unchanged and the target keep the unrecorded
        version. The hash is set to ``UNCONFIRMED``, which no content hashes to, so the
        item is sent again until a delivery is recorded."""
        if not codes:
            return
        s = t.item_state
        with self.engine.begin() as conn:
            conn.execute(update(s).where(and_(
                s.c.job == job, s.c.target == target, s.c.item_code.in_(list(codes))))
                .values(content_hash=UNCONFIRMED))

    def forget_items(self, job: str, target: str | None = None) -> None:
        """Drop delivered hashes so the next run re-sends everything (``--full``)."""
        cond = t.item_state.c.job == job
        if target:
            cond = and_(cond, t.item_state.c.target == target)
        with self.engine.begin() as conn:
            conn.execute(delete(t.item_state).where(cond))

    # --- recording a page -----------------------------------------------------
    def record_page(self, job: str, run_id: str, *, outcomes: Iterable[PageOutcome],
                    quarantined: Sequence[Quarantined] = (), source: str,
                    cursor: str | None = None, advance: bool = False) -> None:
        """Record a page's outcomes and (if ``advance``) its checkpoint, atomically."""
        now = self.clock()
        with self.engine.begin() as conn:
            for out in outcomes:
                self._record_outcome(conn, job, run_id, out, now)
            if quarantined:
                conn.execute(t.quarantine.insert(), [
                    {"job": job, "run_id": run_id, "channel": source, "item_code": q.item_code,
                     "field": q.field, "reason": q.reason, "created_at": now}
                    for q in quarantined])
            if advance:
                upsert(conn, t.checkpoint, [{"job": job, "channel": source, "cursor": cursor,
                                             "updated_at": now}], ["job", "channel"])

    def _record_outcome(self, conn: Any, job: str, run_id: str, out: PageOutcome,
                        now: datetime) -> None:
        if out.delivered:
            rows = {d.item_code: {"job": job, "target": out.target, "item_code": d.item_code,
                                  "content_hash": d.content_hash,
                                  "target_version": d.target_version, "delivered_at": now}
                    for d in out.delivered}
            upsert(conn, t.item_state, list(rows.values()), ["job", "target", "item_code"])
            o = t.outbox
            to_target = and_(o.c.job == job, o.c.target == out.target)
            # most pages find no retry waiting for this target: one probe, rather than
            # a delete by every delivered code
            if conn.execute(select(o.c.id).where(to_target).limit(1)).first() is not None:
                conn.execute(delete(o).where(and_(to_target, o.c.item_code.in_(list(rows)))))
        for f in out.failed:
            self._put_outbox(conn, job, out.target, f, now)
        if out.conflicts:
            conn.execute(t.conflict.insert(), [
                {"job": job, "target": out.target, "item_code": code, "run_id": run_id,
                 "detail": detail, "created_at": now} for code, detail in out.conflicts])

    def _put_outbox(self, conn: Any, job: str, target: str, f: Failed, now: datetime) -> None:
        o = t.outbox
        key = and_(o.c.job == job, o.c.target == target, o.c.item_code == f.item_code)
        attempts = (conn.execute(select(o.c.attempts).where(key)).scalar() or 0) + 1
        delay = max(self.backoff(attempts), f.retry_after or 0.0)
        values = {"content_hash": f.content_hash,
                  "payload": orjson.dumps(f.payload).decode(), "attempts": attempts,
                  "next_attempt_at": now + timedelta(seconds=delay), "last_error": f.error,
                  "error_details": orjson.dumps(f.details).decode() if f.details else None,
                  "status": "dead" if attempts >= self.max_attempts else f.status,
                  "updated_at": now}
        if attempts == 1:
            conn.execute(o.insert().values(job=job, target=target, item_code=f.item_code,
                                           created_at=now, **values))
        else:
            conn.execute(update(o).where(key).values(**values))

    # --- outbox and dead letters ----------------------------------------------
    def outbox(self, *, job: str | None = None, status: str | None = None,
               items: Sequence[str] | None = None, due_before: datetime | None = None,
               limit: int = 1000) -> list[dict[str, Any]]:
        o = t.outbox
        q = select(o).order_by(o.c.id).limit(limit)
        if job:
            q = q.where(o.c.job == job)
        if status:
            q = q.where(o.c.status == status)
        if items:
            q = q.where(o.c.item_code.in_(list(items)))
        if due_before is not None:
            q = q.where(o.c.next_attempt_at <= due_before)
        with self.engine.connect() as conn:
            rows = [r._asdict() for r in conn.execute(q)]
        for r in rows:
            for key in ("next_attempt_at", "created_at", "updated_at"):
                r[key] = _aware(r[key])
            r["error_details"] = orjson.loads(r["error_details"]) if r["error_details"] else []
        return rows

    def mark_dead(self, job: str, codes: Sequence[str], reason: str) -> None:
        """Make outbox rows dead letters (e.g. the source no longer has the item)."""
        if not codes:
            return
        o = t.outbox
        with self.engine.begin() as conn:
            conn.execute(update(o).where(and_(o.c.job == job, o.c.item_code.in_(list(codes))))
                         .values(status="dead", last_error=reason, updated_at=self.clock()))

    def outbox_counts(self) -> dict[str, int]:
        o = t.outbox
        with self.engine.connect() as conn:
            rows = conn.execute(select(o.c.status, func.count()).group_by(o.c.status))
            return {status: n for status, n in rows}

    def discard(self, *, job: str | None = None, items: Sequence[str] | None = None) -> int:
        o = t.outbox
        cond = o.c.id.is_not(None)
        if job:
            cond = and_(cond, o.c.job == job)
        if items:
            cond = and_(cond, o.c.item_code.in_(list(items)))
        with self.engine.begin() as conn:
            return conn.execute(delete(o).where(cond)).rowcount

    # --- vanished rows and quarantine -----------------------------------------
    def record_vanished(self, job: str, channel: str, run_id: str, codes: Sequence[str]) -> None:
        if not codes:
            return
        now = self.clock()
        with self.engine.begin() as conn:
            upsert(conn, t.vanished, [{"job": job, "channel": channel, "item_code": c,
                                       "run_id": run_id, "detected_at": now} for c in codes],
                   ["job", "channel", "item_code"])

    def settle_cancelled(self, job: str, codes: Sequence[str]) -> None:
        """After items were cancelled in the job's targets: no longer vanished, and no
        delivered hash, so an item that comes back to the source is sent again."""
        with self.engine.begin() as conn:
            conn.execute(delete(t.vanished).where(and_(t.vanished.c.job == job,
                                                       t.vanished.c.item_code.in_(list(codes)))))
            conn.execute(delete(t.item_state).where(and_(
                t.item_state.c.job == job, t.item_state.c.item_code.in_(list(codes)))))

    def vanished(self, job: str | None = None) -> list[dict[str, Any]]:
        q = select(t.vanished).order_by(t.vanished.c.item_code)
        if job:
            q = q.where(t.vanished.c.job == job)
        with self.engine.connect() as conn:
            return [r._asdict() for r in conn.execute(q)]

    def quarantine(self, run_id: str) -> list[dict[str, Any]]:
        q = select(t.quarantine).where(t.quarantine.c.run_id == run_id).order_by(t.quarantine.c.id)
        with self.engine.connect() as conn:
            return [r._asdict() for r in conn.execute(q)]

    # --- reconciliation ---------------------------------------------------------
    def record_reconcile(self, run_id: str, *, started_at: datetime, channels: Sequence[str],
                         reference: str, items: int, rates: dict[str, float],
                         diffs: Iterable[Any], batch: int = 2000) -> None:
        """Keep one reconcile run and its differences, so later reports show the trend."""
        with self.engine.begin() as conn:
            conn.execute(t.reconcile_run.insert().values(
                id=run_id, started_at=started_at, channels=orjson.dumps(list(channels)).decode(),
                reference=reference, items=items, rates=orjson.dumps(rates).decode()))
            rows: list[dict[str, Any]] = []
            for d in diffs:
                rows.append({"run_id": run_id, "item_code": d.item_code, "channel": d.channel,
                             "field": d.field, "kind": d.kind,
                             "reference_value": d.reference_value,
                             "channel_value": d.channel_value})
                if len(rows) >= batch:
                    conn.execute(t.reconcile_diff.insert(), rows)
                    rows = []
            if rows:
                conn.execute(t.reconcile_diff.insert(), rows)

    def reconcile_trend(self, limit: int = 30) -> list[dict[str, Any]]:
        """The last ``limit`` reconcile runs, oldest first: id, started_at, items, rates."""
        r = t.reconcile_run
        q = select(r.c.id, r.c.started_at, r.c["items"], r.c.rates).order_by(
            r.c.started_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = [{"id": row.id, "started_at": _aware(row.started_at), "items": row.items,
                     "rates": orjson.loads(row.rates)} for row in conn.execute(q)]
        return rows[::-1]

    def reconcile_diffs(self, run_id: str) -> list[dict[str, Any]]:
        """The differences one reconcile run stored, in the order found."""
        d = t.reconcile_diff
        q = select(d.c.item_code, d.c.channel, d.c.field, d.c.kind, d.c.reference_value,
                   d.c.channel_value).where(d.c.run_id == run_id).order_by(d.c.id)
        with self.engine.connect() as conn:
            return [row._asdict() for row in conn.execute(q)]

    # --- what reconcile saw (syncd/seen.py) -----------------------------------------
    def forget_seen(self, channel: str, *, keep: str) -> None:
        """Drop the channel's seen and alike rows made under any fingerprint but ``keep``."""
        def forget(conn: Any) -> None:
            for s in (t.reconcile_seen, t.reconcile_alike):
                conn.execute(delete(s).where(s.c.channel == channel, s.c.fingerprint != keep))
        self._seen_call(forget)

    def seen(self, channel: str, fingerprint: str, codes: Sequence[str]
             ) -> dict[str, tuple[str, str, str | None]]:
        """item_code → (raw digest, exact digest, content hash or None) for those of
        ``codes`` seen under ``fingerprint``; the content hash only where it was kept for
        that exact digest."""
        if not codes:
            return {}
        values = {"channel": channel, "fingerprint": fingerprint, "codes": list(set(codes))}
        return self._seen_call(lambda conn: {row[0]: row[1:] for row
                                             in fetch_rows(conn, _SEEN_QUERY, values)[1]})

    def has_seen(self, channel: str, fingerprint: str) -> bool:
        """Whether any row of ``channel`` was seen under ``fingerprint``."""
        s = t.reconcile_seen
        return self._seen_call(lambda conn: conn.execute(
            select(s.c.item_code).where(s.c.channel == channel, s.c.fingerprint == fingerprint)
            .limit(1)).first() is not None)

    def save_seen(self, channel: str, fingerprint: str,
                  rows: Sequence[tuple[str, str, str]]) -> None:
        """Keep (item_code, raw digest, exact digest) rows, replacing older ones."""
        self._save_digests(t.reconcile_seen, ("raw_digest", "exact_digest"), channel,
                           fingerprint, rows)

    def save_alike(self, channel: str, fingerprint: str,
                   rows: Sequence[tuple[str, str, str]]) -> None:
        """Keep (item_code, exact digest, content hash) rows, replacing older ones."""
        self._save_digests(t.reconcile_alike, ("exact_digest", "content_hash"), channel,
                           fingerprint, rows)

    def _save_digests(self, table: Any, columns: tuple[str, str], channel: str,
                      fingerprint: str, rows: Sequence[tuple[str, str, str]]) -> None:
        """Upsert (item_code, *columns) rows of one channel; of one item_code given
        twice, the last."""
        names = ("channel", "item_code", "fingerprint", *columns)
        values = [(channel, code, fingerprint, a, b)
                  for code, a, b in {r[0]: r for r in rows}.values()]
        self._seen_call(lambda conn: upsert_values(conn, table, names, values,
                                                   ["channel", "item_code"]))

    def _seen_call(self, fn: Callable[[Any], Any]) -> Any:
        try:
            with self.engine.begin() as conn:
                return fn(conn)
        except SQLAlchemyError as exc:
            orig = getattr(exc, "orig", None) or exc
            raise StateError(f"reconcile_seen: {type(orig).__name__}: {orig}"[:500]) from exc


#: one statement for every page's lookup: a statement built per page with its codes in
#: it is left in reference cycles once run, holding those codes until the collector runs
_S, _A = t.reconcile_seen, t.reconcile_alike
_SEEN_QUERY = select(_S.c.item_code, _S.c.raw_digest, _S.c.exact_digest, _A.c.content_hash
                     ).select_from(_S.outerjoin(_A, and_(
                         _A.c.channel == _S.c.channel, _A.c.item_code == _S.c.item_code,
                         _A.c.fingerprint == _S.c.fingerprint,
                         _A.c.exact_digest == _S.c.exact_digest))).where(
    _S.c.channel == bindparam("channel"),
    _S.c.fingerprint == bindparam("fingerprint"),
    _S.c.item_code.in_(bindparam("codes", expanding=True)))


def open_store(url: str, **kwargs: Any) -> StateStore:
    """Open the state DB and bring its schema to head.

    Raises:
        StateError: the DB cannot be reached or migrated.
    """
    store = StateStore(url, **kwargs)
    try:
        store.upgrade()
    except (OperationalError, ProgrammingError) as exc:
        store.close()
        shown = make_url(url).render_as_string(hide_password=True)  # never the password
        raise StateError(f"state DB {shown!r}: {exc.orig}") from exc
    return store
