"""A TWS simulator on loopback speaking the real TWS socket protocol, so the real ``ibapi`` client is exercised."""

from apps.execution.ib.simulator.control import ControlServer
from apps.execution.ib.simulator.server import TWSSimulator

__all__ = ["ControlServer", "TWSSimulator"]
