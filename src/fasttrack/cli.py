"""The `fasttrack` command line: serve, migrate, create-admin, repair-counts, seed-demo,
openapi."""

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from pydantic import ValidationError

from fasttrack.auth.tokens import TokenService
from fasttrack.core.cache import Caches
from fasttrack.core.config import Settings
from fasttrack.core.db import Database, create_database, idle
from fasttrack.core.freshness import create_freshness
from fasttrack.core.migrations import upgrade_to_head
from fasttrack.core.security import PasswordHasher
from fasttrack.notifications.broker import create_broker
from fasttrack.notifications.email import create_email_sender
from fasttrack.notifications.hub import Hub
from fasttrack.notifications.ws import MAX_FRAME_BYTES
from fasttrack.tasks import counts as task_counts
from fasttrack.users import service as user_service

app = typer.Typer(
    name="fasttrack",
    help="fasttrack: async REST + WebSocket API for team task tracking.",
    no_args_is_help=True,
    add_completion=False,
)


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[Database]:
    """The database, for a command whose changes running servers must hear of: what it
    changed goes stale in their caches, and the sessions it ends close their sockets."""
    database = create_database(settings)
    freshness = create_freshness(
        database_url=settings.database_url, redis_url=settings.redis_url, workers=1
    )
    hub = Hub(create_broker(settings.redis_url), caches=Caches(freshness))
    database.publisher = hub
    try:
        yield database
    finally:
        await hub.stop()
        await database.dispose()


def load_settings() -> Settings:
    """Settings from the environment, or a readable message and exit status 2."""
    try:
        return Settings()
    except ValidationError as exc:
        typer.secho("Invalid configuration:", fg=typer.colors.RED, err=True)
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "settings"
            typer.secho(f"  {where}: {error['msg']}", err=True)
        raise typer.Exit(code=2) from exc


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
    migrate: Annotated[
        bool, typer.Option("--migrate/--no-migrate", help="Apply migrations before serving.")
    ] = True,
    proxy_headers: Annotated[
        bool, typer.Option(help="Trust X-Forwarded-* from --forwarded-allow-ips.")
    ] = False,
    forwarded_allow_ips: Annotated[
        str | None, typer.Option(help="Proxies allowed to set X-Forwarded-*.")
    ] = None,
) -> None:
    """Serve the API with uvicorn (uvloop + httptools)."""
    # Every worker reads it: without Redis, processes that cannot tell each other about
    # changes must not cache (see core.cache).
    os.environ["WORKERS"] = str(workers)
    settings = load_settings()
    if migrate:
        upgrade_to_head(settings)
    uvicorn.run(
        "fasttrack.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=None if reload else workers,
        reload=reload,
        access_log=False,
        # Frames above the protocol's limit are refused by uvicorn already (close 1009).
        ws_max_size=MAX_FRAME_BYTES,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips,
        log_level=settings.log_level.lower(),
    )


@app.command()
def migrate() -> None:
    """Apply every pending database migration."""
    settings = load_settings()
    upgrade_to_head(settings)
    typer.echo("Database is up to date.")


@app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(help="E-mail of the admin account.")],
    password: Annotated[
        str | None, typer.Option(help="Password; prompted for when omitted.", show_default=False)
    ] = None,
    display_name: Annotated[str | None, typer.Option(help="Display name.")] = None,
) -> None:
    """Create an admin account, or promote (and reactivate) an existing one."""
    settings = load_settings()

    async def run(password: str | None) -> tuple[str, bool]:
        hasher = PasswordHasher(rounds=settings.bcrypt_rounds, workers=1)
        try:
            async with open_database(settings) as database, database.session(write=True) as session:
                existing = await user_service.get_by_email(session, email)
                if existing is None and password is None:
                    # On SQLite this session is the writer: never hold it while a human types.
                    async with idle(session):
                        password = typer.prompt(
                            "Password", hide_input=True, confirmation_prompt=True
                        )
                user, created = await user_service.ensure_admin(
                    session,
                    email,
                    password=password,
                    display_name=display_name,
                    hasher=hasher,
                    tokens=TokenService(settings),
                )
            return user.email, created
        finally:
            hasher.close()

    try:
        address, created = asyncio.run(run(password))
    except ValidationError as exc:
        for error in exc.errors():
            typer.secho(f"{'.'.join(map(str, error['loc']))}: {error['msg']}", err=True)
        raise typer.Exit(code=2) from exc
    typer.echo(f"{'Created' if created else 'Promoted'} admin {address}.")


@app.command("repair-counts")
def repair_counts() -> None:
    """Recount the task counts of every project whose stored counts drifted from its tasks
    (the server also does this when it starts)."""
    settings = load_settings()

    async def run() -> list[int]:
        async with open_database(settings) as database, database.session(write=True) as session:
            return await task_counts.repair_task_counts(session)

    repaired = asyncio.run(run())
    if repaired:
        typer.echo(f"Repaired the task counts of {len(repaired)} projects: {repaired}")
    else:
        typer.echo("Every project's task counts match its tasks.")


@app.command("seed-demo")
def seed_demo() -> None:
    """Fill the database with demo users, projects, tasks and comments."""
    from fasttrack import demo  # noqa: PLC0415

    settings = load_settings()

    async def run() -> list[demo.DemoLogin]:
        hasher = PasswordHasher(rounds=settings.bcrypt_rounds, workers=2)
        try:
            async with open_database(settings) as database:
                return await demo.seed(database, hasher, create_email_sender(settings))
        finally:
            hasher.close()

    try:
        logins = asyncio.run(run())
    except demo.DemoAlreadySeeded:
        typer.echo("The demo data is already there; log in with the demo accounts:")
        logins = [
            demo.DemoLogin(email=email, password=demo.DEMO_PASSWORD, role=role)
            for email, _, role in demo.DEMO_USERS
        ]
    else:
        typer.echo("Created demo users, projects, tasks and comments. Log in with:")
    for login in logins:
        typer.echo(f"  {login.email:<28} {login.password}  ({login.role})")


@app.command()
def openapi(
    output: Annotated[
        Path | None, typer.Option(help="Write to this file instead of standard output.")
    ] = None,
) -> None:
    """Print the OpenAPI document of the API."""
    from fasttrack.main import create_app  # noqa: PLC0415  (keeps CLI start-up light)

    document = json.dumps(create_app(load_settings()).openapi(), indent=2)
    if output is None:
        typer.echo(document)
    else:
        output.write_text(document + "\n")
        typer.echo(f"Wrote {output}")
