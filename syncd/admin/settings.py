"""The ``[admin]`` config table, read into a typed value shared by the daemon and the CLI.

    [admin]
    host = "127.0.0.1"                   # loopback by default: the API can trigger runs
    port = 8470
    token = "${SYNCD_ADMIN_TOKEN}"       # bearer token; required by `syncd run`
    replay_every = "1m"                  # scheduled outbox replay ("off" disables it)
"""

from __future__ import annotations

from dataclasses import dataclass

from syncd.config import Config
from syncd.errors import ConfigError
from syncd.scheduler import parse_duration

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8470
DEFAULT_REPLAY_EVERY = "1m"
KNOWN = {"host", "port", "token", "replay_every"}


@dataclass(frozen=True)
class AdminSettings:
    """Where the admin API listens, its token, and how often the outbox is replayed."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    replay_every: float | None = 60.0

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @classmethod
    def from_config(cls, config: Config) -> AdminSettings:
        """Read and check ``[admin]``.

        Raises:
            ConfigError: an unknown key or a bad value, naming ``admin.<key>``.
        """
        doc = config.admin
        for key in doc:
            if key not in KNOWN:
                raise _fail(config, key, f"unknown setting (known: {', '.join(sorted(KNOWN))})")
        host = doc.get("host", DEFAULT_HOST)
        if not isinstance(host, str) or not host:
            raise _fail(config, "host", "must be a host name or address")
        port = doc.get("port", DEFAULT_PORT)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise _fail(config, "port", "must be a port number between 1 and 65535")
        token = doc.get("token")
        if token is not None and (not isinstance(token, str) or len(token) < 16):
            raise _fail(config, "token", "must be a string of at least 16 characters")
        every = doc.get("replay_every", DEFAULT_REPLAY_EVERY)
        if not isinstance(every, str):
            raise _fail(config, "replay_every", 'must be a duration such as "1m", or "off"')
        try:
            replay_every = None if every.strip().lower() == "off" else parse_duration(every)
        except ValueError as exc:
            raise _fail(config, "replay_every", str(exc)) from None
        return cls(host=host, port=port, token=token or None, replay_every=replay_every)

    def require_token(self, config: Config) -> str:
        """The token, or a ConfigError: the daemon never serves its API unauthenticated."""
        if not self.token:
            raise _fail(config, "token", "is required to run the daemon (set it from the "
                        'environment: token = "${SYNCD_ADMIN_TOKEN}")')
        return self.token


def _fail(config: Config, key: str, message: str) -> ConfigError:
    return ConfigError(message, file=config.file, key=f"admin.{key}")
