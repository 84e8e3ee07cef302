"""Settings, read once from the environment and `.env` (every one is listed in `.env.example`)."""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from storage.apply import IngestConfig
from storage.schemas import known_currencies

DEFAULT_DATABASE_URL = "sqlite:///data/kpibot.db"


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class Settings(BaseSettings):
    """kpibot's configuration; lower layers get only the parts they need (see `ingest_config`)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

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

    @property
    def ingest_config(self) -> IngestConfig:
        """What the ingestion service needs to know."""
        return IngestConfig(reporting_currency=self.currency, timezone=self.timezone)


def load_settings() -> Settings:
    """Read the settings from the environment and `.env`."""
    return Settings()
