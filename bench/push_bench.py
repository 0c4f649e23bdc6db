"""Push to the platform simulator: syncd vs the simulator's own maximum, same run.

Measurements (JSON lines):
  platform_raw_push   the simulator's maximum: pre-built, signed batchUpsert requests of
                      the same items and batch size, sent back to back over one
                      keep-alive connection (no mapping, no state, no source reads)
  platform_push       syncd: a full push job, hall_db (SQLite) → platform, through the
                      mappings, the state DB, receipts and the outbox
ratio = items_per_s / the simulator's max items_per_s.

Each measurement gets a fresh simulator in its own process (``syncd platform-sim``,
in memory), so client and server do not share a GIL and both start empty. The
client-side rate limit is off (``rate_per_second = 0``): the simulator has no
quota, and the bench measures syncd, not the profile's 20 requests/s.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
from common import emit, log, timed, workdir

from connectors.platform.signing import new_nonce, sign_headers
from syncd.codes import MAPPINGS_DIR
from syncd.config import load_config
from syncd.engine import RunRequest, SyncEngine
from syncd.legacy_schemas import seed_legacy
from syncd.mapping import load_mapping
from syncd.sample import generate
from syncd.state.store import open_store

APP = "bench"
BATCH = 100  # the reference profile's batch size
UPSERT = "/api/v1/items:batchUpsert"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def simulator(secret: str) -> Iterator[str]:
    """A fresh in-memory simulator in its own process; yields its URL."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "syncd.cli", "--log-level", "WARNING",
                             "platform-sim", "--port", str(port), "--app-key", APP],
                            env={**os.environ, "SYNCD_SIM_SECRET": secret},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass  # not listening yet: poll again until the deadline
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"simulator did not start: {proc.stderr.read().decode()[-500:]}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def raw_push(url: str, secret: str, payloads: list[dict]) -> int:
    """Signed batchUpsert requests straight from prepared payloads; returns items accepted."""
    bodies = [orjson.dumps({"items": payloads[i:i + BATCH]})
              for i in range(0, len(payloads), BATCH)]
    accepted = 0
    with httpx.Client(base_url=url, timeout=30) as client:
        for body in bodies:
            headers = sign_headers("hmac-sha256", APP, secret, "POST", UPSERT, [], body,
                                   int(time.time() * 1000), new_nonce())
            response = client.post(UPSERT, content=body,
                                   headers={**headers, "Content-Type": "application/json"})
            results = orjson.loads(response.content)["data"]["results"]
            accepted += sum(r["status"] == "accepted" for r in results)
    return accepted


def syncd_push(url: str, secret: str, tmp: Path, source_url: str) -> int:
    cfg = tmp / "syncd.toml"
    cfg.write_text(f"""
state_db = "sqlite:///{tmp}/state.db"
mappings_dir = "{MAPPINGS_DIR}"
[channels.hall]
kind = "sql"
url = "{source_url}"
mapping = "hall_db.yaml"
[channels.platform]
kind = "platform"
url = "{url}"
mapping = "platform/reference.yaml"
app_key = "{APP}"
app_secret = "{secret}"
rate_per_second = 0
[jobs.push]
source = "hall"
targets = ["platform"]
page_size = 1000
""", encoding="utf-8")
    config = load_config(cfg, {})
    store = open_store(config.state_db)
    try:
        result = SyncEngine(config, store).run(RunRequest("push", trigger="bench"))
    finally:
        store.close()
    if result.outcome != "ok":
        raise RuntimeError(f"push did not finish cleanly: {result.outcome} {result.counts}")
    return result.counts["delivered"]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench/run.py push")
    parser.add_argument("--items", type=int, default=20_000)
    args = parser.parse_args(argv)
    n = args.items
    secret = secrets.token_hex(16)
    with workdir() as tmp_name:
        tmp = Path(tmp_name)
        log(f"generating {n} items …")
        items = list(generate(n, seed=42))
        mapping = load_mapping(MAPPINGS_DIR / "platform" / "reference.yaml")
        payloads = [mapping.from_item(item) for item in items]
        source_url = f"sqlite:///{tmp}/hall.db"
        seed_legacy(source_url, "hall_db", items)

        with simulator(secret) as url:
            with timed() as t_raw:
                accepted = raw_push(url, secret, payloads)
        if accepted != n:
            raise RuntimeError(f"raw push: simulator accepted {accepted} of {n}")
        raw_ips = n / t_raw[0]
        emit(name="platform_raw_push", items=n, seconds=round(t_raw[0], 3),
             items_per_s=round(raw_ips, 1))

        with simulator(secret) as url:
            with timed() as t_sync:
                delivered = syncd_push(url, secret, tmp, source_url)
        if delivered != n:
            raise RuntimeError(f"syncd push delivered {delivered} of {n}")
        ips = n / t_sync[0]
        emit(name="platform_push", items=n, seconds=round(t_sync[0], 3),
             items_per_s=round(ips, 1), sim_max_items_per_s=round(raw_ips, 1),
             ratio=round(ips / raw_ips, 3))
