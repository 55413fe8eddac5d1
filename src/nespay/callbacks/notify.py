"""Telling a merchant that its callback endpoint was disabled, by email through `SMTP_URL`
(self-hosted; `smtps://` for implicit TLS, STARTTLS when a plain server offers it)."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

import structlog

from nespay.config import Settings

log = structlog.get_logger("nespay.callbacks")
SMTP_TIMEOUT_S = 15.0


def disabled_message(settings: Settings, endpoint: dict[str, Any]) -> EmailMessage:
    app = settings.email_app_name
    message = EmailMessage()
    message["From"] = settings.aws_ses_from_email or settings.email_support_email
    message["To"] = endpoint["email"]
    message["Subject"] = f"{app}: your callback endpoint was disabled"
    since = endpoint["failing_since"].strftime("%Y-%m-%d %H:%M UTC")
    message.set_content(
        f"Hello {endpoint['name']},\n\n"
        f"Every callback {app} sent to {endpoint['url']} since {since} has failed, so the "
        f"endpoint ({endpoint['id']}) has been disabled and no more callbacks are sent to it.\n\n"
        "Events keep being recorded. When your server is back:\n"
        f"  1. re-enable the endpoint: PATCH /api/v1/webhook-endpoints/{endpoint['id']} "
        '{"enabled": true} (queued callbacks then go out in order);\n'
        "  2. resend any event that was marked failed: POST /api/v1/events/{id}/redeliver.\n"
        "The attempts and the answers your server gave are listed by "
        "GET /api/v1/events/{id}/deliveries.\n\n"
        f"Questions: {settings.email_support_email}\n"
    )
    return message


async def endpoint_disabled(settings: Settings, endpoint: dict[str, Any]) -> bool:
    """Email the merchant; whether it went out. Never raises (the endpoint is disabled either
    way, and the pipeline tries again later while it has not gone out)."""
    if settings.smtp_url is None:
        log.warning(
            "email_not_sent",
            reason="SMTP_URL is not set",
            template="webhook_endpoint_disabled",
            merchant_id=endpoint["merchant_id"],
        )
        return False
    message = disabled_message(settings, endpoint)
    try:
        await asyncio.to_thread(send, settings.smtp_url.get_secret_value(), message)
    except (OSError, smtplib.SMTPException) as error:
        log.error(
            "email_failed",
            template="webhook_endpoint_disabled",
            merchant_id=endpoint["merchant_id"],
            error=type(error).__name__,
        )
        return False
    log.info(
        "email_sent", template="webhook_endpoint_disabled", merchant_id=endpoint["merchant_id"]
    )
    return True


def send(url: str, message: EmailMessage) -> None:
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
