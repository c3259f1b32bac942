"""Settings: the production secret guard and the forgiving CORS_ORIGINS parser."""

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from fasttrack.core.config import DEV_SECRET_KEY, Environment, Settings

STRONG_SECRET = "k" * 32


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings read the process environment and ./.env: start every test from neither."""
    for name in ("ENVIRONMENT", "SECRET_KEY", "CORS_ORIGINS", "LOG_LEVEL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    "secret",
    [None, DEV_SECRET_KEY, "k" * 31],
    ids=["unset", "the development default", "31 characters"],
)
def test_production_refuses_a_weak_secret_key(
    monkeypatch: pytest.MonkeyPatch, secret: str | None
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    if secret is not None:
        monkeypatch.setenv("SECRET_KEY", secret)
    with pytest.raises(ValidationError, match="SECRET_KEY must be set"):
        Settings(_env_file=None)


def test_production_accepts_a_strong_secret_key() -> None:
    settings = Settings(
        _env_file=None, environment=Environment.production, secret_key=SecretStr(STRONG_SECRET)
    )
    assert settings.secret_key.get_secret_value() == STRONG_SECRET


def test_the_secret_is_read_from_a_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"ENVIRONMENT=production\nSECRET_KEY={STRONG_SECRET}\n")
    settings = Settings()
    assert settings.environment is Environment.production
    assert settings.secret_key.get_secret_value() == STRONG_SECRET


@pytest.mark.parametrize("environment", [Environment.development, Environment.test])
def test_other_environments_allow_the_development_secret(environment: Environment) -> None:
    settings = Settings(_env_file=None, environment=environment)
    assert settings.secret_key.get_secret_value() == DEV_SECRET_KEY


def test_the_secret_never_shows_in_the_settings_repr() -> None:
    settings = Settings(_env_file=None, secret_key=SecretStr(STRONG_SECRET))
    assert STRONG_SECRET not in repr(settings)


@pytest.mark.parametrize(
    ("raw", "origins"),
    [
        ('["https://a.example", "https://b.example"]', ["https://a.example", "https://b.example"]),
        ("https://a.example,https://b.example", ["https://a.example", "https://b.example"]),
        (" https://a.example , ,https://b.example, ", ["https://a.example", "https://b.example"]),
        ("https://a.example", ["https://a.example"]),
        ("", []),
        ("[]", []),
    ],
    ids=["JSON list", "comma list", "comma list with blanks", "one origin", "empty", "empty JSON"],
)
def test_cors_origins_parse_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, raw: str, origins: list[str]
) -> None:
    monkeypatch.setenv("CORS_ORIGINS", raw)
    assert Settings(_env_file=None).cors_origins == origins


def test_cors_origins_accept_a_list() -> None:
    settings = Settings(_env_file=None, cors_origins=["https://a.example"])
    assert settings.cors_origins == ["https://a.example"]


def test_malformed_json_cors_origins_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", '["https://a.example"')
    with pytest.raises(ValidationError, match="cors_origins"):
        Settings(_env_file=None)


def test_the_log_level_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "debug")
    assert Settings(_env_file=None).log_level == "DEBUG"


@pytest.mark.parametrize(
    ("url", "is_sqlite"),
    [
        ("sqlite+aiosqlite:///./fasttrack.db", True),
        ("postgresql+asyncpg://postgres@127.0.0.1/fasttrack", False),
    ],
)
def test_the_database_kind_follows_the_url(url: str, is_sqlite: bool) -> None:
    assert Settings(_env_file=None, database_url=url).is_sqlite is is_sqlite


def test_settings_are_immutable() -> None:
    settings = Settings(_env_file=None)
    with pytest.raises(ValidationError):
        settings.secret_key = SecretStr(STRONG_SECRET)  # type: ignore[misc]
