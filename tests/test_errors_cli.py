"""A malformed mapping or config gives one clear error line naming file, line and
field, and no traceback; exit codes are the documented ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from syncd.codes import MAPPINGS_DIR

HALL = (MAPPINGS_DIR / "hall_db.yaml").read_text(encoding="utf-8")


def syncd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "syncd.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=60)


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


BROKEN_MAPPINGS = [  # (replace, with, field named, line of this text in the result)
    ("  item_name: {column: SXMC, steps: [trim]}", "  item_nmae: {column: SXMC, steps: [trim]}",
     "item_nmae", "item_nmae"),
    ("codes: {即办件: \"1\", 承诺件: \"2\"}", "codes: {即办件: \"1\", 承诺件: \"7\"}",
     "handle_type", "承诺件: \"7\""),
    ("  conditions: SLTJ", "  conditions: {column: SLTJ, steps: [rot13]}", "conditions", "rot13"),
    ("  updated_at: {column: GXSJ, datetime: {tz: Asia/Shanghai}}",
     "  updated_at: {column: GXSJ, datetime: {tz: Mars/Olympus}}", "updated_at", "Mars"),
    ("  version: BBH", "  version: {colum: BBH}", "version", "{colum:"),
]


@pytest.mark.parametrize(("old", "new", "field", "at"), BROKEN_MAPPINGS,
                         ids=[b[2] for b in BROKEN_MAPPINGS])
def test_malformed_mapping_names_file_line_and_field(tmp_path, old, new, field, at):
    assert old in HALL
    bad = HALL.replace(old, new)
    path = tmp_path / "hall_db.yaml"
    path.write_text(bad, encoding="utf-8")
    proc = syncd("mappings", "check", str(path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{path}:{_line_of(bad, at)}" in lines[0]
    assert f"field={field}" in lines[0]


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("channel: x\nfields:\n  item_code: {column: A\n  item_name: B\n",
                    encoding="utf-8")
    proc = syncd("mappings", "check", str(path))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and f"{path}:" in proc.stderr
    assert "YAML syntax" in proc.stderr


def test_shipped_mappings_all_check():
    proc = syncd("mappings", "check")
    assert proc.returncode == 0, proc.stderr
    assert "hall_db.yaml" in proc.stdout and "portal_db.yaml" in proc.stdout


CONFIG = """\
state_db = "sqlite:///{tmp}/state.db"
mappings_dir = "{maps}"

[channels.hall]
kind = "sql"
url = "sqlite:///{tmp}/hall.db"
mapping = "hall_db.yaml"

[channels.portal]
kind = "sql"
url = "sqlite:///{tmp}/portal.db"
mapping = "portal_db.yaml"

[jobs.h2p]
source = "hall"
targets = ["portal"]
page_size = 500
"""

BROKEN_CONFIGS = [  # (replace, with, key named, text on the line)
    ('targets = ["portal"]', 'targets = ["potral"]', "jobs.h2p.targets", "potral"),
    ("page_size = 500", 'page_size = "500"', "jobs.h2p.page_size", "page_size"),
    ('kind = "sql"\nurl = "sqlite:///{tmp}/portal.db"',
     'kind = "ftp"\nurl = "sqlite:///{tmp}/portal.db"', "channels.portal.kind", "ftp"),
    ('mapping = "portal_db.yaml"', 'mapping = "nope.yaml"', "channels.portal.mapping", "nope"),
    ('url = "sqlite:///{tmp}/hall.db"', 'url = "${{HALL_DB_URL}}"', "channels.hall.url",
     "HALL_DB_URL"),
]


@pytest.mark.parametrize(("old", "new", "key", "at"), BROKEN_CONFIGS,
                         ids=[b[2] for b in BROKEN_CONFIGS])
def test_malformed_config_names_file_line_and_key(tmp_path, old, new, key, at):
    text = CONFIG.replace(old, new).format(tmp=tmp_path, maps=MAPPINGS_DIR)
    cfg = tmp_path / "syncd.toml"
    cfg.write_text(text, encoding="utf-8")
    proc = syncd("--config", str(cfg), "sync", "h2p")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{cfg}:{_line_of(text, at)}" in lines[0]
    assert f"[{key}]" in lines[0]


def test_unknown_job_is_a_config_error(tmp_path):
    cfg = tmp_path / "syncd.toml"
    cfg.write_text(CONFIG.format(tmp=tmp_path, maps=MAPPINGS_DIR), encoding="utf-8")
    proc = syncd("--config", str(cfg), "sync", "nosuchjob")
    assert proc.returncode == 2
    assert "no job named 'nosuchjob' (known: h2p)" in proc.stderr
