"""Email to merchants through Amazon SES (API v2, SigV4-signed by botocore) when
`AWS_SES_FROM_EMAIL` is set, against a stand-in that checks the signature; SMTP is covered
with a real SMTP server in `test_delivery_resilience.py`."""

from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs

from nespay.callbacks.notify import endpoint_disabled
from nespay.config import ConfigError, load_settings
from tests.fixtures.database import make_settings
from tests.fixtures.fake_ses import REGION, FakeSes

ENDPOINT = {
    "id": "we_01emailtest",
    "merchant_id": "mer_01emailtest",
    "url": "https://merchant.example/hooks",
    "failing_since": datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
    "email": "owner@merchant.example",
    "name": "Merchant Co",
}


def ses_settings(database_url: str, ses: FakeSes, **overrides: object):
    return make_settings(
        database_url,
        aws_ses_from_email="no-reply@nespay.example",
        aws_region=REGION,
        aws_ses_endpoint_url=ses.url,
        email_support_email="support@nespay.example",
        **overrides,
    )


async def test_the_disabled_endpoint_email_goes_out_through_ses_signed(
    database_url, fake_ses, aws_credentials
):
    sent = await endpoint_disabled(ses_settings(database_url, fake_ses), ENDPOINT)
    assert sent is True
    assert fake_ses.refused == []  # the signature verified
    (request,) = fake_ses.sent
    assert request["FromEmailAddress"] == "no-reply@nespay.example"
    assert request["Destination"]["ToAddresses"] == ["owner@merchant.example"]
    (mail,) = fake_ses.messages()
    assert mail["From"] == "no-reply@nespay.example" and mail["To"] == "owner@merchant.example"
    assert "disabled" in mail["Subject"]
    text = mail.get_payload(decode=True).decode()
    assert ENDPOINT["id"] in text and ENDPOINT["url"] in text
    assert "support@nespay.example" in text


async def test_throttling_is_retried_and_the_email_still_goes_out(
    database_url, fake_ses, aws_credentials
):
    fake_ses.fail_next(429, "TooManyRequestsException", times=2)
    assert await endpoint_disabled(ses_settings(database_url, fake_ses), ENDPOINT) is True
    assert len(fake_ses.sent) == 1


async def test_an_ses_outage_reports_not_sent_so_the_caller_tries_again(
    database_url, fake_ses, aws_credentials
):
    fake_ses.fail_next(500, "InternalFailure", times=3)  # every try of this send
    settings = ses_settings(database_url, fake_ses)
    with capture_logs() as logs:
        assert await endpoint_disabled(settings, ENDPOINT) is False
    assert fake_ses.sent == []
    failed = [line for line in logs if line["event"] == "email_failed"]
    assert failed and failed[0]["transport"] == "ses" and "InternalFailure" in failed[0]["error"]
    # SES is back: the next try (the pipeline's notice sweep) sends it.
    assert await endpoint_disabled(settings, ENDPOINT) is True
    assert len(fake_ses.sent) == 1


async def test_wrong_credentials_are_refused_by_ses_and_never_logged(
    database_url, fake_ses, aws_credentials, monkeypatch
):
    wrong_secret = "not-the-right-secret-9c1a"  # noqa: S105 - test value
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong_secret)
    with capture_logs() as logs:
        sent = await endpoint_disabled(ses_settings(database_url, fake_ses), ENDPOINT)
    assert sent is False
    assert fake_ses.refused and fake_ses.refused[0] == (403, "SignatureDoesNotMatch")
    assert fake_ses.sent == []
    assert wrong_secret not in repr(logs)
    assert any("SignatureDoesNotMatch" in str(line.get("error")) for line in logs)


async def test_smtp_wins_when_both_are_set_and_neither_set_sends_nothing(
    database_url, fake_ses, aws_credentials
):
    both = ses_settings(database_url, fake_ses, smtp_url="smtp://127.0.0.1:9")  # nothing there
    with capture_logs() as logs:
        assert await endpoint_disabled(both, ENDPOINT) is False
        assert await endpoint_disabled(make_settings(database_url), ENDPOINT) is False
    assert fake_ses.sent == [] and fake_ses.refused == []
    assert [line.get("transport") for line in logs if line["event"] == "email_failed"] == ["smtp"]
    (skipped,) = [line for line in logs if line["event"] == "email_not_sent"]
    assert "AWS_SES_FROM_EMAIL" in skipped["reason"]


def test_ses_without_a_region_is_refused_at_start_naming_aws_region(monkeypatch, capsys):
    for name in ("AWS_REGION", "COGNITO_USER_POOL_ID", "COGNITO_ADMIN_POOL_ID", "SMTP_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("APP_ENV", "development")
    monkeypatch.setenv("AWS_SES_FROM_EMAIL", "no-reply@nespay.example")
    with pytest.raises(ConfigError):
        load_settings(_env_file=None)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("AWS_REGION") or "AWS_REGION:" in line, line
