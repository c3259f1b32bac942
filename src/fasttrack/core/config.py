"""Settings read from environment variables and `.env`, validated once at start-up."""

import json
from enum import StrEnum
from typing import Annotated, Final, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_SECRET_KEY: Final = "dev-secret-key-change-me-in-production"  # noqa: S105
MIN_PRODUCTION_SECRET_LENGTH: Final = 32


class Environment(StrEnum):
    development = "development"
    production = "production"
    test = "test"


class LogFormat(StrEnum):
    json = "json"
    console = "console"


class Settings(BaseSettings):
    """Every knob of the service; each field maps to the upper-case env var of the same name."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    environment: Environment = Environment.development
    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    database_url: str = "sqlite+aiosqlite:///./fasttrack.db"
    database_pool_size: int = Field(default=10, ge=1)
    database_max_overflow: int = Field(default=20, ge=0)
    database_timeout: float = Field(default=2.0, gt=0)
    redis_url: str | None = None
    # Processes serving this database (`fasttrack serve --workers N` sets it). Several
    # without REDIS_URL cannot tell each other about changes, so caching is then off.
    workers: int = Field(default=1, ge=1)
    # Seconds an entry of the exact caches lives at most (core.cache): how long a change
    # that reaches no broker event (made by hand, or by a process cut off from Redis)
    # can go unseen. 0 turns the caches off.
    cache_ttl: float = Field(default=5.0, ge=0)

    access_token_expire_minutes: int = Field(default=15, ge=1)
    refresh_token_expire_days: int = Field(default=7, ge=1)
    jwt_algorithm: str = "HS256"
    jwt_issuer: str = "fasttrack"
    jwt_audience: str = "fasttrack-api"
    bcrypt_rounds: int = Field(default=12, ge=4, le=31)
    password_hash_workers: int = Field(default=2, ge=1)

    cors_origins: Annotated[list[str], NoDecode] = []

    rate_limit_enabled: bool = True
    rate_limit_requests: int = Field(default=100, ge=1)
    rate_limit_window: int = Field(default=60, ge=1)
    auth_rate_limit_requests: int = Field(default=10, ge=1)

    ws_heartbeat_interval: float = Field(default=30, gt=0)
    ws_heartbeat_timeout: float = Field(default=10, gt=0)

    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.json

    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "fasttrack@localhost"
    smtp_starttls: bool = True

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        # Accept both a JSON list and the friendlier "https://a,https://b".
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [origin.strip() for origin in text.split(",") if origin.strip()]
        return value

    @field_validator("log_level")
    @classmethod
    def _upper_log_level(cls, value: str) -> str:
        return value.upper()

    @model_validator(mode="after")
    def _refuse_weak_secret_in_production(self) -> Self:
        if self.environment is Environment.production:
            secret = self.secret_key.get_secret_value()
            if secret == DEV_SECRET_KEY or len(secret) < MIN_PRODUCTION_SECRET_LENGTH:
                raise ValueError(
                    "SECRET_KEY must be set to a random value of at least "
                    f"{MIN_PRODUCTION_SECRET_LENGTH} characters when ENVIRONMENT=production "
                    "(generate one with: python -c "
                    "'import secrets; print(secrets.token_urlsafe(48))')"
                )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
