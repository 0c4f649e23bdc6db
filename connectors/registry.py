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


PLATFORM_OPTIONS = {"app_key", "app_secret", "timeout", "ca_bundle", "max_connections",
                    "rate_per_second", "in_flight"}


def _platform(cfg: ChannelConfig, mapping: Mapping, runtime: dict[str, Any]) -> Any:
    from connectors.platform.channel import PlatformChannel
    from connectors.platform.client import PlatformClient
    from connectors.platform.profile import PlatformProfile
    from connectors.platform.ratelimit import shared_limiter

    opts = cfg.options
    unknown = set(opts) - PLATFORM_OPTIONS
    if unknown:
        raise ConfigError(f"unknown option {sorted(unknown)[0]!r} for a platform channel "
                          f"(known: {', '.join(sorted(PLATFORM_OPTIONS))})",
                          key=f"channels.{cfg.name}")
    for required in ("app_key", "app_secret"):
        if not opts.get(required):
            raise ConfigError("is required for a platform channel",
                              key=f"channels.{cfg.name}.{required}")
    in_flight = opts.get("in_flight", 4)
    if isinstance(in_flight, bool) or not isinstance(in_flight, int) or not 1 <= in_flight <= 32:
        raise ConfigError("must be a whole number from 1 to 32 (batches pushed at once)",
                          key=f"channels.{cfg.name}.in_flight")
    profile = PlatformProfile.from_section(mapping.platform, file=mapping.file)
    # the profile states the platform's quota; a city with a negotiated one overrides it
    # (0 = no client-side limit, e.g. against the simulator)
    rate = float(opts.get("rate_per_second", profile.rate_per_second))
    limiter = shared_limiter(cfg.url, str(opts["app_key"]), rate)
    client = PlatformClient(cfg.url, str(opts["app_key"]), str(opts["app_secret"]), profile,
                            limiter=limiter, channel=cfg.name,
                            transport=runtime.get("transport"),
                            timeout=float(opts.get("timeout", 10.0)),
                            ca_bundle=opts.get("ca_bundle"),
                            max_connections=int(opts.get("max_connections", 10)))
    return PlatformChannel(cfg.name, client, mapping, policy=runtime.get("policy"),
                           lag_seconds=runtime.get("lag_seconds", 0.0),
                           sleep=runtime.get("sleep"), in_flight=in_flight)


FACTORIES: dict[str, Factory] = {"sql": _sql, "platform": _platform}


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
