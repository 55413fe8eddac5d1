"""Settings: one class, read from the environment and `.env`, validated at start-up.

Variable names are the deployment guide's (upper case in the environment). A bad value stops
the process with one line per variable naming it and what is expected, never its value
(see `load_settings`).
"""

from __future__ import annotations

import ipaddress
import re
import sys
from functools import lru_cache
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlsplit

from cronsim import CronSim, CronSimError
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from nespay import devstate
from nespay.devstate import DevStackStopped

Port = Annotated[int, Field(ge=1, le=65535)]
CommaList = Annotated[list[str], NoDecode]

# Values that ship in `.env.example`, the guide, or as defaults: refused outside development.
EXAMPLE_SECRETS = {
    "password",
    "yourpassword",
    "your-64-byte-hex-key",
    "your-shared-secret",
    "changeme",
    "secret",
    "...",
}
DEV_MASTER_KEY = "00" * 64
INTRAJASA_SANDBOX_URL = "https://sandbox-va.kliringindonesia.co.id"
INTRAJASA_PRODUCTION_URL = "https://va.kliringindonesia.co.id"


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def parse_host_port(item: str) -> tuple[str, int]:
    host, sep, port = item.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("expected host:port")
    return host.strip("[]"), int(port)


def parse_nat_map(value: str) -> dict[tuple[str, int], tuple[str, int]]:
    """`from_host:port=>to_host:port,…` → {(from_host, port): (to_host, port)}."""
    mapping: dict[tuple[str, int], tuple[str, int]] = {}
    for pair in _split_csv(value or ""):
        source, arrow, target = pair.partition("=>")
        if not arrow:
            raise ValueError("expected host:port=>host:port pairs separated by commas")
        try:
            mapping[parse_host_port(source)] = parse_host_port(target)
        except ValueError:
            raise ValueError("expected host:port=>host:port pairs separated by commas") from None
    return mapping


@lru_cache(maxsize=16)
def parse_rate_limits(value: str) -> dict[str, tuple[int, int]]:
    """`group=requests/seconds,…` → {group: (requests, seconds)}; must name `default`."""
    limits: dict[str, tuple[int, int]] = {}
    for item in _split_csv(value):
        group, eq, rule = item.partition("=")
        requests, slash, seconds = rule.partition("/")
        if not (eq and slash and requests.isdigit() and seconds.isdigit() and int(seconds) > 0):
            raise ValueError(
                "expected group=requests/seconds pairs, e.g. default=600/60,public=300/60"
            )
        limits[group.strip()] = (int(requests), int(seconds))
    if "default" not in limits:
        raise ValueError("expected a default=requests/seconds entry")
    return limits


def validate_cron(value: str) -> str:
    from datetime import datetime

    try:
        CronSim(value, datetime(2000, 1, 1))
    except (CronSimError, ValueError, IndexError):
        raise ValueError("expected a 5-field cron expression such as '*/5 * * * *'") from None
    return value


