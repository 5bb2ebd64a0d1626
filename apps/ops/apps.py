from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "apps.ops"
    label = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        # Connects the Celery signal receivers (dead letters) in every process that loads Django, workers included.
        from apps.ops import receivers  # noqa: F401
