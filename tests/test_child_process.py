"""Helper processes are forked from syncd's fork server. When the engine's process is
killed, every helper it started ends at once, and the fork server after them; a
SIGTERM that ends the fork server (systemd signals every process of the service)
leaves the helpers to the engine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from helpers import alive

from syncd.child_process import Lifeline

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the fork server and /proc: Linux")

HELPER = '''
import os, time
from syncd.child_process import die_with_engine


def wait_forever(conn, engine_pid):
    """A helper that never checks its lifeline: only its watching thread can end it."""
    die_with_engine(engine_pid)
    conn.send(os.getppid())
    while True:
        time.sleep(1)
'''

ENGINE = '''
import os, sys, time
sys.path.insert(0, {here!r})
import helper_target
from syncd.child_process import helper_context, start_helpers

if __name__ == "__main__":
    start_helpers()
    ctx = helper_context()
    r, w = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=helper_target.wait_forever, args=(w, os.getpid()), daemon=True)
    proc.start()
    print(proc.pid, r.recv(), flush=True)
    time.sleep(120)
'''


def _gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(alive(p) for p in pids)


@contextmanager
def _engine(*args: str) -> Iterator[subprocess.Popen[str]]:
    """A stand-in engine process, killed on the way out whatever happened."""
    engine = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True)
    try:
        yield engine
    finally:
        if engine.poll() is None:
            engine.kill()
        engine.wait()


def test_a_killed_engine_takes_its_helpers_with_it_a_killed_fork_server_does_not(tmp_path):
    (tmp_path / "helper_target.py").write_text(textwrap.dedent(HELPER), encoding="utf-8")
    script = tmp_path / "engine.py"
    script.write_text(ENGINE.format(here=str(tmp_path)), encoding="utf-8")
    with _engine(str(script)) as engine:
        helper, server = engine.stdout.readline().split()  # type: ignore[union-attr]
        helper_pid, server_pid = int(helper), int(server)
        assert server_pid != engine.pid, "the helper was not forked from the fork server"
        os.kill(server_pid, signal.SIGTERM)
        assert _gone_within([server_pid], 10)
        time.sleep(0.3)
        assert alive(helper_pid), "a helper went with the fork server, not with its engine"
        engine.kill()
        engine.wait(timeout=10)
        assert _gone_within([helper_pid], 5), "a helper outlived its engine"


def test_a_lifeline_tells_when_the_engine_is_gone():
    dead = subprocess.Popen(["true"])
    dead.wait()  # reaped: its pid no longer exists
    assert Lifeline(dead.pid).gone()
    engine = subprocess.Popen(["sleep", "30"])
    try:
        lifeline = Lifeline(engine.pid)
        assert not lifeline.gone()
        engine.kill()
        waited = threading.Thread(target=lifeline.wait)
        waited.start()
        waited.join(timeout=10)
        assert not waited.is_alive(), "wait() did not return when the engine ended"
        assert lifeline.gone()
    finally:
        engine.kill()
        engine.wait()


def test_a_fork_server_ends_after_its_engine_and_helpers():
    script = textwrap.dedent('''
        import multiprocessing.forkserver, os, sys, time
        from syncd.child_process import helper_context, start_helpers
        if __name__ == "__main__":
            start_helpers()
            ctx = helper_context()
            proc = ctx.Process(target=time.sleep, args=(0.1,))
            proc.start()
            proc.join()
            print(multiprocessing.forkserver._forkserver._forkserver_pid, flush=True)
            time.sleep(120)
    ''')
    with _engine("-c", script) as engine:
        server_pid = int(engine.stdout.readline())  # type: ignore[union-attr]
        assert alive(server_pid)
        engine.kill()
        engine.wait(timeout=10)
        assert _gone_within([server_pid], 10), "the fork server outlived its engine"


def test_a_fork_server_preloads_the_drivers_of_its_helpers_channels_only(tmp_path):
    """Every helper holds what its fork server imported: a server started for SQLite
    channels has not loaded psycopg or PyMySQL, one started for PostgreSQL has."""
    script = textwrap.dedent('''
        import sys
        from pathlib import Path
        from syncd.child_process import helper_context, start_helpers
        from syncd.config import ChannelConfig

        def report(conn):
            conn.send(sorted(m for m in ("psycopg", "pymysql") if m in sys.modules))

        if __name__ == "__main__":
            start_helpers([ChannelConfig(f"c{i}", kind, url, Path("m.yaml"))
                           for i, (kind, _, url) in enumerate(a.partition(":")
                                                              for a in sys.argv[1:])])
            ctx = helper_context()
            r, w = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=report, args=(w,))
            proc.start()
            print(r.recv(), flush=True)
            proc.join()
    ''')
    (tmp_path / "preload.py").write_text(script, encoding="utf-8")
    sqlite = f"sql:sqlite:///{tmp_path / 'a.db'}"
    postgres = "postgresql+psycopg://u@127.0.0.1/db"

    def loaded(*channels: str) -> str:
        """What a helper holds, its fork server started for ``kind:url`` channels."""
        done = subprocess.run([sys.executable, str(tmp_path / "preload.py"), *channels],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip()

    assert loaded(sqlite) == "[]"
    assert loaded(sqlite, f"sql:{postgres}") == "['psycopg']"
    assert loaded("sql:mysql+pymysql://root@127.0.0.1/test") == "['pymysql']"
    # a URL whose dialect is not installed is left to the helper that opens it
    assert loaded("sql:nosuchdb://x", sqlite) == "[]"
    assert loaded(f"platform:{postgres}") == "[]"  # only SQL channels have drivers
