"""The `fasttrack` command line, run in-process against a SQLite file of its own."""

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import typer
import uvicorn
from typer.testing import CliRunner, Result

from fasttrack.cli import app
from fasttrack.core.config import Settings
from fasttrack.core.migrations import upgrade_to_head

PASSWORD = "correct horse battery"
runner = CliRunner()

pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.fixture
def database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The SQLite file the CLI works on; the environment holds only what the test sets."""
    for name in ("ENVIRONMENT", "SECRET_KEY", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    path = tmp_path / "cli.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    monkeypatch.setenv("BCRYPT_ROUNDS", "4")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    return path


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated database, copied for each test: migrating every time is slow."""
    path = tmp_path_factory.mktemp("cli") / "template.db"
    upgrade_to_head(Settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture
def migrated(database: Path, migrated_template: Path) -> Path:
    shutil.copyfile(migrated_template, database)
    return database


def invoke(*args: str, stdin: str | None = None) -> Result:
    return runner.invoke(app, list(args), input=stdin)


def rows(database: Path, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database) as connection:
        return connection.execute(query, params).fetchall()


def account(database: Path, email: str) -> tuple[str, bool, str, str]:
    (row,) = rows(
        database,
        'SELECT role, is_active, display_name, hashed_password FROM "user" WHERE email = ?',
        email,
    )
    return row[0], bool(row[1]), row[2], row[3]


def password_matches(hashed: str, password: str) -> bool:
    return bcrypt.checkpw(password.encode(), hashed.encode())


def test_migrate_creates_the_schema(database: Path) -> None:
    result = invoke("migrate")

    assert result.exit_code == 0, result.output
    assert "Database is up to date." in result.stdout
    tables = {name for (name,) in rows(database, "SELECT name FROM sqlite_master")}
    assert {"user", "auth_session", "revoked_token", "alembic_version"} <= tables
    # Migrating again is a no-op.
    assert invoke("migrate").exit_code == 0


def test_create_admin_creates_an_account(migrated: Path) -> None:
    result = invoke(
        "create-admin",
        "--email",
        "Root@Example.com",
        "--password",
        PASSWORD,
        "--display-name",
        "Root",
    )

    assert result.exit_code == 0, result.output
    assert "Created admin root@example.com." in result.stdout
    role, active, name, hashed = account(migrated, "root@example.com")
    assert (role, active, name) == ("admin", True, "Root")
    assert password_matches(hashed, PASSWORD)


def test_create_admin_promotes_and_reactivates_an_existing_account(migrated: Path) -> None:
    assert (
        invoke("create-admin", "--email", "ada@example.com", "--password", PASSWORD).exit_code == 0
    )
    with sqlite3.connect(migrated) as connection:
        connection.execute("UPDATE \"user\" SET role = 'user', is_active = 0")

    result = invoke("create-admin", "--email", "ADA@example.com")

    assert result.exit_code == 0, result.output
    assert "Promoted admin ada@example.com." in result.stdout
    assert "Password" not in result.output  # an existing account keeps its password
    role, active, name, hashed = account(migrated, "ada@example.com")
    assert (role, active, name) == ("admin", True, "ada")
    assert password_matches(hashed, PASSWORD)


def test_create_admin_may_reset_the_password_and_name_of_an_existing_account(
    migrated: Path,
) -> None:
    invoke("create-admin", "--email", "ada@example.com", "--password", PASSWORD)

    result = invoke(
        "create-admin",
        "--email",
        "ada@example.com",
        "--password",
        "a new password",
        "--display-name",
        "Countess",
    )

    assert result.exit_code == 0, result.output
    _, _, name, hashed = account(migrated, "ada@example.com")
    assert name == "Countess"
    assert password_matches(hashed, "a new password")


@pytest.mark.parametrize(
    ("options", "ended"),
    [([], False), (["--password", "a new password"], True)],
    ids=["promotion only", "new password"],
)
def test_create_admin_ends_the_sessions_of_an_account_whose_password_it_changes(
    migrated: Path, options: list[str], ended: bool
) -> None:
    invoke("create-admin", "--email", "ada@example.com", "--password", PASSWORD)
    with sqlite3.connect(migrated) as connection:
        connection.execute(
            "INSERT INTO auth_session (id, user_id, created_at, expires_at) "
            "SELECT 'live-sid', id, '2026-01-01 00:00:00', '2999-01-01 00:00:00' FROM \"user\""
        )

    result = invoke("create-admin", "--email", "ada@example.com", *options)

    assert result.exit_code == 0, result.output
    registered = rows(migrated, "SELECT id FROM auth_session")
    revoked = rows(migrated, "SELECT id FROM revoked_token")
    assert (registered, revoked) == (([], [("live-sid",)]) if ended else ([("live-sid",)], []))


def test_create_admin_prompts_for_a_missing_password(migrated: Path) -> None:
    # A confirmation that does not match is asked again.
    answers = ["typo", PASSWORD, PASSWORD, PASSWORD]
    result = invoke("create-admin", "--email", "ada@example.com", stdin="\n".join(answers) + "\n")

    assert result.exit_code == 0, result.output
    assert "Password:" in result.output
    assert "do not match" in result.output
    assert "Created admin ada@example.com." in result.stdout
    assert password_matches(account(migrated, "ada@example.com")[3], PASSWORD)


def test_create_admin_does_not_hold_the_database_while_prompting(
    migrated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Someone typing a password must not lock every writer of a running server out.
    def prompt(*_: Any, **__: Any) -> str:
        with sqlite3.connect(migrated, timeout=0) as other_writer:
            other_writer.execute("BEGIN IMMEDIATE")
            other_writer.rollback()
        return PASSWORD

    monkeypatch.setattr(typer, "prompt", prompt)

    result = invoke("create-admin", "--email", "ada@example.com")

    assert result.exit_code == 0, result.output
    assert account(migrated, "ada@example.com")[0] == "admin"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--password", "short"], "password: Value error, must be 8 to 72 bytes"),
        (["--password", "é" * 40], "password: Value error, must be 8 to 72 bytes"),
        (["--password", PASSWORD, "--display-name", "x" * 101], "display_name: String should"),
        (["--password", PASSWORD, "--display-name", "  "], "display_name: String should"),
    ],
    ids=["short password", "80-byte password", "long display name", "blank display name"],
)
@pytest.mark.parametrize("existing", [False, True], ids=["new account", "existing account"])
def test_create_admin_refuses_what_registration_refuses(
    migrated: Path, options: list[str], message: str, existing: bool
) -> None:
    if existing:
        invoke("create-admin", "--email", "ada@example.com", "--password", PASSWORD)

    result = invoke("create-admin", "--email", "ada@example.com", *options)

    assert result.exit_code == 2
    assert message in result.stderr
    if existing:
        role, _, name, hashed = account(migrated, "ada@example.com")
        assert (role, name) == ("admin", "ada")
        assert password_matches(hashed, PASSWORD)
    else:
        assert rows(migrated, 'SELECT id FROM "user"') == []


