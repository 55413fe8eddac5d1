"""The job table of the jobs process: name, schedule and switch from settings, and the
function that does one run (a thin wrapper that opens sessions around an inner function that
tests call directly)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cronsim import CronSim

from nespay.config import Settings
from nespay.runtime import Runtime

JobFunc = Callable[[Runtime], Awaitable[str | None]]


class JobFailed(Exception):
    """A run that failed for a reason the job has already logged (a rate source down, say):
    recorded as the run's outcome with this message, logged without a traceback, so an
    outage that lasts hours is not a stack trace every run."""


@dataclass(frozen=True)
class Job:
    name: str
    schedule: str
    enabled: bool
    run: JobFunc
    timeout_s: float = 300.0

    def next_run_after(self, moment: datetime) -> datetime:
        # cronsim works on naive UTC times; second precision is enough for a scheduler.
        naive = moment.astimezone(UTC).replace(tzinfo=None, microsecond=0)
        return next(CronSim(self.schedule, naive)).replace(tzinfo=UTC)


def all_jobs(settings: Settings) -> dict[str, Job]:
    """Every job the platform runs; a domain adds its jobs here."""
    from nespay.chains.tasks import rpc_health
    from nespay.invoices.tasks import expire_invoices
    from nespay.ledger.tasks import check_invariants, reconcile_ledger
    from nespay.rates.tasks import refresh_rates
    from nespay.sweeps.tasks import consolidate
    from nespay.wallets.tasks import send_transactions

    jobs = [
        Job(
            name="chains.rpc_health",
            schedule=settings.rpc_health_job_schedule,
            enabled=settings.rpc_health_job_enabled,
            run=rpc_health,
            timeout_s=60.0,
        ),
        Job(
            name="invoices.expire",
            schedule=settings.invoice_expiry_job_schedule,
            enabled=settings.invoice_expiry_job_enabled,
            run=expire_invoices,
            timeout_s=120.0,
        ),
        Job(
            name="rates.refresh",
            schedule=settings.rates_job_schedule,
            enabled=settings.rates_job_enabled,
            run=refresh_rates,
            timeout_s=60.0,
        ),
        Job(
            name="ledger.reconcile",
            schedule=settings.reconciliation_job_schedule,
            enabled=settings.reconciliation_job_enabled,
            run=reconcile_ledger,
            timeout_s=300.0,
        ),
        Job(
            name="wallets.send",
            schedule=settings.wallet_send_job_schedule,
            enabled=settings.wallet_send_job_enabled,
            run=send_transactions,
            timeout_s=60.0,
        ),
        Job(
            name="consolidation.sweep",
            schedule=settings.consolidation_job_schedule,
            enabled=settings.consolidation_job_enabled,
            run=consolidate,
            timeout_s=settings.consolidation_job_timeout_ms / 1000,
        ),
        Job(
            name="ledger.invariants",
            schedule=settings.ledger_invariants_job_schedule,
            enabled=settings.ledger_invariants_job_enabled,
            run=check_invariants,
            timeout_s=300.0,
        ),
    ]
    return {job.name: job for job in jobs}
