from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "apps.ops"
    label = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        # Connects the Celery signal receivers (dead letters) in every process that loads Django, workers included.
        # Task counts and stage latency, and a worker's metrics endpoint (apps/ops/metrics_signals.py).
        # The dashboard's beat task lives in its own module; autodiscovery imports only ``tasks``.
        from apps.ops import (
            dashboard_tasks,  # noqa: F401
            metrics_signals,  # noqa: F401
            receivers,  # noqa: F401
        )
