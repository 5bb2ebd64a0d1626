"""Where this process group keeps its Prometheus values (``prometheus_client`` multiprocess mode).

A Celery worker's prefork children, gunicorn's workers and a listener each record metrics in their own process;
``prometheus_client`` adds them up from one memory-mapped file per process in ``PROMETHEUS_MULTIPROC_DIR``.  The
library decides at import whether it runs in that mode, so ``tradingplatform/__init__.py`` calls
``metrics_dir_prepare`` before anything can import it.  This module must therefore import nothing but the standard
library.

The rule, decided once here:

- ``PROMETHEUS_MULTIPROC_DIR`` unset (the default, and what compose runs): the first platform process of a tree (the
  Celery worker's main process, gunicorn's master through ``gunicorn.conf.py``, a management command) *owns* a fresh
  directory ``$TP_DATA_DIR/prometheus/<its pid>``: it empties it at start (a container's pid 1 finds the files of its
  previous run there), removes the directories of processes that are gone, and removes its own at a normal exit.
  Its forked children (prefork, gunicorn workers) inherit it through the environment, so one endpoint sums them.  A
  process *started* by a platform process (``live_sim`` starting a worker, a test starting a worker) is a new
  interpreter and owns a directory of its own: each process group is scraped on its own, never twice.
- ``PROMETHEUS_MULTIPROC_DIR`` set by the operator: every process that has it shares it and the platform never
  empties it (it cannot know which process of those sharing it starts first); give it a directory emptied at start
  (a tmpfs mount, or ``rm -rf`` before the command).
"""

from __future__ import annotations

import atexit
import os
import shutil
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
# The default directory a platform process chose, beside PROMETHEUS_MULTIPROC_DIR: a fresh interpreter that finds
# both equal inherited them from the platform process that started it (and makes its own); a different or missing
# value means an operator chose the directory.
DEFAULT_ENV = "TP_METRICS_DIR_DEFAULT"
SUBDIR = "prometheus"


def _data_dir() -> Path:
    # settings.DATA_DIR's rule, read without importing the settings (they must not load before prometheus_client is
    # configured, and a management command may not have chosen its settings module yet).
    default = Path(__file__).resolve().parent.parent / "var"
    return Path(os.environ.get("TP_DATA_DIR", str(default)))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def _prune(base: Path, keep: Path) -> None:
    """Remove the directories of owners that are gone (killed without running their exit handler)."""
    for child in base.iterdir():
        if child == keep or not child.is_dir() or not child.name.isdigit():
            continue
        if not _pid_alive(int(child.name)):
            shutil.rmtree(child, ignore_errors=True)


def _remove_own(path: Path, owner: int) -> None:
    # Forked children inherit this exit handler (a gunicorn worker exits through SystemExit): only the owner removes.
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)


def metrics_dir_prepare() -> Path:
    """Make sure ``PROMETHEUS_MULTIPROC_DIR`` names an existing directory this process may write to, following the
    rule in the module docstring, and return it."""
    current = os.environ.get(ENV)
    pid = os.getpid()
    if current and current != os.environ.get(DEFAULT_ENV):
        path = Path(current)
        path.mkdir(parents=True, exist_ok=True)
        return path
    base = _data_dir() / SUBDIR
    path = base / str(pid)
    if current == str(path):
        return path  # this process prepared it already
    shutil.rmtree(path, ignore_errors=True)  # the files of a previous run of a process with this pid
    path.mkdir(parents=True, exist_ok=True)
    _prune(base, keep=path)
    os.environ[ENV] = os.environ[DEFAULT_ENV] = str(path)
    atexit.register(_remove_own, path, pid)
    return path
