"""Settings, read once from the environment and `.env` (every one is listed in `.env.example`)."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import fields
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from metrics.context import HealthWeights, MetricConfig
from metrics.periods import FiscalCalendar
from storage.apply import IngestConfig
from storage.schemas import known_currencies
from storage.sources.typeform import parse_scale

if TYPE_CHECKING:
    from bot.ingest_queue import GroupLimits

DEFAULT_DATABASE_URL = "sqlite:///data/kpibot.db"
# Each webhook route (source) and the setting holding its secrets, a comma-separated list
# (`split_secrets`), in the order `kpibot serve` lists the routes that are on.
WEBHOOK_SECRETS = {
    "kpibot": "webhook_secret",
    "stripe": "stripe_webhook_secret",
    "delighted": "delighted_api_key",
    "typeform": "typeform_webhook_secret",
    "zendesk": "zendesk_webhook_secret",
    "segment": "segment_webhook_secret",
}


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class Settings(BaseSettings):
    """kpibot's configuration; lower layers get only the parts they need (see `ingest_config`)."""

    # A refused value is never repeated in the error: it may be a secret.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    database_url: str = Field(DEFAULT_DATABASE_URL, validation_alias=_env("DATABASE_URL"))
    timezone: str = Field("UTC", validation_alias=_env("KPIBOT_TIMEZONE"))
    currency: str = Field("USD", validation_alias=_env("KPIBOT_CURRENCY"))
    fiscal_year_start_month: int = Field(
        1, ge=1, le=12, validation_alias=_env("KPIBOT_FISCAL_YEAR_START_MONTH")
    )
    locale: Literal["en", "fr"] = Field("en", validation_alias=_env("KPIBOT_LOCALE"))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias=_env("KPIBOT_LOG_LEVEL")
    )
    churn_convention: Literal["seed", "chartmogul", "stripe"] = Field(
        "seed", validation_alias=_env("KPIBOT_CHURN_CONVENTION")
    )
    customer_lifetime_years: Decimal | None = Field(
        None, gt=0, le=100, validation_alias=_env("KPIBOT_CUSTOMER_LIFETIME_YEARS")
    )
    health_weights: str = Field(
        "usage=0.35,nps=0.25,mrr_trend=0.25,csat=0.15",
        validation_alias=_env("KPIBOT_HEALTH_WEIGHTS"),
    )

    webhook_secret: SecretStr | None = Field(None, validation_alias=_env("KPIBOT_WEBHOOK_SECRET"))
    stripe_webhook_secret: SecretStr | None = Field(
        None, validation_alias=_env("STRIPE_WEBHOOK_SECRET")
    )
    stripe_api_key: SecretStr | None = Field(None, validation_alias=_env("STRIPE_API_KEY"))
    stripe_api_url: str = Field("https://api.stripe.com", validation_alias=_env("STRIPE_API_URL"))
    delighted_api_key: SecretStr | None = Field(None, validation_alias=_env("DELIGHTED_API_KEY"))
    typeform_webhook_secret: SecretStr | None = Field(
        None, validation_alias=_env("TYPEFORM_WEBHOOK_SECRET")
    )
    zendesk_webhook_secret: SecretStr | None = Field(
        None, validation_alias=_env("ZENDESK_WEBHOOK_SECRET")
    )
    segment_webhook_secret: SecretStr | None = Field(
        None, validation_alias=_env("SEGMENT_WEBHOOK_SECRET")
    )
    typeform_score_ref: str = Field("score", validation_alias=_env("KPIBOT_TYPEFORM_SCORE_REF"))
    typeform_email_ref: str = Field("email", validation_alias=_env("KPIBOT_TYPEFORM_EMAIL_REF"))
    typeform_account_ref: str = Field(
        "account_id", validation_alias=_env("KPIBOT_TYPEFORM_ACCOUNT_REF")
    )
    typeform_kind: Literal["nps", "csat"] = Field(
        "nps", validation_alias=_env("KPIBOT_TYPEFORM_KIND")
    )
    # A CSAT question's scale ("1-5"), for the payloads that do not carry it (see typeform.py).
    typeform_csat_scale: str | None = Field(
        None, validation_alias=_env("KPIBOT_TYPEFORM_CSAT_SCALE")
    )
    # Delighted's CSAT scale: 5-point (Delighted's default) or 3-point; its payload does not say.
    delighted_csat_scale: Literal["1-5", "1-3"] = Field(
        "1-5", validation_alias=_env("KPIBOT_DELIGHTED_CSAT_SCALE")
    )
    webhook_group_window_ms: float = Field(
        10.0, ge=0, le=1_000, validation_alias=_env("KPIBOT_WEBHOOK_GROUP_WINDOW_MS")
    )
    webhook_group_max_events: int = Field(
        10_000, ge=1, le=100_000, validation_alias=_env("KPIBOT_WEBHOOK_GROUP_MAX_EVENTS")
    )

    slack_bot_token: SecretStr | None = Field(None, validation_alias=_env("SLACK_BOT_TOKEN"))
    slack_signing_secret: SecretStr | None = Field(
        None, validation_alias=_env("SLACK_SIGNING_SECRET")
    )
    slack_app_token: SecretStr | None = Field(None, validation_alias=_env("SLACK_APP_TOKEN"))
    slack_api_url: str = Field("https://slack.com/api/", validation_alias=_env("SLACK_API_URL"))
    alert_fallback_channel: str | None = Field(
        None, validation_alias=_env("KPIBOT_ALERT_FALLBACK_CHANNEL")
    )
    allowed_users: str = Field("", validation_alias=_env("KPIBOT_ALLOWED_USERS"))
    admins: str = Field("", validation_alias=_env("KPIBOT_ADMINS"))

    @field_validator(
        "webhook_secret",
        "stripe_webhook_secret",
        "stripe_api_key",
        "delighted_api_key",
        "typeform_webhook_secret",
        "zendesk_webhook_secret",
        "segment_webhook_secret",
        "slack_bot_token",
        "slack_signing_secret",
        "slack_app_token",
        mode="before",
    )
    @classmethod
    def _empty_secret_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator(*WEBHOOK_SECRETS.values(), mode="before")
    @classmethod
    def _no_listed_secret_is_unset(cls, value: object) -> object:
        """A webhook secret setting that lists no secret (blanks, commas) is unset: its route
        answers 404, and `kpibot serve` does not list it, rather than seem on and refuse all."""
        return None if isinstance(value, str) and not split_secrets(value) else value

    @field_validator("webhook_secret")
    @classmethod
    def _standard_webhooks_secret(cls, value: SecretStr | None) -> SecretStr | None:
        """Standard Webhooks' secret: `whsec_` and the base64 of 24 to 64 random bytes. Checked
        here, at start-up: a secret the senders cannot sign with would refuse every delivery."""
        if value is None:
            return None
        for secret in split_secrets(value.get_secret_value()):  # each, while one is rotated
            encoded = secret.removeprefix("whsec_")
            try:
                key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
            except binascii.Error:
                key = b""
            if not 24 <= len(key) <= 64:
                raise ValueError(
                    "must be whsec_ followed by the base64 of 24 to 64 random bytes (make one "
                    "with python -c \"import base64,os; print('whsec_'+base64.b64encode("
                    'os.urandom(24)).decode())"); several, while one is rotated, separated by '
                    "commas"
                )
        return value

    @field_validator("customer_lifetime_years", "alert_fallback_channel", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("typeform_csat_scale", mode="before")
    @classmethod
    def _scale(cls, value: object) -> object:
        if value in ("", None):
            return None
        if not isinstance(value, str) or parse_scale(value) is None:
            raise ValueError(
                f"{value!r} is not a scale: give its lowest and highest score, e.g. 1-5 or 0-10"
            )
        return value.strip()

    @field_validator("health_weights")
    @classmethod
    def _weights(cls, value: str) -> str:
        parse_health_weights(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. Europe/Paris)") from None
        return value

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        value = value.upper()
        if value not in known_currencies():
            raise ValueError(f"unknown currency {value!r} (an ISO 4217 code such as USD)")
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"SLACK_API_URL must be an http(s) URL, not {value[:60]!r}")
        return value if value.endswith("/") else value + "/"

    @field_validator("allowed_users", "admins")
    @classmethod
    def _user_list(cls, value: str) -> str:
        parse_user_list(value)
        return value

    @model_validator(mode="after")
    def _whole_slack_configuration(self) -> Settings:
        # A token alone would neither receive commands nor be offline: say what is missing.
        if self.slack_bot_token is not None and not (
            self.slack_signing_secret or self.slack_app_token
        ):
            raise ValueError(
                "SLACK_BOT_TOKEN is set but Slack cannot reach kpibot: set SLACK_SIGNING_SECRET "
                "(requests to POST /slack/events) or SLACK_APP_TOKEN (Socket Mode)"
            )
        if self.slack_bot_token is None and (self.slack_signing_secret or self.slack_app_token):
            raise ValueError(
                "SLACK_SIGNING_SECRET or SLACK_APP_TOKEN is set without SLACK_BOT_TOKEN: set the "
                "bot token too, or unset them to run offline"
            )
        return self

    @property
    def slack_mode(self) -> Literal["socket", "http", "offline"]:
        """How kpibot talks to Slack: Socket Mode, HTTP (`/slack/events`), or not at all."""
        if self.slack_bot_token is None:
            return "offline"
        return "socket" if self.slack_app_token is not None else "http"

    def source_secrets(self, source: str) -> tuple[str, ...]:
        """The secrets a webhook source's deliveries may be signed with: its setting's
        comma-separated values (several while a secret is rotated, or one per Delighted
        project); none when unset, and its route answers 404."""
        setting = WEBHOOK_SECRETS.get(source)
        secret: SecretStr | None = getattr(self, setting) if setting else None
        return split_secrets(secret.get_secret_value()) if secret else ()

    def source_options(self, source: str) -> dict[str, str]:
        """A webhook source's own settings (which Typeform fields hold the score and email,
        Delighted's CSAT scale, Segment's time zone)."""
        if source == "typeform":
            return {
                "score_ref": self.typeform_score_ref,
                "email_ref": self.typeform_email_ref,
                "account_ref": self.typeform_account_ref,
                "kind": self.typeform_kind,
                "csat_scale": self.typeform_csat_scale or "",
            }
        if source == "delighted":
            return {"csat_scale": self.delighted_csat_scale}
        if source == "segment":
            return {"timezone": self.timezone}
        return {}

    @property
    def metric_config(self) -> MetricConfig:
        """The conventions the metrics are computed with."""
        return MetricConfig(
            currency=self.currency,
            timezone=self.timezone,
            fiscal=FiscalCalendar(self.fiscal_year_start_month),
            churn_convention=self.churn_convention,
            customer_lifetime_years=self.customer_lifetime_years,
            health_weights=parse_health_weights(self.health_weights),
        )

    @property
    def ingest_config(self) -> IngestConfig:
        """What the ingestion service needs to know."""
        return IngestConfig(reporting_currency=self.currency, timezone=self.timezone)

    @property
    def group_limits(self) -> GroupLimits:
        """How concurrent webhook deliveries are gathered into one transaction."""
        from bot.ingest_queue import GroupLimits

        return GroupLimits(
            window_seconds=self.webhook_group_window_ms / 1000,
            max_events=self.webhook_group_max_events,
        )


