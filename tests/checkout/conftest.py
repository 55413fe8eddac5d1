"""A real api process (`nespay serve api`) on the session's database, for what only a real
HTTP server shows: the live event stream as it arrives, and pages in a browser. The test's
chain (tests/payments/conftest.py) registers its network in the same database and runs the
scanner in the test; the api process only reads."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.processes import RunningProcess, base_env, nespay_process
from tests.payments.conftest import chain  # noqa: F401 - a fixture


@pytest.fixture(scope="module")
def api_server(shared_settings, tmp_path_factory) -> Iterator[RunningProcess]:
    env = base_env(
        shared_settings.database_url.get_secret_value(),
        # The page's own requests (assets, QR, the event stream) and the tests' come from one
        # address: the public rate limit is not what is tested here.
        RATE_LIMIT_IP="default=600/60,public=100000/60,backoffice=600/60",
    )
    with nespay_process("api", env, tmp_path_factory.mktemp("checkout-api")) as running:
        yield running