class DevStackSource(PydanticBaseSettingsSource):
    """The lowest-priority source: the database of the `nespay dev` running in this folder
    (`nespay.devstate`), when nothing else names one. Not read when the caller asked for no
    `.env` (explicit settings only) or outside development."""

    def __init__(self, settings_cls: type[BaseSettings], enabled: bool) -> None:
        super().__init__(settings_cls)
        self.enabled = enabled

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is decided in __call__

    def __call__(self) -> dict[str, Any]:
        given = {key.lower(): value for key, value in self.current_state.items()}
        env = given.get("app_env", given.get("node_env", "development"))
        if not self.enabled or "database_url" in given or env in ("staging", "production"):
            return {}
        url = devstate.database_url()  # DevStackStopped when its stack is gone
        return {} if url is None else {"database_url": url}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="ignore",
        hide_input_in_errors=True,
        populate_by_name=True,
    )

    # --- core -------------------------------------------------------------------------------
    app_env: Literal["development", "test", "staging", "production"] = Field(
        "development", validation_alias=AliasChoices("APP_ENV", "NODE_ENV")
    )
    api_port: Port = 8000
    webhook_port: Port = 8001
    job_port: Port = 8002
    host: str = "0.0.0.0"
    base_url: str = "http://localhost:8000"
    public_api_prefix: str = "api/v1"
    internal_api_prefix: str = "api/backoffice/v1"
    # Unset: on in development (APP_ENV=development), off in test, staging and production.
    swagger_enable: bool = False
    enable_cors_urls: CommaList = []
    health_token: SecretStr | None = None
    app_scheme: str = "nespay"

    # --- database ---------------------------------------------------------------------------
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/nespay?schema=public")
    database_pool_size: int = Field(10, ge=1, le=200)
    database_max_overflow: int = Field(10, ge=0, le=200)
    db_monitoring_enabled: bool = False
    db_monitoring_level: Literal["debug", "info", "warning", "error"] = "warning"
    db_slow_query_threshold: int = Field(500, ge=0)  # ms

    # --- redis ------------------------------------------------------------------------------
    redis_enabled: bool = False
    redis_user: str | None = None
    redis_password: SecretStr | None = None
    redis_host: str = "localhost"
    redis_port: Port = 6379
    redis_db: int = Field(0, ge=0, le=15)
    redis_max_retries: int = Field(3, ge=0, le=100)
    redis_retry_delay: int = Field(100, ge=0)  # ms
    redis_max_retry_delay: int = Field(2000, ge=0)  # ms
    redis_ready_check: bool = True
    redis_offline_queue: bool = False
    redis_lazy_connect: bool = False
    redis_cluster_enabled: bool = False
    redis_cluster_nodes: CommaList = []
    redis_cluster_nat_map: str = ""
    redis_sentinel_enabled: bool = False
    redis_sentinel_name: str = "mymaster"
    redis_sentinel_nodes: CommaList = []
    redis_sentinel_nat_map: str = ""

    # --- rabbitmq ---------------------------------------------------------------------------
    rabbitmq_url: SecretStr | None = None
    rabbitmq_quorum_queues: bool = False

    # --- cognito ----------------------------------------------------------------------------
    cognito_user_pool_id: str | None = None
    cognito_user_client_id: str | None = None
    cognito_admin_pool_id: str | None = None
    cognito_admin_client_id: str | None = None
    aws_region: str | None = None
    cognito_endpoint_url: str | None = None

    # --- privy / rain -----------------------------------------------------------------------
    privy_app_id: str | None = None
    privy_app_secret: SecretStr | None = None
    privy_api: str = "https://api.privy.io"
    # The Svix signing secret (whsec_…) of the Privy dashboard's webhook endpoint.
    privy_webhook_secret: SecretStr | None = None
    rain_api_url: str = "https://api.raincards.xyz"
    rain_api_key: SecretStr | None = None  # also the key Rain signs its webhooks with
    card_admin_evm_wallet_address: str | None = None
    # Intrajasa's rupiah virtual accounts (docs/intrajasa.md): on when both are set.
    intrajasa_merchant_id: str | None = Field(None, max_length=64)
    intrajasa_secret_word: SecretStr | None = None
    intrajasa_base_url: str = INTRAJASA_SANDBOX_URL
    intrajasa_timeout_s: float = Field(10.0, gt=0, le=60)
    rain_timeout_s: float = Field(10.0, gt=0, le=60)  # per call to Rain
    rain_max_retries: int = Field(2, ge=0, le=5)  # of a call answered 429 or 5xx

    # --- wallets ----------------------------------------------------------------------------
    wallet_provider: Literal["hd", "privy"] = "hd"
    hd_wallet_xpub: str | None = None
    tron_hd_wallet_xpub: str | None = None

    # --- callbacks and email ----------------------------------------------------------------
    callback_allow_private_urls: bool = False
    callback_delivery_enabled: bool = True  # the relay and the delivery worker (jobs process)
    callback_concurrency: int = Field(256, ge=1, le=4096)  # POSTs in flight per jobs process
    callback_lease_s: int = Field(60, ge=15, le=3600)  # a claimed delivery's hold (> 10 s POST)
    callback_sweep_interval_s: int = Field(10, ge=1, le=3600)
    callback_relay_poll_ms: int = Field(50, ge=5, le=10_000)  # the outbox relay's idle poll
    callback_retry_window_h: int = Field(72, ge=1, le=24 * 30)  # retry for this long, then failed
    # Seconds between attempts; the last step repeats until the window ends (docs/callbacks.md).
    callback_retry_schedule_s: CommaList = [
        "5",
        "30",
        "120",
        "600",
        "1800",
        "3600",
        "10800",
        "21600",
    ]
    callback_disable_after_h: int = Field(72, ge=1, le=24 * 30)  # failing this long: disabled
    smtp_url: SecretStr | None = None
    email_app_name: str = "Nespay"
    email_support_email: str = "support@localhost"
    aws_ses_from_email: str | None = None
    aws_ses_endpoint_url: str | None = None  # an SES emulator; unset: AWS's endpoint

    # --- security ---------------------------------------------------------------------------
    encryption_master_key: SecretStr = SecretStr(DEV_MASTER_KEY)
    encryption_master_key_previous: SecretStr | None = None
    trusted_proxies: CommaList = []
    rate_limit_ip: str = "default=600/60,public=300/60,backoffice=600/60"
    rate_limit_key: str = "default=1200/60"
    webhook_enable_ip_validation: bool = True
    webhook_enable_signature_validation: bool = True
    webhook_allowed_ips: CommaList = []
    webhook_rain_allowed_ips: CommaList = []
    webhook_intrajasa_token: SecretStr | None = None
    # The provider inbox (docs/webhooks.md): handling tries, the seconds between them, the sweep.
    webhook_max_attempts: int = Field(8, ge=1, le=100)
    webhook_retry_schedule_s: CommaList = ["10", "60", "300", "1800", "3600", "10800"]
    webhook_sweep_interval_s: int = Field(10, ge=1, le=3600)
    # Whether this webhook process also handles what is stored (consumer and sweep); off for
    # intake-only replicas while other replicas handle.
    webhook_handling_enabled: bool = True

    # --- observability ----------------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    otlp_logs_endpoint: str | None = None
    service_name: str = "nespay-backend"
    service_version: str = "0.1.0"
    environment: str | None = None
    cluster_name: str | None = None
    loki_url: str | None = None

    # --- invoices and rates ----------------------------------------------------------------
    invoice_default_expiry_s: int = Field(900, ge=60, le=30 * 24 * 3600)
    invoice_metadata_max_bytes: int = Field(8192, ge=256, le=65536)
    # Where fiat rates come from, in order of preference: admin (the backoffice table), coingecko.
    rates_sources: CommaList = ["admin", "coingecko"]
    rates_max_age_s: int = Field(900, ge=10)
    coingecko_api_url: str = "https://api.coingecko.com"
    coingecko_api_key: SecretStr | None = None
    # Stablecoins priced at their peg (code=fiat:value) unless a source says otherwise.
    stablecoin_pegs: CommaList = ["USDT=USD:1", "USDC=USD:1"]

    # --- scanning ---------------------------------------------------------------------------
    scanner_enabled: bool = True
    scanner_batch_blocks: int = Field(100, ge=1, le=5000)
    scanner_poll_interval_ms: int = Field(250, ge=10, le=60_000)
    scanner_lease_s: int = Field(30, ge=5, le=600)
    # A currency or network switched off is still scanned until its invoices' last expiry
    # plus this long (late payments are still credited).
    scanner_watch_after_expiry_s: int = Field(86_400, ge=0, le=30 * 86_400)
    # The jobs health check reports a scanner stuck (no step for this long) or lagging.
    scanner_stuck_after_s: int = Field(120, ge=10, le=86_400)
    scanner_lag_alert_blocks: int = Field(500, ge=1)

    # --- ledger and withdrawals -------------------------------------------------------------
    # The platform's fee on confirmed payments (basis points), for merchants without their own.
    platform_fee_bps: int = Field(0, ge=0, le=10_000)

    # --- jobs (each: enabled flag + cron schedule) ------------------------------------------
    consolidation_job_enabled: bool = False
    consolidation_job_schedule: str = "0 * * * *"
    consolidation_job_max_concurrent: int = Field(5, ge=1, le=100)
    consolidation_job_timeout_ms: int = Field(300_000, ge=1000)
    # A sweep whose gas would cost more than this share of the value (basis points) is left
    # as dust (listed, re-judged every pass).
    consolidation_max_gas_share_bps: int = Field(500, ge=0, le=10_000)
    rpc_health_job_enabled: bool = True
    rpc_health_job_schedule: str = "* * * * *"
    rates_job_enabled: bool = True
    rates_job_schedule: str = "*/5 * * * *"
    invoice_expiry_job_enabled: bool = True
    invoice_expiry_job_schedule: str = "* * * * *"
    # Money out (nespay.wallets.sender): sign, broadcast, replace and confirm queued
    # transactions. A 6-field schedule (seconds first) runs it more often than once a minute.
    reconciliation_job_enabled: bool = True
    reconciliation_job_schedule: str = "20 * * * *"
    wallet_send_job_enabled: bool = True
    wallet_send_job_schedule: str = "*/5 * * * * *"
    # A broadcast transaction not mined after this long is replaced at the same nonce.
    wallet_send_replace_after_s: int = Field(180, ge=5, le=86_400)
    # Priority fee: this percentile of the last blocks' tips (eth_feeHistory), at least the
    # floor below (wei per gas).
    wallet_send_tip_percentile: int = Field(50, ge=1, le=99)
    wallet_send_min_priority_fee_wei: int = Field(1_000_000, ge=0)
    # Tron: a transaction expires this long after the head block it was signed at (java-tron
    # allows up to 24 h); an expired one never sent, or sent and provably never mined, is
    # signed again (docs/sending.md, "Tron").
    wallet_tron_expiration_s: int = Field(120, ge=30, le=86_400)
    # The ledger's invariants on the whole ledger (nespay.ledger.invariants): balance,
    # counters against transfers, shortfalls, resolutions.
    ledger_invariants_job_enabled: bool = True
    ledger_invariants_job_schedule: str = "*/10 * * * *"

    # --- testing -----------------------------------------------------------------------------
    # Fault injection for crash tests: the jobs process SIGKILLs itself at this point (e.g.
    # wallets.after_sign); refused at start-up when APP_ENV is staging or production.
    nespay_fault: str | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        with_files = getattr(dotenv_settings, "env_file", None) is not None
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            file_secret_settings,
            DevStackSource(settings_cls, with_files),
        )

    # ---------------------------------------------------------------------------------------
    @field_validator(
        "enable_cors_urls",
        "rates_sources",
        "callback_retry_schedule_s",
        "webhook_retry_schedule_s",
        "stablecoin_pegs",
        "redis_cluster_nodes",
        "redis_sentinel_nodes",
        "trusted_proxies",
        "webhook_allowed_ips",
        "webhook_rain_allowed_ips",
        mode="before",
    )
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("callback_retry_schedule_s", "webhook_retry_schedule_s")
    @classmethod
    def _schedule(cls, value: list[str]) -> list[str]:
        if not value or not all(v.isdigit() and 1 <= int(v) <= 21600 for v in value):
            raise ValueError("expected whole seconds between 1 and 21600, e.g. 5,30,120,600")
        return value

    @property
    def callback_retry_delays(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.callback_retry_schedule_s)

    @property
    def webhook_retry_delays(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.webhook_retry_schedule_s)

    @field_validator("public_api_prefix", "internal_api_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip().strip("/")
        if not re.fullmatch(r"[A-Za-z0-9_\-./]+", value):
            raise ValueError("expected a URL path such as api/v1")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr) -> SecretStr:
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in {
            "postgres",
            "postgresql",
            "postgresql+asyncpg",
        } or not parts.path.strip("/"):
            raise ValueError(
                "expected postgresql://user:password@host:port/database[?schema=public]"
            )
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValueError(
                "expected postgresql://user:password@host:port/database[?schema=public]"
            ) from None
        schema = parse_qs(parts.query).get("schema", ["public"])[0]
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", schema):
            raise ValueError("expected the schema parameter to be a plain identifier")
        return value

    @field_validator("rabbitmq_url")
    @classmethod
    def _rabbitmq_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and urlsplit(value.get_secret_value()).scheme not in {"amqp", "amqps"}:
            raise ValueError("expected amqp://user:password@host:5672[/vhost]")
        return value

    @field_validator("encryption_master_key", "encryption_master_key_previous")
    @classmethod
    def _master_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"[0-9a-fA-F]{128}", value.get_secret_value()):
            raise ValueError(
                "expected 128 hex characters (64 bytes); generate with `nespay keys generate`"
            )
        return value

    @field_validator("redis_cluster_nodes", "redis_sentinel_nodes")
    @classmethod
    def _nodes(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                parse_host_port(item)
            except ValueError:
                raise ValueError("expected host:port,host:port") from None
        return value

    @field_validator("redis_cluster_nat_map", "redis_sentinel_nat_map")
    @classmethod
    def _nat_map(cls, value: str) -> str:
        parse_nat_map(value)
        return value

    @field_validator("trusted_proxies", "webhook_allowed_ips", "webhook_rain_allowed_ips")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError("expected IP addresses or CIDRs separated by commas") from None
        return value

    @field_validator("hd_wallet_xpub", "tron_hd_wallet_xpub")
    @classmethod
    def _xpub(cls, value: str | None) -> str | None:
        # Only public keys belong on the API host; a private extended key is refused outright.
        if not value:
            return None  # `HD_WALLET_XPUB=` in an env file: unset
        if not re.fullmatch(r"[xt]pub[1-9A-HJ-NP-Za-km-z]{100,112}", value):
            raise ValueError("expected an extended public key (xpub…/tpub…), never a private one")
        # Parsed here, in every environment, so a typo stops the process at start-up instead
        # of failing the first invoice. Imported late: the wallets package imports this one.
        from nespay.wallets.hd import InvalidXpub, external_chain_key

        try:
            external_chain_key(value)
        except InvalidXpub as error:
            raise ValueError(
                f"expected the account's extended public key; this one {error}"
            ) from None
        return value

    @field_validator("rates_sources")
    @classmethod
    def _sources(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - {"admin", "coingecko"})
        if unknown or not value:
            raise ValueError("expected a comma list of admin, coingecko")
        return value

    @field_validator("stablecoin_pegs")
    @classmethod
    def _pegs(cls, value: list[str]) -> list[str]:
        for item in value:
            if not re.fullmatch(r"[A-Z0-9]{2,16}=[A-Z]{3}:\d+(\.\d+)?", item):
                raise ValueError("expected CODE=FIAT:value pairs, e.g. USDT=USD:1")
        return value

    @field_validator("rate_limit_ip", "rate_limit_key")
    @classmethod
    def _rate_limits(cls, value: str) -> str:
        parse_rate_limits(value)
        return value

    @field_validator(
        "consolidation_job_schedule",
        "rpc_health_job_schedule",
        "rates_job_schedule",
        "invoice_expiry_job_schedule",
        "wallet_send_job_schedule",
        "reconciliation_job_schedule",
        "ledger_invariants_job_schedule",
    )
    @classmethod
    def _cron(cls, value: str) -> str:
        return validate_cron(value)

    @field_validator("smtp_url")
    @classmethod
    def _smtp(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and urlsplit(value.get_secret_value()).scheme not in {"smtp", "smtps"}:
            raise ValueError("expected smtp://user:password@host:port")
        return value

    @model_validator(mode="after")
    def _swagger_default(self) -> Settings:
        # A newcomer on `nespay dev` gets the API's docs at /api; a deployment shows them
        # only when it says so.
        if "swagger_enable" not in self.model_fields_set:
            self.swagger_enable = self.app_env == "development"
        return self

    @model_validator(mode="after")
    def _production_guards(self) -> Settings:
        if self.redis_cluster_enabled and not self.redis_cluster_nodes and self.redis_enabled:
            raise ValueError(
                "REDIS_CLUSTER_NODES: expected host:port,… when REDIS_CLUSTER_ENABLED=true"
            )
        if self.redis_sentinel_enabled and not self.redis_sentinel_nodes and self.redis_enabled:
            raise ValueError(
                "REDIS_SENTINEL_NODES: expected host:port,… when REDIS_SENTINEL_ENABLED=true"
            )
        if not self.is_development:
            for name in self.secret_fields():
                secret = getattr(self, name)
                if secret is not None and self._is_example(secret.get_secret_value()):
                    raise ValueError(
                        f"{name.upper()}: an example or default secret is refused when "
                        f"APP_ENV={self.app_env}; set a real one"
                    )
        if self.aws_ses_from_email and self.smtp_url is None and self.region is None:
            raise ValueError(
                "AWS_REGION: required to send email through SES (AWS_SES_FROM_EMAIL is set)"
            )
        if self.app_env == "production" and self.rabbitmq_url is None:
            raise ValueError(
                "RABBITMQ_URL: required when APP_ENV=production (callbacks go through it)"
            )
        if not self.is_development and self.nespay_fault:
            raise ValueError(
                f"NESPAY_FAULT: refused when APP_ENV={self.app_env} (it makes processes kill "
                "themselves on purpose); it is for crash tests"
            )
        if not self.is_development:
            for name, on in (
                ("WEBHOOK_ENABLE_IP_VALIDATION", self.webhook_enable_ip_validation),
                ("WEBHOOK_ENABLE_SIGNATURE_VALIDATION", self.webhook_enable_signature_validation),
            ):
                if not on:
                    raise ValueError(
                        f"{name}: refused as false when APP_ENV={self.app_env} (anyone could "
                        "post provider webhooks); it is for development and tests"
                    )
        if not self.is_development and self.callback_allow_private_urls:
            raise ValueError(
                f"CALLBACK_ALLOW_PRIVATE_URLS: refused when APP_ENV={self.app_env} (callbacks "
                "could reach loopback, private networks and metadata services); it is for "
                "development and tests"
            )
        return self

    @model_validator(mode="after")
    def _intrajasa_guards(self) -> Settings:
        """Half a configuration is refused everywhere; production refuses the sandbox, and
        Intrajasa without the callback token (paid VAs whose callbacks would be refused)."""
        url = urlsplit(self.intrajasa_base_url)
        if url.scheme not in {"http", "https"} or not url.hostname:
            raise ValueError("INTRAJASA_BASE_URL: expected an http(s):// URL")
        merchant, secret = self.intrajasa_merchant_id, self.intrajasa_secret_word
        if bool(merchant) != bool(secret and secret.get_secret_value()):
            raise ValueError(
                "INTRAJASA_MERCHANT_ID, INTRAJASA_SECRET_WORD: set both (Intrajasa on) or "
                "neither (off)"
            )
        if not self.intrajasa_enabled or self.app_env != "production":
            return self
        if url.scheme != "https" or url.hostname == urlsplit(INTRAJASA_SANDBOX_URL).hostname:
            raise ValueError(
                f"INTRAJASA_BASE_URL: the sandbox (or a non-https URL) is refused when "
                f"APP_ENV=production; use {INTRAJASA_PRODUCTION_URL}"
            )
        if self.webhook_intrajasa_token is None:
            raise ValueError(
                "WEBHOOK_INTRAJASA_TOKEN: required when APP_ENV=production and Intrajasa is "
                "on (its payment callbacks would be refused)"
            )
        return self

    @model_validator(mode="after")
    def _wallet_guards(self) -> Settings:
        """Outside development the wallet provider must be able to issue addresses, and never
        from the public test mnemonic: refused at start-up, not at the first invoice."""
        if self.is_development:
            return self
        problem = self._privy_problem() if self.wallet_provider == "privy" else self._hd_problem()
        if problem is None:
            problem = self._dev_xpub_problem()
        if problem is not None:
            raise ValueError(problem)
        return self

    def _hd_problem(self) -> str | None:
        if self.hd_wallet_xpub:
            return None
        return (
            f"HD_WALLET_XPUB: required when APP_ENV={self.app_env} and WALLET_PROVIDER=hd "
            "(the EVM account's extended public key, m/44'/60'/0')"
        )

    def _privy_problem(self) -> str | None:
        missing = [
            name
            for name, value in (
                ("PRIVY_APP_ID", self.privy_app_id),
                (
                    "PRIVY_APP_SECRET",
                    self.privy_app_secret and self.privy_app_secret.get_secret_value(),
                ),
                ("PRIVY_API", self.privy_api),
            )
            if not value
        ]
        if missing:
            return (
                f"{', '.join(missing)}: required when APP_ENV={self.app_env} and "
                "WALLET_PROVIDER=privy"
            )
        api = urlsplit(self.privy_api)
        if api.scheme != "https" or not api.hostname:
            return (
                f"PRIVY_API: expected an https:// URL when APP_ENV={self.app_env} "
                "(the app secret is sent to it)"
            )
        return None

    def _dev_xpub_problem(self) -> str | None:
        if not (self.hd_wallet_xpub or self.tron_hd_wallet_xpub):
            return None
        from nespay.wallets.hd import DEV_EVM_XPUB, DEV_TRON_XPUB

        for name, value, dev in (
            ("HD_WALLET_XPUB", self.hd_wallet_xpub, DEV_EVM_XPUB),
            ("TRON_HD_WALLET_XPUB", self.tron_hd_wallet_xpub, DEV_TRON_XPUB),
        ):
            if value == dev:
                return (
                    f"{name}: the development key (from the public test mnemonic: anyone can "
                    f"spend what is paid to its addresses) is refused when APP_ENV={self.app_env}"
                )
        return None

    # ---------------------------------------------------------------------------------------
    @classmethod
    def secret_fields(cls) -> list[str]:
        return [
            name
            for name, field in cls.model_fields.items()
            if field.annotation in (SecretStr, SecretStr | None) and name != "database_url"
        ] + ["database_url"]

    @staticmethod
    def _is_example(value: str) -> bool:
        lowered = value.lower()
        if lowered in EXAMPLE_SECRETS or value == DEV_MASTER_KEY:
            return True
        if lowered.startswith(("postgres", "amqp", "smtp")):
            password = urlsplit(value).password
            return password is not None and password.lower() in EXAMPLE_SECRETS
        return False

    @property
    def intrajasa_enabled(self) -> bool:
        return bool(self.intrajasa_merchant_id and self.intrajasa_secret_word)

    @property
    def is_development(self) -> bool:
        return self.app_env in {"development", "test"}

    @property
    def redis_cluster_nat(self) -> dict[tuple[str, int], tuple[str, int]]:
        return parse_nat_map(self.redis_cluster_nat_map)

    @property
    def redis_sentinel_nat(self) -> dict[tuple[str, int], tuple[str, int]]:
        return parse_nat_map(self.redis_sentinel_nat_map)

    @property
    def database_schema(self) -> str:
        query = urlsplit(self.database_url.get_secret_value()).query
        return parse_qs(query).get("schema", ["public"])[0]

    @property
    def region(self) -> str | None:
        if self.aws_region:
            return self.aws_region
        pool = self.cognito_user_pool_id or self.cognito_admin_pool_id
        return pool.split("_", 1)[0] if pool and "_" in pool else None


class ConfigError(SystemExit):
    """Raised with the lines to print; exits non-zero without a traceback."""


def describe_errors(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors(include_input=False, include_url=False):
        loc = [str(part) for part in item.get("loc", ()) if part != "__root__"]
        message = str(item.get("msg", "invalid value")).removeprefix("Value error, ")
        if loc:
            field = Settings.model_fields.get(loc[0])
            alias = field.validation_alias if field else None
            name = alias.choices[0] if isinstance(alias, AliasChoices) else loc[0].upper()
            lines.append(f"config error: {name}: {message}")
        else:
            lines.append(f"config error: {message}")
    return lines


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as error:
        for line in describe_errors(error):
            print(line, file=sys.stderr)
        raise ConfigError(2) from None
    except DevStackStopped as error:
        print(f"config error: DATABASE_URL: {error}", file=sys.stderr)
        raise ConfigError(2) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
