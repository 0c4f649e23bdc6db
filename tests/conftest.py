"""Shared fixtures: fresh databases on SQLite, PostgreSQL and MariaDB/MySQL.

The server URLs come from SYNCD_TEST_POSTGRES_URL / SYNCD_TEST_MYSQL_URL
(defaults: this machine's local servers). Where a server is unreachable the
tests that need it skip with the reason, except when SYNCD_REQUIRE_DBS=1
(as .ci/run sets it): then an unreachable server fails the run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

SERVERS = {
    "postgres": os.environ.get("SYNCD_TEST_POSTGRES_URL",
                               "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mysql": os.environ.get("SYNCD_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
REQUIRE = os.environ.get("SYNCD_REQUIRE_DBS") == "1"
_reachable: dict[str, str | None] = {}


def _probe(kind: str) -> str | None:
    """None when the server answers, else why not."""
    if kind not in _reachable:
        engine = sa.create_engine(SERVERS[kind])
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("select 1"))
            _reachable[kind] = None
        except Exception as exc:  # noqa: BLE001 - any failure to connect means "not here"
            _reachable[kind] = f"{kind} server at {make_url(SERVERS[kind]).render_as_string()} " \
                               f"unreachable: {type(exc).__name__}"
        finally:
            engine.dispose()
    return _reachable[kind]


def require_server(kind: str) -> None:
    if kind == "sqlite":
        return
    why = _probe(kind)
    if why is not None:
        if REQUIRE:
            pytest.fail(f"SYNCD_REQUIRE_DBS=1 but {why}")
        pytest.skip(why)


DB_KINDS = ["sqlite", "postgres", "mysql"]
#: a reconcile test run both ways: channels read here, and each in a reader process
APART = pytest.mark.parametrize("apart", [False, True], ids=["here", "readers"])


@pytest.fixture
def fresh_db(tmp_path) -> Iterator[Callable[[str], str]]:
    """Factory: ``fresh_db(kind)`` → URL of a new empty database, dropped afterwards."""
    cleanups: list[Callable[[], None]] = []

    def make(kind: str) -> str:
        require_server(kind)
        name = f"syncd_t_{uuid.uuid4().hex[:10]}"
        if kind == "sqlite":
            return f"sqlite:///{tmp_path / (name + '.db')}"
        admin = sa.create_engine(SERVERS[kind], isolation_level="AUTOCOMMIT")
        base = make_url(SERVERS[kind])
        with admin.connect() as conn:
            if kind == "postgres":
                conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
                url = base.update_query_dict({"options": f"-csearch_path={name}"})
                drop = f'DROP SCHEMA "{name}" CASCADE'
            else:
                conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
                url = base.set(database=name)
                drop = f"DROP DATABASE `{name}`"

        def cleanup() -> None:
            with admin.connect() as c:
                c.execute(sa.text(drop))
            admin.dispose()

        cleanups.append(cleanup)
        return url.render_as_string(hide_password=False)

    yield make
    for cleanup in reversed(cleanups):
        cleanup()


@pytest.fixture(scope="session", autouse=True)
def _temp_files_of_started_processes(tmp_path_factory) -> Iterator[None]:
    """The syncd processes the tests start, and SIGKILL, leave behind what they could
    not clean up (multiprocessing's directory of the fork server's socket, one per
    killed run): under pytest's own temporary directory, which pytest prunes, not in
    the machine's /tmp."""
    patch = pytest.MonkeyPatch()
    patch.setenv("TMPDIR", str(tmp_path_factory.mktemp("started-processes")))
    yield
    patch.undo()
