"""A local Unusual Whales (socket + REST on one loopback port) serving a recorded session; see docs/uw_standin.md."""

from .server import FirehoseRun, UWStandin
from .timeline import SessionFrame, load_frames

__all__ = ["FirehoseRun", "SessionFrame", "UWStandin", "load_frames"]
