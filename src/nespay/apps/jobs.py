"""The jobs process: scheduled jobs shared between replicas by leases, and an HTTP port for
health, metrics and job status."""

from __future__ import annotations

from fastapi import FastAPI

from nespay.apps.common import build_app
from nespay.callbacks.pipeline import CallbackPipeline
from nespay.chains.supervisor import ScannerSupervisor
from nespay.config import Settings, get_settings
from nespay.jobs.endpoints import router as jobs_router
from nespay.jobs.registry import all_jobs
from nespay.jobs.runner import JobRunner
from nespay.runtime import Runtime


async def _start(app: FastAPI, runtime: Runtime) -> None:
    app.state.runner = JobRunner(runtime, all_jobs(runtime.settings))
    await app.state.runner.start()
    app.state.callbacks = None
    if runtime.settings.callback_delivery_enabled:
        app.state.callbacks = CallbackPipeline(runtime)
        await app.state.callbacks.start()
    app.state.scanners = None
    if runtime.settings.scanner_enabled:
        app.state.scanners = ScannerSupervisor(runtime)
        await app.state.scanners.start()


async def _stop(app: FastAPI, runtime: Runtime) -> None:
    callbacks: CallbackPipeline | None = getattr(app.state, "callbacks", None)
    if callbacks is not None:
        await callbacks.stop()
    scanners: ScannerSupervisor | None = getattr(app.state, "scanners", None)
    if scanners is not None:
        await scanners.stop()
    runner: JobRunner | None = getattr(app.state, "runner", None)
    if runner is not None:
        await runner.stop()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    prefix = "/" + settings.public_api_prefix
    return build_app(
        "jobs", settings, routers=[(prefix, jobs_router)], on_start=_start, on_stop=_stop
    )
