"""Why a provider webhook is refused; each is a 4xx (or a 503 for our own misconfiguration)
in the one error shape, logged as `provider_webhook_refused` with the code."""

from __future__ import annotations

from nespay.errors import NespayError, NotFound


class WebhookRefused(NespayError):
    status_code = 400
    code = "webhook_refused"


class SourceNotAllowed(WebhookRefused):
    status_code = 403
    code = "webhook_source_not_allowed"
    message = "This address may not send webhooks to this endpoint."


class SignatureInvalid(WebhookRefused):
    status_code = 401
    code = "webhook_signature_invalid"
    message = "The webhook signature is missing or does not match the body."


class TokenInvalid(WebhookRefused):
    status_code = 401
    code = "webhook_token_invalid"
    message = "The webhook token is missing or wrong."


class BodyTooLarge(WebhookRefused):
    status_code = 413
    code = "webhook_body_too_large"
    message = "The webhook body is larger than 256 KiB."


class MalformedBody(WebhookRefused):
    status_code = 400
    code = "webhook_malformed_json"
    message = "The webhook body is not a JSON object."


class NotConfigured(WebhookRefused):
    status_code = 503
    code = "webhook_not_configured"
    message = "This provider's webhook secret is not configured; try again later."


class ProviderWebhookNotFound(NotFound):
    code = "provider_webhook_not_found"
    message = "No such provider webhook."
