"""Reading compose.yaml the way docker-compose does (anchors and ``<<`` merges resolved), for the ops tests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "compose.yaml"
_REQUIRED = re.compile(r"\$\{([A-Z_]+):\?[^}]*\}")


def compose_services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def compose_command(service: str, **values: str) -> list[str]:
    """The service's command as argv, with each required ``${NAME:?...}`` replaced by ``values[NAME]``."""
    command = compose_services()[service]["command"]
    assert isinstance(command, list), f"{service}: command must be a list (exec form), got {command!r}"
    return [_REQUIRED.sub(lambda m: values[m.group(1)], part) for part in command]
