"""Settings, read from the environment.

With nothing set the platform runs on its *embedded default*: a SQLite file under ``var/``, Celery tasks executed
in-process, the Redis keys in an in-process store with Redis's interface (fakeredis), the paper broker, and local
sinks instead of Discord, Telegram and Anthropic.  ``DATABASE_URL`` and ``REDIS_URL`` switch to PostgreSQL and a
Redis broker.  Every variable is listed in ``.env.example``; a bad value stops the process at start with a message
that names the variable.
"""

from __future__ import annotations

import contextlib
from decimal import Decimal, InvalidOperation
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.str(name, default=default).strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} is not valid; expected one of: {', '.join(choices)}")
    return value


def _int(name: str, default: int, minimum: int | None = None) -> int:
    # Empty counts as unset: compose passes ``${NAME:-}`` through as an empty string.
    raw = env.str(name, default="") or str(default)
    try:
        value = int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from exc
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def _decimal(name: str, default: str) -> Decimal:
    raw = env.str(name, default=default)
    try:
        return Decimal(raw)
    except InvalidOperation as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a decimal number") from exc


def _bool(name: str, default: bool) -> bool:
    raw = env.str(name, default="1" if default else "0").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off", ""):
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false)")


def _url(name: str, schemes: tuple[str, ...]) -> str:
    value = env.str(name, default="").strip()
    if value and not value.startswith(tuple(f"{s}://" for s in schemes)):
        raise ImproperlyConfigured(f"{name} must start with one of {', '.join(s + '://' for s in schemes)}")
    return value


def _tickers(name: str, default: str) -> tuple[str, ...]:
    items = tuple(t.strip().upper() for t in env.str(name, default=default).split(",") if t.strip())
    if not items or any(not t.isalpha() for t in items):
        raise ImproperlyConfigured(f"{name} must be a comma-separated list of tickers, e.g. SPY,QQQ,IWM")
    return items


