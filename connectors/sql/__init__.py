"""SQL channels: legacy item tables in SQLite, PostgreSQL, MySQL/MariaDB or any SQLAlchemy dialect."""

from connectors.sql.channel import SqlChannel

__all__ = ["SqlChannel"]
