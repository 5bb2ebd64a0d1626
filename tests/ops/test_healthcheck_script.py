"""docker/healthcheck.py, the web and Flower containers' healthcheck, against a local HTTP server on loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.ops.compose_file import REPO

SCRIPT = REPO / "docker" / "healthcheck.py"


class _Handler(BaseHTTPRequestHandler):
    seen_forwarded_proto: list[str | None] = []

    def do_GET(self) -> None:
        type(self).seen_forwarded_proto.append(self.headers.get("X-Forwarded-Proto"))
        status = int(self.path.strip("/") or 200)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Keep the test output clean."""


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Handler.seen_forwarded_proto = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _check(url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), url], capture_output=True, text=True, timeout=20, check=False)


def test_a_page_answering_200_is_healthy_and_the_check_says_it_came_over_https(server):
    assert _check(f"{server}/200").returncode == 0
    assert _Handler.seen_forwarded_proto == ["https"]


@pytest.mark.parametrize("status", [404, 500, 503])
def test_a_page_answering_an_error_is_unhealthy(server, status):
    result = _check(f"{server}/{status}")

    assert result.returncode == 1
    assert f"answered {status}" in result.stderr


def test_nothing_listening_is_unhealthy():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The port was free a moment ago and nothing is started on it.
    result = _check(f"http://127.0.0.1:{port}/")

    assert result.returncode == 1
    assert "unhealthy" in result.stderr


def test_a_url_that_is_not_http_is_refused():
    assert _check("file:///etc/passwd").returncode == 2
