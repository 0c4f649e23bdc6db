"""Test helpers: seed a legacy channel, read one back as hashes, list-backed channels."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from connectors.base import Page
from connectors.sql import SqlChannel
from syncd.codes import MAPPINGS_DIR
from syncd.legacy_schemas import seed_legacy
from syncd.mapping import Mapping, load_mapping
from syncd.model import ServiceItem, content_hash, validate
from syncd.reconcile import ReconcileResult, reconcile
from syncd.sqlutil import make_engine


def mapping_for(schema: str) -> Mapping:
    return load_mapping(MAPPINGS_DIR / f"{schema}.yaml")


def open_sql(url: str, schema: str) -> SqlChannel:
    return SqlChannel(schema, make_engine(url), mapping_for(schema))


def seed(url: str, schema: str, items: Iterable[ServiceItem], *, create: bool = True,
         batch: int = 500) -> int:
    """Create the legacy tables (if asked) and write ``items`` through the mapping."""
    return seed_legacy(url, schema, items, create=create, batch=batch)


def hashes(url: str, schema: str) -> dict[str, str]:
    """Every item of a channel, mapped back to canonical, as {item_code: content_hash}."""
    channel = open_sql(url, schema)
    out: dict[str, str] = {}
    try:
        for page in channel.scan(1000):
            for record in page.records:
                item = channel.mapping.to_item(record)
                validate(item)
                out[item.item_code] = content_hash(item)
    finally:
        channel.close()
    return out


def _toml(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def write_config(path: Path, *, state_db: str, channels: dict[str, tuple[str, str, str]],
                 jobs: dict[str, dict], extra: str = "",
                 options: dict[str, dict[str, object]] | None = None) -> Path:
    """A config file: channels {name: (kind, url, mapping)}, jobs {name: settings},
    ``options`` more settings per channel (platform app key and secret …)."""
    lines = [f'state_db = "{state_db}"', f'mappings_dir = "{MAPPINGS_DIR}"', extra]
    for name, (kind, url, mapping) in channels.items():
        lines += [f"[channels.{name}]", f'kind = "{kind}"', f'url = "{url}"',
                  f'mapping = "{mapping}"']
        lines += [f"{k} = {_toml(v)}" for k, v in (options or {}).get(name, {}).items()]
    for name, settings in jobs.items():
        lines.append(f"[jobs.{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in settings.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class ListChannel:
    """A channel whose scan is a list of raw records, in the given order; with ``key``
    (the key column), a scan for ``keys`` lists only those records."""

    def __init__(self, name: str, records: list[dict], ordered: bool = True,
                 key: str | None = None) -> None:
        self.name, self.records, self.ordered_scan, self.key = name, records, ordered, key

    def scan(self, page_size: int, *, keys=None):
        listed = self.records
        if keys is not None and self.key is not None:
            wanted = set(keys)
            listed = [r for r in listed if r.get(self.key) in wanted]
        for i in range(0, len(listed), page_size):
            yield Page(listed[i:i + page_size], None)

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class ListOpener:
    """Opens a :class:`ListChannel` again in a reader process (picklable: the records and
    the mapping file, not the compiled mapping). ``pid_file``: where the opening process
    writes its pid."""

    name: str
    records: list
    ordered: bool
    mapping_file: str
    pid_file: str | None = None

    def __call__(self):
        if self.pid_file:
            Path(self.pid_file).write_text(str(os.getpid()))
        mapping = load_mapping(Path(self.mapping_file))
        return ListChannel(self.name, self.records, self.ordered, mapping.key_column), mapping


def run_reconcile(channels: dict, reference: str, *, apart: bool = False,
                  **kwargs) -> ReconcileResult:
    """``reconcile`` of ListChannels, here or (``apart``) each in a reader process."""
    for channel, mapping in channels.values():
        channel.key = mapping.key_column  # the re-read of differing items is by key
    openers = {n: ListOpener(c.name, c.records, c.ordered_scan, m.file)
               for n, (c, m) in channels.items()} if apart else None
    return reconcile(channels, reference, openers=openers, **kwargs)


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie nobody reaped has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class RunKiller:
    """SIGKILLs sync processes at random moments of their runs.

    The moment is taken from the run's own log (an event such as ``run_started``)
    rather than from the process's start, so the kills land inside runs however fast
    this machine runs them. A kill lands within a span of that event, one span per
    kind of run and event; when a run ends first, its kind's span shrinks to aim
    inside the next one."""

    def __init__(self, rng: random.Random, span: float = 2.0) -> None:
        self.rng, self.span = rng, span
        self.spans: dict[tuple[str, str], float] = {}

    def kill(self, proc: subprocess.Popen, log_path: Path, kind: str,
             after: str = "run_started") -> bool:
        """Kill ``proc`` once its log holds the event ``after``; False if it ended first."""
        while f'"{after}"' not in log_path.read_text(encoding="utf-8", errors="replace"):
            if proc.poll() is not None:
                raise AssertionError(f"the sync ended before its log said {after}:\n"
                                     + log_path.read_text(encoding="utf-8")[-2000:])
            time.sleep(0.01)
        span = self.spans.get((kind, after), self.span)
        started = time.monotonic()
        try:
            proc.wait(timeout=self.rng.uniform(0.0, span))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            return True
        self.spans[kind, after] = min(span, 0.8 * (time.monotonic() - started))
        return False
