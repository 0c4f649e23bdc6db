"""Channel kinds → factories. A new kind is a new entry here, never an ``if kind ==`` chain."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from syncd.config import ChannelConfig
from syncd.errors import ConfigError
from syncd.mapping import Mapping

Factory = Callable[[ChannelConfig, Mapping, dict[str, Any]], Any]


def _sql(cfg: ChannelConfig, mapping: Mapping, runtime: dict[str, Any]) -> Any:
    from connectors.sql import SqlChannel
    from syncd.sqlutil import make_engine

    unknown = set(cfg.options) - {"client_encoding"}
    if unknown:
        raise ConfigError(f"unknown option {sorted(unknown)[0]!r} for a sql channel",
                          key=f"channels.{cfg.name}")
    engine = make_engine(cfg.url, client_encoding=cfg.options.get("client_encoding"))
    return SqlChannel(cfg.name, engine, mapping, lag_seconds=runtime.get("lag_seconds", 0.0))


FACTORIES: dict[str, Factory] = {"sql": _sql}


def open_channel(cfg: ChannelConfig, mapping: Mapping, **runtime: Any) -> Any:
    """Build the connector for ``cfg`` (a Source and/or Sink).

    ``runtime`` carries what the engine decides per run (``lag_seconds``,
    shared rate limiters, clocks) rather than what the config file says.
    """
    try:
        factory = FACTORIES[cfg.kind]
    except KeyError:
        raise ConfigError(f"no connector for kind {cfg.kind!r}",
                          key=f"channels.{cfg.name}.kind") from None
    return factory(cfg, mapping, runtime)
