"""Email to merchants, through one of two transports:

- `SMTP_URL` (`smtp://user:pass@host:port`; `smtps://` for implicit TLS, STARTTLS when a plain
  server offers it), for self-hosting; it wins when set;
- Amazon SES (API v2 `SendEmail`, the whole MIME message as raw content) when
  `AWS_SES_FROM_EMAIL` is set: the region is `AWS_REGION` (or the Cognito pool's), credentials
  come from the standard AWS chain (environment, profile, instance or task role), and
  `AWS_SES_ENDPOINT_URL` points at an emulator.

Neither set: nothing is sent and the process says so in its log. A transport that fails is
reported as not sent (`False`); the caller keeps the message's obligation and tries again.
"""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import structlog

from nespay.config import Settings

log = structlog.get_logger("nespay.mail")
SMTP_TIMEOUT_S = 15.0
SES_CONNECT_TIMEOUT_S = 5.0
SES_READ_TIMEOUT_S = 15.0


def sender(settings: Settings) -> str:
    """The From address: the SES identity when there is one, else the support address."""
    return settings.aws_ses_from_email or settings.email_support_email


def transport(settings: Settings) -> str | None:
    if settings.smtp_url is not None:
        return "smtp"
    if settings.aws_ses_from_email:
        return "ses"
    return None


async def send_email(settings: Settings, message: EmailMessage, **context: str) -> bool:
    """Send `message`; whether it went out. Never raises. `context` (template, merchant id…)
    goes into the log lines; the message's content and the credentials never do."""
    via = transport(settings)
    if via is None:
        log.warning(
            "email_not_sent", reason="neither SMTP_URL nor AWS_SES_FROM_EMAIL is set", **context
        )
        return False
    try:
        if via == "smtp":
            assert settings.smtp_url is not None
            await asyncio.to_thread(send_smtp, settings.smtp_url.get_secret_value(), message)
        else:
            await asyncio.to_thread(send_ses, settings, message)
    except Exception as error:  # noqa: BLE001 - every failure means "not sent, try again"
        log.error("email_failed", transport=via, error=_describe(error), **context)
        return False
    log.info("email_sent", transport=via, **context)
    return True


def send_smtp(url: str, message: EmailMessage) -> None:
    parts = urlsplit(url)
    host, tls = parts.hostname or "localhost", parts.scheme == "smtps"
    port = parts.port or (465 if tls else 25)
    smtp_class = smtplib.SMTP_SSL if tls else smtplib.SMTP
    with smtp_class(host, port, timeout=SMTP_TIMEOUT_S) as smtp:
        smtp.ehlo()
        if not tls and smtp.has_extn("starttls"):
            smtp.starttls()
            smtp.ehlo()
        if parts.username:
            smtp.login(unquote(parts.username), unquote(parts.password or ""))
        smtp.send_message(message)


def send_ses(settings: Settings, message: EmailMessage) -> None:
    # botocore signs (SigV4), resolves credentials and retries throttling; imported here, as
    # only a process that sends email needs it.
    import botocore.session
    from botocore.config import Config

    client = botocore.session.get_session().create_client(
        "sesv2",
        region_name=settings.region,
        endpoint_url=settings.aws_ses_endpoint_url,
        config=Config(
            connect_timeout=SES_CONNECT_TIMEOUT_S,
            read_timeout=SES_READ_TIMEOUT_S,
            retries={"mode": "standard", "total_max_attempts": 3},
        ),
    )
    try:
        client.send_email(
            FromEmailAddress=sender(settings),
            Destination={"ToAddresses": [str(message["To"])]},
            Content={"Raw": {"Data": message.as_bytes()}},
        )
    finally:
        client.close()


def _describe(error: Exception) -> str:
    """What went wrong, for the log: SES's error code, or the exception's type (never its
    text, which may carry an address or a server's answer)."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return f"{type(error).__name__}: {code}"
    return type(error).__name__
