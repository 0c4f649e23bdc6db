"""Running the simulator: in a background thread for tests, in the foreground for the CLI."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Mapping
from types import TracebackType

import httpx
import uvicorn

from syncd.sim.app import build_app
from syncd.sim.simulator import PlatformSimulator


class SimServer:
    """A simulator listening on a real loopback port; stop it (or leave the ``with``) when done."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, sock: socket.socket,
                 url: str) -> None:
        self._server, self._thread, self._sock = server, thread, sock
        self.url = url

    def stop(self) -> None:
        """Ask uvicorn to exit, wait for its thread, release the socket."""
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> SimServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def serve_in_thread(sim: PlatformSimulator, host: str = "127.0.0.1", port: int = 0, *,
                    timeout: float = 10.0) -> SimServer:
    """Serve ``sim`` from a background thread; returns once health answers.

    The socket is bound here, before uvicorn starts, so port 0 yields a free
    port whose number is known without parsing logs and without a race.

    Raises:
        RuntimeError: the server did not come up within ``timeout`` seconds.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose
    # proto says TCP, and without it Nagle + delayed ACK add 40 ms to every answer.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    url = f"http://[{host}]:{bound}" if family == socket.AF_INET6 else f"http://{host}:{bound}"
    config = uvicorn.Config(build_app(sim), log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name=f"platform-sim:{bound}")
    thread.start()
    handle = SimServer(server, thread, sock, url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and thread.is_alive():
        if server.started and _healthy(url):
            return handle
        time.sleep(0.01)
    handle.stop()
    raise RuntimeError(f"platform simulator did not start on {url} within {timeout} s")


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/v1/health", timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


def run_simulator(host: str, port: int, db_path: str | None, apps: Mapping[str, str],
                  scheme: str = "hmac-sha256") -> None:
    """Serve a simulator in the foreground until interrupted (``syncd platform-sim``)."""
    sim = PlatformSimulator(apps, scheme=scheme, db_path=db_path)
    try:
        uvicorn.run(build_app(sim), host=host, port=port, log_config=None, lifespan="off")
    finally:
        sim.close()
