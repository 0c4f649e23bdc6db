"""A platform profile: everything a province's gateway names differently, as data.

Read from the ``platform:`` section of the channel's mapping file
(``mappings/platform/*.yaml``). Missing keys fall back to the reference profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from syncd.errors import MappingError

SCHEMES = ("hmac-sha256", "sm3", "token")

REFERENCE: dict[str, Any] = {
    "signing": "hmac-sha256",
    "paths": {"list": "/api/v1/items", "get": "/api/v1/items/{code}",
              "upsert": "/api/v1/items:batchUpsert", "cancel": "/api/v1/items/{code}:cancel",
              "token": "/api/v1/auth/token", "health": "/api/v1/health"},
    "envelope": {"code": "code", "message": "message", "data": "data",
                 "request_id": "requestId"},
    "success_code": "0",
    "transient_codes": ["4290", "5000", "5030"],
    "resign_codes": ["1002", "1003"],
    "not_found_code": "2002",
    "conflict_code": "2003",
    "page": {"size": "pageSize", "cursor": "cursor", "since": "updatedSince", "items": "items",
             "next": "nextCursor", "max_size": 500},
    "results": {"list": "results", "key": "TASK_CODE", "status": "status", "version": "version",
                "code": "code", "message": "message", "errors": "errors",
                "current_version": "currentVersion"},
    "accepted": ["accepted"],
    "unchanged": ["unchanged"],
    "batch_size": 100,
    "rate_per_second": 20,
    "base_version_field": "BASE_VERSION",
}


@dataclass(frozen=True)
class PlatformProfile:
    """Paths, envelope names, codes, paging and signing of one provincial gateway."""

    signing: str
    paths: dict[str, str]
    envelope: dict[str, str]
    success_code: str
    transient_codes: frozenset[str]
    resign_codes: frozenset[str]
    not_found_code: str
    conflict_code: str
    page: dict[str, Any]
    results: dict[str, str]
    accepted: frozenset[str]
    unchanged: frozenset[str]
    batch_size: int
    rate_per_second: float
    base_version_field: str
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_section(cls, section: dict[str, Any], *, file: str) -> PlatformProfile:
        """Build from a mapping file's ``platform:`` section, checking names and values."""
        unknown = set(section) - set(REFERENCE)
        if unknown:
            raise MappingError(f"unknown platform setting {sorted(unknown)[0]!r} (known: "
                               f"{', '.join(sorted(REFERENCE))})", file=file,
                               line=getattr(section, "line_of", lambda _k: None)(sorted(unknown)[0]))
        merged: dict[str, Any] = {}
        for key, default in REFERENCE.items():
            value = section.get(key, default)
            if isinstance(default, dict):
                if not isinstance(value, dict):
                    raise MappingError(f"platform.{key} must be a mapping", file=file)
                value = {**default, **value}
            merged[key] = value
        if merged["signing"] not in SCHEMES:
            raise MappingError(f"platform.signing {merged['signing']!r} is not one of "
                               f"{', '.join(SCHEMES)}", file=file)
        if not 1 <= int(merged["batch_size"]) <= 1000:
            raise MappingError("platform.batch_size must be 1..1000", file=file)
        return cls(
            signing=merged["signing"], paths=merged["paths"], envelope=merged["envelope"],
            success_code=str(merged["success_code"]),
            transient_codes=frozenset(map(str, merged["transient_codes"])),
            resign_codes=frozenset(map(str, merged["resign_codes"])),
            not_found_code=str(merged["not_found_code"]),
            conflict_code=str(merged["conflict_code"]), page=merged["page"],
            results=merged["results"], accepted=frozenset(merged["accepted"]),
            unchanged=frozenset(merged["unchanged"]), batch_size=int(merged["batch_size"]),
            rate_per_second=float(merged["rate_per_second"]),
            base_version_field=str(merged["base_version_field"]))
