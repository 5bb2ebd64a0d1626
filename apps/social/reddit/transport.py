"""Submitting one self post to a subreddit through Reddit's OAuth API with ``requests``.

The bearer token comes from ``POST /api/v1/access_token`` (HTTP basic auth with the app's client id and secret, the
password grant of the posting account).  It is cached in Redis until shortly before ``expires_in`` so every worker
shares one, and fetched again when Reddit answers 401 (revoked or expired early).  Every request carries the
configured User-Agent: Reddit throttles or blocks generic ones.

Answers of ``POST /api/submit`` (``api_type=json``): success is ``json.data.name`` (the fullname, ``t3_...``) and
``json.data.url``; a non-empty ``json.errors`` is a refusal (unknown subreddit, title too long, ...) and permanent,
except ``RATELIMIT``, which is Reddit's per-account posting limit and is waited out like a 429.  429 waits for
``retry-after`` or ``x-ratelimit-reset`` seconds; 5xx, timeouts and connection errors are transient.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, cast

import requests

from apps.core import store
from apps.social.delivery import Published, TransportError, excerpt, header_seconds

logger = logging.getLogger(__name__)

TOKEN_KEY = "social:reddit:token:{username}"  # string with a TTL: the bearer token of the posting account
TOKEN_MARGIN_SECONDS = 60  # drop the cached token this long before Reddit says it expires
PERMANENT_STATUSES = frozenset({400, 403, 404, 413})
DEFAULT_RATE_LIMIT_WAIT = 60.0
_RATELIMIT_WAIT = re.compile(r"(\d+)\s*(second|minute|hour)", re.IGNORECASE)
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600}


@dataclass(frozen=True)
class RedditAccount:
    """Everything a submission needs: the script app's credentials, the posting account and where Reddit is."""

    client_id: str
    client_secret: str
    username: str
    password: str
    user_agent: str
    auth_base_url: str
    api_base_url: str
    timeout: float


def _body(response: requests.Response) -> Any:
    try:
        return response.json() if response.text else None
    except ValueError:
        return None


def _rate_limit_wait(response: requests.Response) -> float:
    for name in ("retry-after", "x-ratelimit-reset"):
        seconds = header_seconds(response, name)
        if seconds is not None:
            return max(seconds, 0.0)
    return DEFAULT_RATE_LIMIT_WAIT


def _raise_for_status(response: requests.Response, *, what: str) -> None:
    status = response.status_code
    if status == 429:
        raise TransportError(
            f"Reddit rate limit on {what}",
            permanent=False,
            status_code=status,
            retry_after=_rate_limit_wait(response),
            excerpt=excerpt(response),
        )
    if status in PERMANENT_STATUSES:
        raise TransportError(
            f"Reddit refused {what} with {status}", permanent=True, status_code=status, excerpt=excerpt(response)
        )
    if not 200 <= status < 300:
        raise TransportError(
            f"Reddit answered {status} on {what}", permanent=False, status_code=status, excerpt=excerpt(response)
        )


def _post(url: str, *, account: RedditAccount, what: str, **kwargs: Any) -> requests.Response:
    headers = {"User-Agent": account.user_agent, **kwargs.pop("headers", {})}
    try:
        return requests.post(url, headers=headers, timeout=account.timeout, **kwargs)
    except requests.RequestException as exc:
        raise TransportError(f"Reddit unreachable on {what}: {exc.__class__.__name__}: {exc}", permanent=False) from exc


def token_forget(*, account: RedditAccount) -> None:
    store.get_redis().delete(TOKEN_KEY.format(username=account.username))


