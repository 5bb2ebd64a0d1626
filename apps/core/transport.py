"""The error every outside-service transport raises for a non-success (Discord, X, Reddit).

``permanent`` says a retry with the same request cannot succeed (refused content, bad credentials, a deleted
webhook); ``retry_after`` is a rate limit's wait in seconds; anything else is transient and retried with backoff.
"""

from __future__ import annotations


class TransportError(Exception):
    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        status_code: int | None = None,
        retry_after: float | None = None,
        excerpt: str = "",
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status_code = status_code
        self.retry_after = retry_after
        self.excerpt = excerpt
