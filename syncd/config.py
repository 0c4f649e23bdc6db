"""Config: one TOML file, read once at the edge into frozen, typed objects.

``${NAME}`` is replaced from the environment (secrets stay out of the file);
values so filled, and keys named like secrets, are wrapped in :class:`Secret`
so the log redactor and every ``repr`` hide them. Errors name file, line and key.
Nothing below this module reads ``os.environ``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncd.codes import MAPPINGS_DIR
from syncd.errors import ConfigError
from syncd.retry import RetryPolicy

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SECRET_WORDS = ("secret", "password", "token", "passwd")
CHANNEL_KINDS = ("sql", "platform")
JOB_MODES = ("incremental", "full")


class Secret(str):
    """A string that never shows itself in reprs, logs or reports."""

    def __repr__(self) -> str:
        return "Secret('***')"


@dataclass(frozen=True)
class ChannelConfig:
    """One channel: its connector kind, where it lives, its mapping, kind-specific options."""

    name: str
    kind: str
    url: str
    mapping: Path
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobConfig:
    """One job: a source channel into one or more targets."""

    name: str
    source: str
    targets: tuple[str, ...]
    mode: str = "incremental"
    schedule: str | None = None
    page_size: int = 500
    max_errors: int | None = None
    max_error_ratio: float | None = None
    lag_seconds: float = 0.0
    two_way: bool = False  # the target is also edited: send BASE_VERSION, record conflicts
    workers: int | None = None  # processes for a whole-table read; None: one per CPU, up to 4


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    file: str
    state_db: str
    mappings_dir: Path
    timezone: str
    channels: dict[str, ChannelConfig]
    jobs: dict[str, JobConfig]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    admin: dict[str, Any] = field(default_factory=dict)
    reports: dict[str, Any] = field(default_factory=dict)

    def job(self, name: str) -> JobConfig:
        """The job called ``name``, or a ConfigError listing the known ones."""
        try:
            return self.jobs[name]
        except KeyError:
            raise ConfigError(f"no job named {name!r} (known: {', '.join(self.jobs) or 'none'})",
                              file=self.file) from None

    def secrets(self) -> list[str]:
        """Every secret value in the config, for the log redactor."""
        found: list[str] = []

        def walk(value: Any) -> None:
            if isinstance(value, Secret) and value:
                found.append(str(value))
            elif isinstance(value, AbcMapping):
                for v in value.values():
                    walk(v)
            elif isinstance(value, list | tuple):
                for v in value:
                    walk(v)

        walk(self.admin)
        for ch in self.channels.values():
            walk(ch.options)
            walk(ch.url)
        return found


class _Reader:
    """Reads one parsed TOML document, knowing how to point at a key's line."""

    def __init__(self, path: Path, text: str, environ: AbcMapping[str, str]) -> None:
        self.path, self.lines, self.environ = path, text.splitlines(), environ

    def line_of(self, *keys: str) -> int | None:
        """Best-effort line of ``[a.b]``'s key ``c`` for keys (a, b, c)."""
        section_line = 0
        if len(keys) > 1:
            header = re.compile(r"^\s*\[\s*" + r"\.".join(re.escape(k) for k in keys[:-1])
                                + r"\s*\]")
            for i, line in enumerate(self.lines):
                if header.match(line):
                    section_line = i + 1
                    break
        key = re.compile(r"^\s*\"?" + re.escape(keys[-1]) + r"\"?\s*=")
        for i in range(section_line, len(self.lines)):
            if i > section_line and self.lines[i].lstrip().startswith("[") and section_line:
                break
            if key.match(self.lines[i]):
                return i + 1
        return section_line or None

    def fail(self, message: str, *keys: str) -> ConfigError:
        return ConfigError(message, file=str(self.path), line=self.line_of(*keys),
                           key=".".join(keys))

    def interpolate(self, value: Any, *keys: str) -> Any:
        """Fill ``${NAME}`` from the environment; secret-looking keys become :class:`Secret`."""
        if isinstance(value, dict):
            return {k: self.interpolate(v, *keys, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self.interpolate(v, *keys) for v in value]
        if not isinstance(value, str):
            return value
        used_env = False

        def repl(m: re.Match[str]) -> str:
            nonlocal used_env
            name = m.group(1)
            if name not in self.environ:
                raise self.fail(f"environment variable {name} is not set", *keys)
            used_env = True
            return self.environ[name]

        out = _ENV.sub(repl, value)
        secretish = any(w in keys[-1].lower() for w in SECRET_WORDS) if keys else False
        return Secret(out) if used_env or secretish else out

    def get(self, table: dict[str, Any], key: str, kind: type | tuple[type, ...], *where: str,
            default: Any = ...) -> Any:
        if key not in table:
            if default is ...:
                raise self.fail("is required", *where, key)
            return default
        value = table[key]
        if isinstance(value, bool) and kind in (int, float) or not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise self.fail(f"must be {names}, got {value!r}", *where, key)
        return value


def load_config(path: Path, environ: AbcMapping[str, str]) -> Config:
    """Read and check the config file.

    Raises:
        ConfigError: naming the file, line and key at fault.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror}", file=str(path)) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError(f"TOML syntax: {exc}", file=str(path),
                          line=int(m.group(1)) if m else None) from None
    r = _Reader(path, text, environ)
    doc = r.interpolate(doc)
    known = {"state_db", "mappings_dir", "timezone", "channels", "jobs", "retry", "admin",
             "reports"}
    for key in doc:
        if key not in known:
            raise r.fail(f"unknown setting (known: {', '.join(sorted(known))})", key)
    base = path.parent
    mappings_dir = Path(r.get(doc, "mappings_dir", str, default=str(MAPPINGS_DIR)))
    mappings_dir = mappings_dir if mappings_dir.is_absolute() else base / mappings_dir
    state_db = r.get(doc, "state_db", str, default=f"sqlite:///{base / 'syncd-state.db'}")
    channels = {name: _channel(r, name, body, mappings_dir)
                for name, body in r.get(doc, "channels", dict, default={}).items()}
    jobs = {name: _job(r, name, body, channels)
            for name, body in r.get(doc, "jobs", dict, default={}).items()}
    retry_doc = r.get(doc, "retry", dict, default={})
    try:
        retry = RetryPolicy(**retry_doc)
    except TypeError as exc:
        raise r.fail(f"unknown retry setting: {exc}", "retry") from None
    return Config(file=str(path), state_db=state_db, mappings_dir=mappings_dir,
                  timezone=r.get(doc, "timezone", str, default="Asia/Shanghai"),
                  channels=channels, jobs=jobs, retry=retry,
                  admin=r.get(doc, "admin", dict, default={}),
                  reports=r.get(doc, "reports", dict, default={}))


def _channel(r: _Reader, name: str, body: Any, mappings_dir: Path) -> ChannelConfig:
    where = ("channels", name)
    if not isinstance(body, dict):
        raise r.fail("must be a table", *where)
    kind = r.get(body, "kind", str, *where)
    if kind not in CHANNEL_KINDS:
        raise r.fail(f"unknown kind {kind!r} (known: {', '.join(CHANNEL_KINDS)})", *where, "kind")
    url = r.get(body, "url", str, *where)
    mapping = Path(r.get(body, "mapping", str, *where))
    mapping = mapping if mapping.is_absolute() else mappings_dir / mapping
    if not mapping.is_file():
        raise r.fail(f"mapping file {mapping} does not exist", *where, "mapping")
    options = {k: v for k, v in body.items() if k not in ("kind", "url", "mapping")}
    return ChannelConfig(name=name, kind=kind, url=url, mapping=mapping, options=options)


def _job(r: _Reader, name: str, body: Any, channels: dict[str, ChannelConfig]) -> JobConfig:
    where = ("jobs", name)
    if not isinstance(body, dict):
        raise r.fail("must be a table", *where)
    allowed = {"source", "targets", "mode", "schedule", "page_size", "max_errors",
               "max_error_ratio", "lag_seconds", "two_way", "workers"}
    for key in body:
        if key not in allowed:
            raise r.fail(f"unknown job setting (known: {', '.join(sorted(allowed))})", *where, key)
    source = r.get(body, "source", str, *where)
    if source not in channels:
        raise r.fail(f"no channel named {source!r}", *where, "source")
    targets = r.get(body, "targets", list, *where)
    for target in targets:
        if target not in channels:
            raise r.fail(f"no channel named {target!r}", *where, "targets")
        if target == source:
            raise r.fail("a job cannot target its own source", *where, "targets")
    if not targets:
        raise r.fail("needs at least one target", *where, "targets")
    mode = r.get(body, "mode", str, *where, default="incremental")
    if mode not in JOB_MODES:
        raise r.fail(f"unknown mode {mode!r} (known: {', '.join(JOB_MODES)})", *where, "mode")
    page_size = r.get(body, "page_size", int, *where, default=500)
    if not 1 <= page_size <= 10_000:
        raise r.fail("must be between 1 and 10000", *where, "page_size")
    workers = r.get(body, "workers", int, *where, default=None)
    if workers is not None and not 1 <= workers <= 32:
        raise r.fail("must be between 1 and 32 (1: no worker processes)", *where, "workers")
    ratio = r.get(body, "max_error_ratio", (int, float), *where, default=None)
    if ratio is not None and not 0 <= ratio <= 1:
        raise r.fail("must be between 0 and 1", *where, "max_error_ratio")
    return JobConfig(name=name, source=source, targets=tuple(targets), mode=mode,
                     schedule=r.get(body, "schedule", str, *where, default=None),
                     page_size=page_size,
                     max_errors=r.get(body, "max_errors", int, *where, default=None),
                     max_error_ratio=ratio,
                     lag_seconds=float(r.get(body, "lag_seconds", (int, float), *where,
                                             default=0.0)),
                     two_way=r.get(body, "two_way", bool, *where, default=False),
                     workers=workers)
