"""Telling a merchant that its callback endpoint was disabled, by email (`nespay.mail`)."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from nespay.config import Settings
from nespay.mail import send_email, sender


def disabled_message(settings: Settings, endpoint: dict[str, Any]) -> EmailMessage:
    app = settings.email_app_name
    message = EmailMessage()
    message["From"] = sender(settings)
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
    return await send_email(
        settings,
        disabled_message(settings, endpoint),
        template="webhook_endpoint_disabled",
        merchant_id=endpoint["merchant_id"],
    )
