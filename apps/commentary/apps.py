from django.apps import AppConfig


class CommentaryConfig(AppConfig):
    name = "apps.commentary"
    label = "commentary"
    verbose_name = "AI Commentator"

    def ready(self) -> None:
        from apps.commentary.services.decisions import handlers_register

        handlers_register()
