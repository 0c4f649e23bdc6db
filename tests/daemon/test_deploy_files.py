"""The files under deploy/ agree with the code: every example config loads and schedules,
every secret it names is in the env example, and the unit runs the daemon as its own user."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest

from connectors.registry import open_channel
from syncd.admin.settings import AdminSettings
from syncd.config import Secret, load_config
from syncd.mapping import load_mapping
from syncd.scheduler import build_scheduler, report_jobs

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CONFIGS = sorted(DEPLOY.glob("*.toml"))
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _env_example() -> dict[str, str]:
    lines = (DEPLOY / "syncd.env.example").read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_there_are_example_configs():
    assert {p.name for p in CONFIGS} >= {"city.example.toml", "compose.syncd.toml"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_config_loads_and_its_schedules_parse(path):
    settings_text = "\n".join(line for line in path.read_text(encoding="utf-8").splitlines()
                              if not line.lstrip().startswith("#"))
    names = set(_ENV_REF.findall(settings_text))
    assert names <= set(_env_example()), f"not in syncd.env.example: {names - set(_env_example())}"
    environ = {name: f"dummy-{name.lower()}-0123456789" for name in names}
    config = load_config(path, environ)
    assert set(config.channels) == {"platform", "hall_db", "portal_db"}
    assert config.channels["hall_db"].options["client_encoding"] == "gbk"
    assert config.state_db.startswith("postgresql")
    assert isinstance(config.channels["platform"].options["app_secret"], Secret)
    platform = config.channels["platform"]
    open_channel(platform, load_mapping(platform.mapping)).close()  # its options are accepted
    settings = AdminSettings.from_config(config)
    assert settings.require_token(config) == environ["SYNCD_ADMIN_TOKEN"]
    scheduler = build_scheduler(config, run_job=print, replay=print,
                                replay_every=settings.replay_every,
                                reports=report_jobs(config))
    assert {j.id for j in scheduler.get_jobs()} >= {"job:hall_to_platform",
                                                    "job:platform_to_portal", "outbox-replay"}


def test_systemd_unit_runs_the_daemon_as_its_own_user_with_an_env_file():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(DEPLOY / "syncd.service")
    service = unit["Service"]
    assert service["User"] == "syncd"
    assert service["EnvironmentFile"] == "/etc/syncd/syncd.env"
    assert service["Restart"] == "on-failure"
    assert service["ExecStart"].endswith("--config /etc/syncd/syncd.toml run --drain-timeout 60")
    assert int(service["TimeoutStopSec"]) > 60  # longer than the drain timeout


def test_container_runs_as_a_non_root_user():
    text = (DEPLOY / "Containerfile").read_text(encoding="utf-8")
    assert text.startswith("# syncd") and "FROM python:3.11-slim" in text
    assert re.search(r"(?m)^USER syncd$", text)
    compose = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    assert "image: docker.io/library/postgres" in compose
    assert '"127.0.0.1:8470:8470"' in compose
