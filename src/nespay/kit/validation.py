"""Small reusable field types for request models."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

# Deliverability is the mail system's business; this only refuses what is plainly not an address.
Email = Annotated[str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
