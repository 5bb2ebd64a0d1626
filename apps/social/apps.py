from django.apps import AppConfig


class SocialConfig(AppConfig):
    name = "apps.social"
    label = "social"
    verbose_name = "Social queue"

    def ready(self) -> None:
        from apps.social import services

        services.handlers_register()