def test_create_admin_refuses_an_invalid_email(migrated: Path) -> None:
    result = invoke("create-admin", "--email", "not-an-email", "--password", PASSWORD)
    assert result.exit_code == 2
    assert "email: value is not a valid email address" in result.stderr


def test_openapi_writes_the_document(database: Path, tmp_path: Path) -> None:
    output = tmp_path / "openapi.json"

    result = invoke("openapi", "--output", str(output))

    assert result.exit_code == 0, result.output
    assert f"Wrote {output}" in result.stdout
    document = json.loads(output.read_text())
    assert document["info"]["title"] == "fasttrack"
    assert {"/api/v1/auth/login", "/api/v1/users/{user_id}", "/health"} <= set(document["paths"])


def test_openapi_prints_the_document(database: Path) -> None:
    result = invoke("openapi")
    assert result.exit_code == 0, result.output
    assert "/api/v1/auth/token" in json.loads(result.stdout)["paths"]


@pytest.mark.parametrize("secret", [None, "too-short"], ids=["unset", "short"])
def test_serve_refuses_a_weak_secret_in_production(
    database: Path, monkeypatch: pytest.MonkeyPatch, secret: str | None
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    if secret is not None:
        monkeypatch.setenv("SECRET_KEY", secret)
    started: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *_, **options: started.append(options))

    result = invoke("serve", "--no-migrate")

    assert result.exit_code == 2
    assert "Invalid configuration" in result.stderr
    assert "SECRET_KEY must be set" in result.stderr
    assert started == []


def _record_runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    runs: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **options: runs.append((target, options)))
    return runs


def test_serve_migrates_then_runs_the_app_factory(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _record_runs(monkeypatch)

    result = invoke("serve", "--host", "::1", "--port", "8123", "--workers", "3")

    assert result.exit_code == 0, result.output
    [(target, options)] = runs
    assert target == "fasttrack.main:create_app"
    assert options["factory"] is True
    assert (options["host"], options["port"], options["workers"]) == ("::1", 8123, 3)
    assert options["log_level"] == "warning"
    assert ("user",) in rows(database, "SELECT name FROM sqlite_master WHERE type = 'table'")


def test_serve_with_reload_uses_one_process_and_may_skip_migrations(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _record_runs(monkeypatch)

    result = invoke("serve", "--reload", "--workers", "4", "--no-migrate")

    assert result.exit_code == 0, result.output
    [(_, options)] = runs
    assert (options["reload"], options["workers"]) == (True, None)
    assert not database.exists()


def test_repair_counts_recounts_only_the_projects_that_drifted(migrated: Path) -> None:
    invoke("create-admin", "--email", "ada@example.com", "--password", PASSWORD)
    with sqlite3.connect(migrated) as connection:
        for name in ("drifted", "right"):
            connection.execute(
                "INSERT INTO project (name, status, owner_id, version, todo_count, "
                "in_progress_count, done_count, created_at, updated_at) "
                "VALUES (?, 'active', 1, 1, 0, 0, 0, '2026-12-03', '2026-12-03')",
                (name,),
            )
        for project_id, status in ((1, "done"), (1, "done"), (2, "todo")):
            connection.execute(
                "INSERT INTO task (project_id, title, status, priority, version, created_at, "
                "updated_at) VALUES (?, 't', ?, 'medium', 1, '2026-12-03', '2026-12-03')",
                (project_id, status),
            )
        # Drift, as a restore of the project table alone would leave it.
        connection.execute("UPDATE project SET done_count = 5 WHERE id = 1")

    result = invoke("repair-counts")

    assert result.exit_code == 0, result.output
    assert "Repaired the task counts of 1 projects: [1]" in result.stdout
    counts = "SELECT todo_count, in_progress_count, done_count FROM project ORDER BY id"
    assert rows(migrated, counts) == [(0, 0, 2), (1, 0, 0)]
    again = invoke("repair-counts")
    assert "Every project's task counts match its tasks." in again.stdout
