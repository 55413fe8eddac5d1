"""How the scanners are doing, for `GET /jobs` and the jobs process's health check: per network
that needs a scanner, its head, cursor, lag, last scan and the error it is failing with.

A scanner is *stuck* when it has been failing for `SCANNER_STUCK_AFTER_S`, or nobody has moved
its cursor for that long (no replica holds its lease, or the one that does hangs): the jobs
health check then answers 503 naming it. One that is *lagging* (more than
`SCANNER_LAG_ALERT_BLOCKS` behind the head: catching up after downtime, or slower than the
chain) is reported in the health check's `info` without failing it — it is working.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from nespay.chains import cursors
from nespay.config import Settings


@dataclass(frozen=True)
class ScannersHealth:
    stuck: list[str]  # one line per stuck network
    lagging: list[str]


async def network_states(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Every network that needs a scanner now, with its scanning state."""
    return await cursors.scan_states(conn, await cursors.networks_to_scan(conn))


def judge(states: list[dict[str, Any]], settings: Settings) -> ScannersHealth:
    stuck, lagging = [], []
    limit = settings.scanner_stuck_after_s
    for state in states:
        network, failing_since = state["network"], state["failing_since"]
        if failing_since is not None and state["failing_for_s"] >= limit:
            stuck.append(f"{network}: failing for {int(state['failing_for_s'])} s: "
                         f"{state['last_error']}")  # fmt: skip
        elif state["cursor"] is not None and state["idle_s"] >= limit:
            stuck.append(f"{network}: no scan for {int(state['idle_s'])} s (is a jobs replica "
                         "running with SCANNER_ENABLED?)")  # fmt: skip
        elif (state["lag_blocks"] or 0) > settings.scanner_lag_alert_blocks:
            lagging.append(f"{network}: {state['lag_blocks']} blocks behind the head")
    return ScannersHealth(stuck, lagging)


async def health(conn: AsyncConnection, settings: Settings) -> ScannersHealth:
    return judge(await network_states(conn), settings)
