"""A real `syncd run` subprocess for tests: start it, talk to its API, stop it, read its logs.

Every process a test starts (daemon or CLI) writes into files the harness keeps,
so the fixture can scan the whole session's output for secrets.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from helpers import write_config

from syncd.state import tables as t

TOKEN = f"tok-{uuid.uuid4().hex}"                 # the admin token, only ever in the environment
FAKE_PASSWORD = f"pw-{uuid.uuid4().hex[:16]}"     # put into a DB URL; must never be logged
PLATFORM_SECRET = f"sec-{uuid.uuid4().hex}"      # the platform app secret, from the environment
SECRETS = (TOKEN, FAKE_PASSWORD, PLATFORM_SECRET)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env() -> dict[str, str]:
    return {**os.environ, "SYNCD_ADMIN_TOKEN": TOKEN, "SYNCD_PLATFORM_SECRET": PLATFORM_SECRET,
            "PYTHONUNBUFFERED": "1"}


def daemon_config(path: Path, *, state_db: str, channels: dict[str, tuple[str, str, str]],
                  jobs: dict[str, dict[str, Any]], port: int, replay_every: str = "off",
                  token: bool = True, options: dict[str, dict[str, str]] | None = None) -> Path:
    """A config with an ``[admin]`` table; ``options`` adds raw TOML values to channels."""
    admin = ["[admin]", f"port = {port}", f'replay_every = "{replay_every}"']
    if token:
        admin.append('token = "${SYNCD_ADMIN_TOKEN}"')
    write_config(path, state_db=state_db, channels=channels, jobs=jobs,
                 extra="\n".join(admin) + "\n")
    text = path.read_text(encoding="utf-8")
    for name, values in (options or {}).items():
        header = f"[channels.{name}]\n"
        text = text.replace(header, header + "".join(f"{k} = {v}\n" for k, v in values.items()))
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class DaemonProcess:
    """One `syncd run` child process; its stderr and stdout go to files under ``workdir``."""

    config: Path
    port: int
    workdir: Path
    log_level: str = "INFO"
    drain_timeout: float = 20.0
    proc: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    def start(self) -> DaemonProcess:
        name = f"daemon-{self.port}-{uuid.uuid4().hex[:6]}"
        out, err = self.workdir / f"{name}.out", self.workdir / f"{name}.err"
        self.logs += [out, err]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "syncd.cli", "--config", str(self.config),
             "--log-level", self.log_level, "run", "--drain-timeout", str(self.drain_timeout)],
            stdout=out.open("wb"), stderr=err.open("wb"), env=env())
        return self

    def wait_healthy(self, timeout: float = 20.0) -> DaemonProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.stderr()[-3000:]
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.1)
        raise AssertionError(f"daemon not healthy after {timeout}s:\n{self.stderr()[-3000:]}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, path: str, *, token: str | None = TOKEN,
            **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.request(method, self.url + path, headers=headers,
                             timeout=kwargs.pop("timeout", 60), **kwargs)

    def runs(self, **params: Any) -> list[dict[str, Any]]:
        resp = self.api("GET", "/runs", params=params)
        assert resp.status_code == 200, resp.text
        return list(resp.json()["runs"])

    def terminate(self, timeout: float = 30.0) -> tuple[int, float]:
        """SIGTERM; the exit code and how long the process took to exit."""
        assert self.proc is not None
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        return code, time.monotonic() - start

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stderr(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.suffix == ".err"
                       and p.exists())


def cli(config: Path, *args: str, workdir: Path, logs: list[Path],
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a `syncd` command; its output is kept in ``logs`` for the secret scan."""
    done = subprocess.run([sys.executable, "-m", "syncd.cli", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=timeout, env=env(),
                          check=False)
    path = workdir / f"cli-{uuid.uuid4().hex[:8]}.log"
    path.write_text(done.stdout + done.stderr)
    logs.append(path)
    return done


def put_outbox_row(state_url: str, job: str, target: str, item_code: str) -> None:
    """An outbox row as a failed transfer leaves it, due now."""
    now = datetime.now(UTC)
    engine = sa.create_engine(state_url)
    with engine.begin() as conn:
        conn.execute(t.outbox.insert().values(
            job=job, target=target, item_code=item_code, content_hash="0" * 32, payload="{}",
            attempts=1, next_attempt_at=now, last_error="simulated timeout", status="pending",
            created_at=now, updated_at=now))
    engine.dispose()


def state_rows(state_url: str, table: sa.Table) -> list[dict[str, Any]]:
    engine = sa.create_engine(state_url)
    with engine.connect() as conn:
        rows = [r._asdict() for r in conn.execute(sa.select(table))]
    engine.dispose()
    return rows
