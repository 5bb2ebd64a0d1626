"""The plumbing every local stand-in of an outside service shares: a threaded HTTP server on a free loopback port."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class LoopbackStandin:
    """Subclasses give the request handler (``_handler_class``) and their own controls; this serves it on
    127.0.0.1 only, in a daemon thread, until ``stop``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise TypeError(f"{type(self).__name__} must define the request handler of its service")

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