def parse_health_weights(text: str) -> HealthWeights:
    """Parse 'usage=0.35,nps=0.25,mrr_trend=0.25,csat=0.15' (any subset; others keep defaults)."""
    weights: dict[str, Decimal] = {}
    known = {f.name for f in fields(HealthWeights)}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, number = part.partition("=")
        name = name.strip().replace("-", "_")
        if name not in known:
            raise ValueError(f"unknown health signal {name!r} (use {', '.join(sorted(known))})")
        try:
            weight = Decimal(number.strip())
        except InvalidOperation:
            raise ValueError(f"the weight of {name} is not a number: {number!r}") from None
        if not weight.is_finite() or weight < 0:
            raise ValueError(f"the weight of {name} must be a number of at least 0")
        weights[name] = weight
    return HealthWeights(**weights)


def parse_user_list(text: str) -> frozenset[str]:
    """Parse 'U012AB3CD, ana@example.com': Slack user ids (upper case) and emails (lower case)."""
    users: set[str] = set()
    for item in filter(None, (part.strip() for part in text.replace(";", ",").split(","))):
        if re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", item):
            users.add(item.lower())
        elif re.fullmatch(r"[UW][A-Z0-9]{2,}", item.upper()):
            users.add(item.upper())
        else:
            raise ValueError(f"{item[:60]!r} is neither a Slack user id (U…) nor an email")
    return frozenset(users)


def split_secrets(text: str) -> tuple[str, ...]:
    """A secret setting's secrets: its comma-separated values, stripped, empty ones dropped
    (a secret itself cannot hold a comma: the documented generators make none)."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def load_settings() -> Settings:
    """Read the settings from the environment and `.env`."""
    return Settings()
