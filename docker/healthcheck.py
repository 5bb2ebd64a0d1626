"""Container healthcheck for the HTTP processes (web, flower): exit 0 when the URL answers below 400, else 1.

Uses only the standard library so it runs in the slim image without curl.  It sends ``X-Forwarded-Proto: https``
because in production Django redirects plain-HTTP requests to HTTPS (the TLS proxy in front normally says https).
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].startswith(("http://", "https://")):
        sys.stderr.write("usage: healthcheck.py http://127.0.0.1:8000/admin/login/\n")
        return 2
    # The scheme is checked above; the URL comes from the Dockerfile or compose.yaml, never from user input.
    request = urllib.request.Request(argv[1], headers={"X-Forwarded-Proto": "https"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        sys.stderr.write(f"unhealthy: {argv[1]}: {exc}\n")
        return 1
    if status >= 400:
        sys.stderr.write(f"unhealthy: {argv[1]} answered {status}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