def access_token(*, account: RedditAccount) -> str:
    """The posting account's bearer token: the cached one, else a new one from the password grant (then cached)."""
    key = TOKEN_KEY.format(username=account.username)
    client = store.get_redis()
    cached = cast(str | None, client.get(key))
    if cached:
        return cached
    response = _post(
        f"{account.auth_base_url.rstrip('/')}/api/v1/access_token",
        account=account,
        what="the token request",
        auth=(account.client_id, account.client_secret),
        data={"grant_type": "password", "username": account.username, "password": account.password},
    )
    if response.status_code == 401:
        # Wrong client id or secret: no retry will fix it.
        raise TransportError(
            "Reddit refused the app's client id/secret (401)",
            permanent=True,
            status_code=401,
            excerpt=excerpt(response),
        )
    _raise_for_status(response, what="the token request")
    body = _body(response)
    token = body.get("access_token") if isinstance(body, dict) else None
    if not token:
        # Reddit answers a wrong username/password with 200 {"error": "invalid_grant"}.
        error = body.get("error") if isinstance(body, dict) else None
        raise TransportError(
            f"Reddit gave no access token: {error or 'no access_token in the answer'}",
            permanent=bool(error),
            status_code=response.status_code,
            excerpt=excerpt(response),
        )
    try:
        expires_in = int(body.get("expires_in", 3600))
    except (TypeError, ValueError):
        expires_in = 3600
    ttl = expires_in - TOKEN_MARGIN_SECONDS
    if ttl > 0:
        client.set(key, str(token), ex=ttl)
    return str(token)


def _ratelimit_seconds(message: str) -> float:
    match = _RATELIMIT_WAIT.search(message)
    if match is None:
        return DEFAULT_RATE_LIMIT_WAIT
    return float(int(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()])


def _submitted(response: requests.Response) -> Published:
    body = _body(response)
    answer = body.get("json") if isinstance(body, dict) else None
    if not isinstance(answer, dict):
        raise TransportError(
            "Reddit answered the submission without a json object",
            permanent=False,
            status_code=response.status_code,
            excerpt=excerpt(response),
        )
    errors = answer.get("errors") or []
    if errors:
        first = errors[0] if isinstance(errors[0], list) else [str(errors[0])]
        code, message = str(first[0]), str(first[1]) if len(first) > 1 else ""
        if code == "RATELIMIT":
            raise TransportError(
                f"Reddit posting limit: {message}",
                permanent=False,
                status_code=response.status_code,
                retry_after=_ratelimit_seconds(message),
                excerpt=excerpt(response),
            )
        raise TransportError(
            f"Reddit refused the post: {code} {message}".strip(),
            permanent=True,
            status_code=response.status_code,
            excerpt=excerpt(response),
        )
    data = answer.get("data") or {}
    name = str(data.get("name") or "")
    if not name:
        logger.warning("reddit: submission answered %s without a post name", response.status_code)
    return Published(
        external_id=name,
        external_url=str(data.get("url") or ""),
        status_code=response.status_code,
        excerpt=excerpt(response),
    )


def _submit_once(url: str, *, account: RedditAccount, form: dict[str, str]) -> requests.Response:
    token = access_token(account=account)
    return _post(url, account=account, what="the submission", headers={"Authorization": f"bearer {token}"}, data=form)


def submit(*, account: RedditAccount, subreddit: str, title: str, text: str) -> Published:
    """Submit a self post to ``subreddit`` and return its fullname and address; anything else raises
    ``TransportError``.  A 401 fetches a new token once and submits again (the first attempt was not accepted)."""
    url = f"{account.api_base_url.rstrip('/')}/api/submit"
    form = {"sr": subreddit, "kind": "self", "title": title, "text": text, "api_type": "json"}
    response = _submit_once(url, account=account, form=form)
    if response.status_code == 401:
        logger.info("reddit: token refused (401); fetching a new one")
        token_forget(account=account)
        response = _submit_once(url, account=account, form=form)
        if response.status_code == 401:
            token_forget(account=account)
            raise TransportError(
                "Reddit refused a freshly issued token (401)",
                permanent=True,
                status_code=401,
                excerpt=excerpt(response),
            )
    _raise_for_status(response, what="the submission")
    return _submitted(response)
