"""National code tables, kept as data in ``mappings/codes.yaml``.

Why data and not enums: the tables are versioned with the mappings, reviewers
read them, and a province adding a value is a data change, not a release.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

from syncd.errors import ConfigError

#: Where the shipped mapping files live (the repository's ``mappings/``).
MAPPINGS_DIR = Path(__file__).resolve().parent.parent / "mappings"


@lru_cache(maxsize=4)
def load_code_tables(path: Path = MAPPINGS_DIR / "codes.yaml") -> dict[str, dict[str, str]]:
    """Read the code tables: ``{table: {code: label}}``.

    Raises:
        ConfigError: the file is missing or not shaped as ``tables: {name: {code: label}}``.
    """
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read code tables: {exc.strerror}", file=str(path)) from exc
    tables = (doc or {}).get("tables")
    if not isinstance(tables, dict):
        raise ConfigError("expected a 'tables' mapping", file=str(path))
    out: dict[str, dict[str, str]] = {}
    for name, entries in tables.items():
        if not isinstance(entries, dict):
            raise ConfigError("expected code: label entries", file=str(path), key=str(name))
        out[str(name)] = {str(k): str(v) for k, v in entries.items()}
    return out


def label(table: str, code: str | None) -> str:
    """The Chinese label of ``code`` in ``table``, or the code itself when unknown."""
    if code is None:
        return ""
    return load_code_tables().get(table, {}).get(code, code)
