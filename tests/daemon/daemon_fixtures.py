"""Fixtures for the daemon tests: a seeded source copied per test, and a harness that
starts `syncd run` processes, stops them, and scans everything they wrote for secrets.

Not a conftest.py: a second module named ``conftest`` would shadow the top-level one
that other tests import ``DB_KINDS`` from. Test modules load this one with
``pytest_plugins = ["daemon_fixtures"]``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import SECRETS, DaemonProcess, cli, free_port
from helpers import seed

from syncd.legacy_schemas import create_legacy_tables
from syncd.sample import generate
from syncd.sqlutil import make_engine

N_ITEMS = 3000


@pytest.fixture(scope="session")
def source_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A SQLite hall_db holding N_ITEMS generated items, seeded once for the session."""
    path = tmp_path_factory.mktemp("source") / "hall.db"
    items = list(generate(N_ITEMS, seed=5))
    seed(f"sqlite:///{path}", "hall_db", items)
    return path, sorted(i.item_code for i in items)


@dataclass(frozen=True)
class Channels:
    src_url: str
    dst_url: str
    codes: list[str]

    def as_config(self) -> dict[str, tuple[str, str, str]]:
        return {"hall": ("sql", self.src_url, "hall_db.yaml"),
                "portal": ("sql", self.dst_url, "portal_db.yaml")}


def empty_target(url: str) -> str:
    engine = make_engine(url)
    create_legacy_tables(engine, "portal_db")
    engine.dispose()
    return url


@pytest.fixture
def channels(tmp_path: Path, source_template: tuple[Path, list[str]]) -> Callable[..., Channels]:
    """Factory: a private copy of the seeded source, and an empty portal_db target."""

    def make(target_url: str | None = None) -> Channels:
        template, codes = source_template
        src = tmp_path / f"hall-{len(list(tmp_path.glob('hall-*.db')))}.db"
        shutil.copy(template, src)
        dst = target_url or f"sqlite:///{tmp_path}/portal.db"
        return Channels(f"sqlite:///{src}", empty_target(dst), codes)

    return make


@dataclass
class Harness:
    """Starts daemons and CLI commands for one test; remembers all their output."""

    workdir: Path
    daemons: list[DaemonProcess] = field(default_factory=list)
    cli_logs: list[Path] = field(default_factory=list)

    def port(self) -> int:
        return free_port()

    def start(self, config: Path, port: int, *, log_level: str = "INFO",
              drain_timeout: float = 20.0) -> DaemonProcess:
        daemon = DaemonProcess(config, port, self.workdir, log_level=log_level,
                               drain_timeout=drain_timeout).start()
        self.daemons.append(daemon)
        return daemon.wait_healthy()

    def cli(self, config: Path, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return cli(config, *args, workdir=self.workdir, logs=self.cli_logs, **kwargs)

    def all_output(self) -> dict[Path, str]:
        paths = [p for d in self.daemons for p in d.logs] + self.cli_logs
        return {p: p.read_text(errors="replace") for p in paths if p.exists()}


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    """The harness; at teardown every process is gone and no secret was ever written."""
    h = Harness(tmp_path)
    yield h
    for daemon in h.daemons:
        daemon.kill()
    for path, text in h.all_output().items():
        for secret in SECRETS:
            assert secret not in text, f"a secret leaked into {path.name}"
