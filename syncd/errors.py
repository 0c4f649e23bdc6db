"""The one error tree of syncd.

Every error an operator can see is a ``SyncdError`` and says what to act on:
the file and line of a bad config or mapping, the channel, the item, the field.
Third-party exceptions (httpx, SQLAlchemy) are translated at the connector
boundary and never escape ``connectors/``.

    SyncdError
    ├── ConfigError            bad config file (file:line, key)
    ├── MappingError           bad mapping file, or a record that cannot be mapped
    │   └── ValidationError    a mapped item breaks the canonical model's rules
    ├── ConnectorError         a channel could not be read or written
    │   ├── TransferError      a transfer failed (Transient if worth retrying)
    │   └── PlatformError      the platform answered with a business error code
    ├── StateError             syncd's own state DB is unusable or inconsistent
    ├── JobBusyError           the job is already running elsewhere
    └── ThresholdExceeded      a run hit its error threshold and stopped

``Transient`` is a marker mixed into errors worth retrying; retry policies
key on it and on nothing else.
"""

from __future__ import annotations


class SyncdError(Exception):
    """Base of every error syncd raises on purpose."""


class Transient:
    """Marker: the same call may succeed later (timeouts, 5xx, busy codes)."""

    retry_after: float | None = None


class ConfigError(SyncdError):
    """The config file is unusable; names the file, line and key."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        self.file, self.line, self.key = file, line, key
        where = ":".join(str(p) for p in (file, line) if p is not None)
        parts = [p for p in (where, key and f"[{key}]", message) if p]
        super().__init__(" ".join(parts))


class MappingError(SyncdError):
    """A mapping file is malformed, or a record cannot be mapped with it.

    Carries the mapping file and line when the file is at fault, and the
    channel, item and field when a record is.
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None, item_code: str | None = None,
                 channel: str | None = None) -> None:
        self.reason = message
        self.file, self.line, self.field = file, line, field
        self.item_code, self.channel = item_code, channel
        super().__init__(self._render())

    def _render(self) -> str:
        where = ":".join(str(p) for p in (self.file, self.line) if p is not None)
        bits = [where] if where else []
        if self.channel:
            bits.append(f"channel={self.channel}")
        if self.item_code:
            bits.append(f"item={self.item_code}")
        if self.field:
            bits.append(f"field={self.field}")
        bits.append(self.reason)
        return " ".join(bits)

    def located(self, **where: str | None) -> MappingError:
        """Return a copy with missing location details filled in."""
        for key, value in where.items():
            if getattr(self, key, None) is None and value is not None:
                setattr(self, key, value)
        self.args = (self._render(),)
        return self

    def within(self, row: str) -> MappingError:
        """Return it with its field placed in a child row (``materials[2].name``)."""
        self.field = f"{row}.{self.field}" if self.field else row
        self.args = (self._render(),)
        return self


class ValidationError(MappingError):
    """A mapped item breaks a rule of the canonical model (code, length, limit)."""


class ConnectorError(SyncdError):
    """A channel could not be read or written."""

    def __init__(self, message: str, *, channel: str | None = None,
                 item_code: str | None = None) -> None:
        self.channel, self.item_code = channel, item_code
        prefix = f"channel={channel} " if channel else ""
        super().__init__(prefix + message)


class TransferError(ConnectorError):
    """A transfer to or from a channel failed as a whole."""


class TransientTransferError(TransferError, Transient):
    """A transfer failed in a way worth retrying (timeout, refused, 5xx)."""

    def __init__(self, message: str, *, channel: str | None = None,
                 item_code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, channel=channel, item_code=item_code)
        self.retry_after = retry_after


class PlatformError(ConnectorError):
    """The platform answered with a business error code (see platform-api.md)."""

    def __init__(self, code: str, message: str, *, channel: str | None = None,
                 item_code: str | None = None, request_id: str | None = None,
                 errors: list[dict[str, str]] | None = None) -> None:
        self.code, self.request_id, self.errors = code, request_id, errors or []
        detail = f"platform code {code}: {message}"
        if request_id:
            detail += f" (requestId {request_id})"
        super().__init__(detail, channel=channel, item_code=item_code)


class TransientPlatformError(PlatformError, Transient):
    """A platform business code that clears by itself (4290, 5000, 5030)."""

    def __init__(self, code: str, message: str, *, retry_after: float | None = None,
                 **kwargs: object) -> None:
        super().__init__(code, message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class StateError(SyncdError):
    """syncd's own state DB cannot be used (missing migrations, locked, corrupt)."""


class JobBusyError(SyncdError):
    """The job is already running (in the daemon or in another process)."""


class ThresholdExceeded(SyncdError):
    """A run quarantined more records than its error threshold allows."""


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` is worth retrying."""
    return isinstance(exc, Transient)
