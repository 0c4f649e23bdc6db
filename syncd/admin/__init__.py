"""The admin HTTP API of the daemon (starlette on uvicorn, loopback by default).

    settings.py   the [admin] config table
    auth.py       bearer-token check on everything but /health
    routes.py     the endpoints; create_app() builds the app around a running Daemon
    client.py     what the CLI uses to reach a running daemon
"""

from syncd.admin.routes import create_app

__all__ = ["create_app"]
