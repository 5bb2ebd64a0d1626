import importlib

from django.apps import AppConfig, apps


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        # The correlation id travels with every task (message header) in every process that loads Django.
        from apps.core import correlation  # noqa: F401

        # Register every app's tasks in every process (management commands and the replay included), not only in
        # workers, so a task looked up by its dotted name is always found. All models are loaded by now.
        for config in apps.get_app_configs():
            if config.name.startswith("apps."):
                try:
                    importlib.import_module(f"{config.name}.tasks")
                except ModuleNotFoundError as exc:
                    if exc.name != f"{config.name}.tasks":
                        raise