def _choices_list(name: str, default: str, choices: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated subset of ``choices`` (empty allowed: none of them)."""
    items = tuple(t.strip().lower() for t in env.str(name, default=default).split(",") if t.strip())
    unknown = [t for t in items if t not in choices]
    if unknown:
        raise ImproperlyConfigured(f"{name}: unknown {', '.join(unknown)}; choose from {', '.join(choices)}")
    return items


def _tiers(name: str, default: str) -> tuple[tuple[str, int], ...]:
    """``premium:0,standard:60,free:300`` -> ((name, delay_seconds), ...)."""
    tiers = []
    for part in env.str(name, default=default).split(","):
        label, _, delay = part.strip().partition(":")
        if not label or not delay.isdigit():
            raise ImproperlyConfigured(f"{name} must look like premium:0,standard:60,free:300 (got {part!r})")
        tiers.append((label, int(delay)))
    return tuple(tiers)


DATA_DIR = Path(env.str("TP_DATA_DIR", default=str(BASE_DIR / "var")))

# --- Django -------------------------------------------------------------------------------------------------------
DEBUG = _bool("DJANGO_DEBUG", False)
PRODUCTION = _bool("DJANGO_PRODUCTION", False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_PRODUCTION=1")
    SECRET_KEY = "embedded-default-not-secret-" + "x" * 40
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # The admin with the operations dashboard (admin/ops/dashboard/) and a status headline on its index page.
    "apps.ops.admin_config.OpsAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "django_celery_beat",
    "django_prometheus",
    "apps.core",
    "apps.ingestion",
    "apps.analytics",
    "apps.signals",
    "apps.risk",
    "apps.execution",
    "apps.distribution",
    "apps.commentary",
    "apps.approvals",
    "apps.social",
    "apps.ops",
    "apps.api",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "tradingplatform.urls"
WSGI_APPLICATION = "tradingplatform.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

_database_url = _url("DATABASE_URL", ("postgres", "postgresql", "sqlite"))
if _database_url:
    DATABASES = {"default": env.db_url_config(_database_url)}
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "tradingplatform.sqlite3"),
            "OPTIONS": {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
        }
    }
DATABASES["default"]["CONN_MAX_AGE"] = _int("DB_CONN_MAX_AGE", 60, minimum=0)
DATABASES["default"].setdefault("TEST", {})
DATABASE_IS_POSTGRES = "postgresql" in DATABASES["default"]["ENGINE"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
MARKET_TIME_ZONE = "America/New_York"

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
# whitenoise warns on every request when the directory is missing (before the first collectstatic); a read-only
# image has it from collectstatic at build.
with contextlib.suppress(OSError):
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = _bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = _int("DJANGO_SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
}
SPECTACULAR_SETTINGS: dict[str, object] = {"TITLE": "Trading platform API", "VERSION": "1"}

# --- Operations API (apps/api, docs/api.md) ---------------------------------------------------------------------------
# Several tables have a "status" or "kind" with different choices: each set gets its own name in /api/schema/.
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"] = {
    "SignalStatusEnum": "apps.signals.models.Signal.Status",
    "OrderStatusEnum": "apps.execution.models.OrderStatus",
    "TradeStatusEnum": "apps.execution.models.Trade.Status",
    "PostStatusEnum": "apps.distribution.models.DistributionPost.Status",
    "PostKindEnum": "apps.distribution.models.PostKind",
    "ReportStatusEnum": "apps.commentary.models.AiReport.Status",
    "ReportKindEnum": "apps.commentary.models.ReportKind",
    "ControlParamKindEnum": [("text", "text"), ("int", "int"), ("choice", "choice")],
}

# --- Redis and Celery -------------------------------------------------------------------------------------------------
REDIS_URL = _url("REDIS_URL", ("redis", "rediss", "unix"))
CELERY_BROKER_URL = (
    _url("CELERY_BROKER_URL", ("redis", "rediss", "amqp", "memory")) or REDIS_URL or "memory://localhost/"
)
CELERY_TASK_ALWAYS_EAGER = _bool("TP_TASKS_EAGER", not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": _int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60)}
CELERY_TASK_DEFAULT_QUEUE = "ops"
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_TIME_LIMIT = _int("CELERY_TASK_TIME_LIMIT", 300, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = _int("CELERY_TASK_SOFT_TIME_LIMIT", 240, minimum=1)

# --- The platform ---------------------------------------------------------------------------------------------------
TRADING_MODE = _choice("TRADING_MODE", "paper", ("paper", "live"))
BROKER = _choice("BROKER", "paper", ("paper", "ib"))
TRACKED_TICKERS = _tickers("TRACKED_TICKERS", "SPY,QQQ,IWM")
TP_CLOCK_OFFSET_SECONDS = _int("TP_CLOCK_OFFSET_SECONDS", 0)
ACCOUNT_STARTING_CASH = _decimal("ACCOUNT_STARTING_CASH", "100000")
ANALYTICS_MIN_INTERVAL_SECONDS = _int("ANALYTICS_MIN_INTERVAL_SECONDS", 60, minimum=0)
PRICING_RISK_FREE_RATE = _decimal("PRICING_RISK_FREE_RATE", "0.04")
PAPER_COMMISSION_PER_CONTRACT = _decimal("PAPER_COMMISSION_PER_CONTRACT", "0.65")
PAPER_QUOTE_MAX_AGE_SECONDS = _int("PAPER_QUOTE_MAX_AGE_SECONDS", 300, minimum=1)
EXECUTION_TIME_EXIT_GRACE_SECONDS = _int("EXECUTION_TIME_EXIT_GRACE_SECONDS", 300, minimum=0)
EXECUTION_EXIT_RETRY_SECONDS = _int("EXECUTION_EXIT_RETRY_SECONDS", 30, minimum=1)
# Once a trade's mark is this share above its entry (0.25 = +25 %), its stop moves up to the entry; 0 turns it off.
EXECUTION_BREAKEVEN_AFTER_PCT = _decimal("EXECUTION_BREAKEVEN_AFTER_PCT", "0")
PAPER_FILL_SPREAD_SHARE = _decimal("PAPER_FILL_SPREAD_SHARE", "1")
if not Decimal("0") <= PAPER_FILL_SPREAD_SHARE <= Decimal("1"):
    raise ImproperlyConfigured("PAPER_FILL_SPREAD_SHARE must be between 0 (mid) and 1 (far side of the spread)")

UW_API_TOKEN = env.str("UW_API_TOKEN", default="")
UW_API_URL = _url("UW_API_URL", ("http", "https")) or "https://api.unusualwhales.com"
UW_WS_URL = _url("UW_WS_URL", ("ws", "wss")) or "wss://api.unusualwhales.com/socket"


def _channels(name: str, tickers: tuple[str, ...]) -> tuple[str, ...]:
    """``flow-alerts,news,price:SPY`` -> channel names; a trailing ``:`` (``price:``) joins it for every ticker."""
    default = "flow-alerts,news,price:,option_trades:,gex:,gex_strike:"
    items: list[str] = []
    for part in env.str(name, default=default).split(","):
        part = part.strip()
        if not part:
            continue
        if any(c.isspace() or c in '"[]{}' for c in part):
            raise ImproperlyConfigured(f"{name}: {part!r} is not a channel name")
        items.extend(f"{part}{t}" for t in tickers) if part.endswith(":") else items.append(part)
    if not items:
        raise ImproperlyConfigured(f"{name} must name at least one channel, e.g. flow-alerts,price:SPY")
    return tuple(dict.fromkeys(items))


def _float(name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.str(name, default="") or str(default)  # empty counts as unset, as in _int
    try:
        value = float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from exc
    if not value >= minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


UW_CHANNELS = _channels("UW_CHANNELS", TRACKED_TICKERS)
# The listener: frames per Celery batch, and the longest a frame waits for its batch to fill.
UW_STREAM_BATCH_FRAMES = _int("UW_STREAM_BATCH_FRAMES", 4000, minimum=1)
UW_STREAM_BATCH_MS = _int("UW_STREAM_BATCH_MS", 20, minimum=1)
# While the ingestion queue has a backlog, batches may wait this long (ms) to fill; 0 turns it off.
UW_STREAM_BACKLOG_BATCH_MS = _int("UW_STREAM_BACKLOG_BATCH_MS", 100, minimum=0)
# Frames held in memory while the broker is unreachable; past it the oldest are dropped, counted and logged.
UW_STREAM_BUFFER_FRAMES = _int("UW_STREAM_BUFFER_FRAMES", 500_000, minimum=1000)
# Stall watchdog (UW's own example: ping after 30 s of silence, reconnect if no pong within 10 s).
UW_STREAM_PING_AFTER_SECONDS = _float("UW_STREAM_PING_AFTER_SECONDS", 30.0, minimum=0.05)
UW_STREAM_PONG_TIMEOUT_SECONDS = _float("UW_STREAM_PONG_TIMEOUT_SECONDS", 10.0, minimum=0.05)
# Reconnect backoff: from the minimum, doubling to the maximum, plus up to 25 % jitter.
UW_STREAM_BACKOFF_MIN_SECONDS = _float("UW_STREAM_BACKOFF_MIN_SECONDS", 5.0, minimum=0.01)
UW_STREAM_BACKOFF_MAX_SECONDS = _float("UW_STREAM_BACKOFF_MAX_SECONDS", 60.0, minimum=0.01)
# REST: the plan's request budget per minute (the client also obeys the x-uw-* headers and 429s) and timeouts.
UW_REST_REQUESTS_PER_MINUTE = _int("UW_REST_REQUESTS_PER_MINUTE", 120, minimum=1)
UW_REST_TIMEOUT_SECONDS = _float("UW_REST_TIMEOUT_SECONDS", 10.0, minimum=0.1)

IB_HOST = env.str("IB_HOST", default="127.0.0.1")
IB_PORT = _int("IB_PORT", 7497, minimum=1)
IB_CLIENT_ID = _int("IB_CLIENT_ID", 1, minimum=0)
# Bounds on the connection owner: the handshake (ibapi would wait forever), an order's acknowledgement, reconnect
# backoff (doubling from the minimum to the maximum, plus jitter), the periodic reconciliation, and how old an order
# with no trace at the broker after a reconnect may be and still be sent again (older ones are flagged instead).
IB_CONNECT_TIMEOUT_SECONDS = _float("IB_CONNECT_TIMEOUT_SECONDS", 10.0, minimum=0.1)
IB_ACK_TIMEOUT_SECONDS = _float("IB_ACK_TIMEOUT_SECONDS", 10.0, minimum=0.1)
IB_BACKOFF_MIN_SECONDS = _float("IB_BACKOFF_MIN_SECONDS", 5.0, minimum=0.01)
IB_BACKOFF_MAX_SECONDS = _float("IB_BACKOFF_MAX_SECONDS", 60.0, minimum=0.01)
IB_RECONCILE_SECONDS = _int("IB_RECONCILE_SECONDS", 300, minimum=5)
IB_RESUBMIT_WINDOW_SECONDS = _int("IB_RESUBMIT_WINDOW_SECONDS", 60, minimum=0)

DISTRIBUTION_TIERS = _tiers("DISTRIBUTION_TIERS", "premium:0,standard:60,free:300")
DISCORD_WEBHOOK_URLS = {
    name: _url(f"DISCORD_WEBHOOK_URL_{name.upper()}", ("http", "https")) for name, _ in DISTRIBUTION_TIERS
}
DISTRIBUTION_LATE_AFTER_SECONDS = _int("DISTRIBUTION_LATE_AFTER_SECONDS", 30, minimum=1)

# Approvals: a social post or an AI text waits this long for a person's decision, then expires unpublished.
APPROVAL_TTL_SECONDS = _int("APPROVAL_TTL_SECONDS", 3600, minimum=60)

# Telegram: the bot (manage.py telegram_bot) asks for approvals in one chat; who may act is decided per Telegram user
# id (approvals_telegram_identities, linked to a Django user whose permissions apply), never by the chat alone.
TELEGRAM_BOT_TOKEN = env.str("TELEGRAM_BOT_TOKEN", default="")
TELEGRAM_BASE_URL = _url("TELEGRAM_BASE_URL", ("http", "https"))
TELEGRAM_APPROVER_CHAT_ID = env.str("TELEGRAM_APPROVER_CHAT_ID", default="")
TELEGRAM_POLL_TIMEOUT_SECONDS = _int("TELEGRAM_POLL_TIMEOUT_SECONDS", 30, minimum=0)

# Social networks: nothing is published before an approval; without credentials an approved post goes to the local
# sink (log + database), like Discord without a webhook.
SOCIAL_PLATFORMS = _choices_list("SOCIAL_PLATFORMS", "x,reddit", ("x", "reddit"))
X_API_BASE_URL = _url("X_API_BASE_URL", ("http", "https")) or "https://api.twitter.com"
X_ACCESS_TOKEN = env.str("X_ACCESS_TOKEN", default="")  # OAuth 2.0 user-context token with tweet.write
REDDIT_AUTH_BASE_URL = _url("REDDIT_AUTH_BASE_URL", ("http", "https")) or "https://www.reddit.com"
REDDIT_API_BASE_URL = _url("REDDIT_API_BASE_URL", ("http", "https")) or "https://oauth.reddit.com"
REDDIT_CLIENT_ID = env.str("REDDIT_CLIENT_ID", default="")
REDDIT_CLIENT_SECRET = env.str("REDDIT_CLIENT_SECRET", default="")
REDDIT_USERNAME = env.str("REDDIT_USERNAME", default="")
REDDIT_PASSWORD = env.str("REDDIT_PASSWORD", default="")
REDDIT_SUBREDDIT = env.str("REDDIT_SUBREDDIT", default="")
REDDIT_USER_AGENT = env.str("REDDIT_USER_AGENT", default="") or "tradingplatform/1.0 (automated options commentary)"
SOCIAL_HTTP_TIMEOUT_SECONDS = _float("SOCIAL_HTTP_TIMEOUT_SECONDS", 10.0, minimum=0.1)

ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="")
ANTHROPIC_BASE_URL = _url("ANTHROPIC_BASE_URL", ("http", "https"))
ANTHROPIC_MODEL = env.str("ANTHROPIC_MODEL", default="claude-haiku-4-5")
ANTHROPIC_TIMEOUT_SECONDS = _float("ANTHROPIC_TIMEOUT_SECONDS", 30.0, minimum=0.1)
ANTHROPIC_MAX_RETRIES = _int("ANTHROPIC_MAX_RETRIES", 2, minimum=0)

# --- Operations dashboard (admin/ops/dashboard/) ---------------------------------------------------------------------
# How often the page polls its JSON endpoint, and how often beat's ops.dashboard_sample records the charts' figures.
DASHBOARD_REFRESH_SECONDS = _int("DASHBOARD_REFRESH_SECONDS", 5, minimum=1)
DASHBOARD_SAMPLE_SECONDS = _int("DASHBOARD_SAMPLE_SECONDS", 10, minimum=1)

# --- Alerts (apps/ops/alerts.py, docs/alerting.md) -----------------------------------------------------------------
# Thresholds of the platform's own evaluator (beat's ops.alerts_evaluate every 15 s); docker/prometheus/alerts.yml
# uses the same defaults.  A feed is stale when no frame came for this long during the session (and it is not paused).
FEED_STALE_SECONDS = _int("FEED_STALE_SECONDS", 120, minimum=1)
# The REST pollers run every minute or more: their feed gets a longer threshold.
UW_REST_STALE_SECONDS = _int("UW_REST_STALE_SECONDS", 300, minimum=1)
# Messages waiting in one stage queue before QueueBacklog fires.
QUEUE_BACKLOG_THRESHOLD = _int("QUEUE_BACKLOG_THRESHOLD", 1000, minimum=1)
# DeadLettersGrowing: at least this many failed task runs within the window.
DEAD_LETTERS_ALERT_THRESHOLD = _int("DEAD_LETTERS_ALERT_THRESHOLD", 1, minimum=1)
DEAD_LETTERS_ALERT_WINDOW_SECONDS = _int("DEAD_LETTERS_ALERT_WINDOW_SECONDS", 900, minimum=1)
# RedisMemoryHigh: used/maxmemory above this share when Redis has a maxmemory, else used memory above the bytes.
REDIS_MEMORY_ALERT_RATIO = _float("REDIS_MEMORY_ALERT_RATIO", 0.8, minimum=0.01)
REDIS_MEMORY_ALERT_BYTES = _int("REDIS_MEMORY_ALERT_BYTES", 2 * 1024**3, minimum=1)
# WorkerStalled: a canary sent to a queue waited this long without a worker consuming it (beat sends one a minute).
WORKER_STALLED_SECONDS = _int("WORKER_STALLED_SECONDS", 180, minimum=1)
# Where alerts (and their resolutions) are sent: a Telegram chat through the bot (TELEGRAM_BOT_TOKEN,
# TELEGRAM_BASE_URL) and/or a Discord webhook.  Neither set: alerts are only in the admin.
OPS_ALERT_TELEGRAM_CHAT_ID = env.str("OPS_ALERT_TELEGRAM_CHAT_ID", default="")
OPS_ALERT_DISCORD_WEBHOOK_URL = _url("OPS_ALERT_DISCORD_WEBHOOK_URL", ("http", "https"))
# Bearer token Alertmanager sends to POST /ops/alertmanager/; empty refuses every call.
ALERTMANAGER_WEBHOOK_TOKEN = env.str("ALERTMANAGER_WEBHOOK_TOKEN", default="")
# Prometheus and Alertmanager reach the web process over plain HTTP inside the compose network (as http://web:8000,
# so DJANGO_ALLOWED_HOSTS keeps "web"); those two paths are not redirected to HTTPS.
SECURE_REDIRECT_EXEMPT = [r"^metrics$", r"^ops/alertmanager/$"]

# --- Metrics (Prometheus) --------------------------------------------------------------------------------------------
# Workers and listeners serve their process group's metrics on this port (0 = not served); the web process serves
# /metrics on its own port.  PROMETHEUS_MULTIPROC_DIR is read before the settings (tradingplatform/metrics_dir.py).
METRICS_PORT = _int("METRICS_PORT", 0, minimum=0)
METRICS_ADDRESS = env.str("METRICS_ADDRESS", default="127.0.0.1").strip() or "127.0.0.1"

# --- Logging ----------------------------------------------------------------------------------------------------------
LOG_LEVEL = _choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper()
LOG_FORMAT = _choice("LOG_FORMAT", "json", ("json", "console"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"correlation": {"()": "apps.core.logging.CorrelationFilter"}},
    "formatters": {
        "json": {"()": "apps.core.logging.JsonFormatter"},
        "console": {"format": "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"},
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["correlation"],
        }
    },
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # ibapi logs every message it sends and receives at INFO; the platform logs what matters itself.
        "ibapi": {"level": "WARNING"},
        # One line per task at INFO floods the replay and the workers' logs; failures still log at ERROR.
        "celery.app.trace": {
            "level": _choice("CELERY_TRACE_LOG_LEVEL", "warning", ("debug", "info", "warning", "error")).upper()
        },
    },
}
