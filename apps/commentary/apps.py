from django.apps import AppConfig


class CommentaryConfig(AppConfig):
    name = "apps.commentary"
    label = "commentary"
    verbose_name = "AI Commentator"
