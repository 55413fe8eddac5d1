"""Fault injection for crash tests: `NESPAY_FAULT=<point>` makes the process SIGKILL itself
when it reaches that point, so a test can prove what a crash exactly there leaves behind.
Settings refuse the variable outside development and test (see docs/sending.md for the
points)."""

from __future__ import annotations

import os
import signal
import sys
from typing import Protocol


class _FaultSettings(Protocol):
    nespay_fault: str | None

    @property
    def is_development(self) -> bool: ...


def fault_point(settings: _FaultSettings, point: str) -> None:
    """Die here, at once and without cleanup, if this is the configured point."""
    if settings.nespay_fault == point and settings.is_development:
        sys.stderr.write(f"NESPAY_FAULT: killing the process at {point}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
