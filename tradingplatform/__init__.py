# Before anything imports prometheus_client: it chooses multiprocess mode from PROMETHEUS_MULTIPROC_DIR at import.
from .metrics_dir import metrics_dir_prepare

metrics_dir_prepare()

from .celery import app as celery_app  # noqa: E402

__all__ = ("celery_app",)
