from django.apps import AppConfig


class SignalsConfig(AppConfig):
    name = "apps.signals"
    label = "signals"
    verbose_name = "Signal Engine"
