"""Dockerfile and docker-compose.yml, tested without a Docker engine.

The image cannot be built here, so these tests read the files and run what the image
would run: the Dockerfile's CMD against a fresh SQLite database, then its HEALTHCHECK.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.servers import ROOT, free_port, server

VENV_BIN = Path(sys.executable).parent


def _instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = (line.strip() for line in text.splitlines())
    return [
        (keyword.upper(), rest.strip())
        for keyword, _, rest in (
            line.partition(" ") for line in lines if line and not line.startswith("#")
        )
    ]


def _last(keyword: str) -> str:
    return [value for name, value in _instructions() if name == keyword][-1]


def _exec_form(value: str) -> list[str]:
    command: list[str] = json.loads(value)
    return command


def _healthcheck() -> list[str]:
    _, _, command = _last("HEALTHCHECK").partition(" CMD ")
    return _exec_form(command)


def test_the_image_is_multi_stage_and_runs_as_a_user() -> None:
    instructions = _instructions()
    stages = [value for name, value in instructions if name == "FROM"]
    assert len(stages) >= 2
    assert stages[-1].startswith("python:3.11-slim")
    final_stage = instructions[
        max(i for i, (name, _) in enumerate(instructions) if name == "FROM") :
    ]
    users = [value for name, value in final_stage if name == "USER"]
    assert users
    assert users[-1] not in ("root", "0")
    assert any(name == "COPY" and value.startswith("--from=build") for name, value in final_stage)
    assert _healthcheck()[0] == "python"  # the slim image has no curl


def test_the_image_command_migrates_serves_and_passes_its_healthcheck(tmp_path: Path) -> None:
    command = _exec_form(_last("CMD"))
    assert command[:2] == ["fasttrack", "serve"]
    assert "--no-migrate" not in command  # `serve` applies the migrations first
    port = free_port()
    argv = [str(VENV_BIN / "fasttrack"), *command[1:]]
    argv[argv.index("--port") + 1] = str(port)
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/fasttrack.db",
        "ENVIRONMENT": "production",
        "SECRET_KEY": "a-production-secret-of-more-than-32-characters",
        "LOG_LEVEL": "WARNING",
        "PORT": str(port),
    }
    healthcheck = [sys.executable, *_healthcheck()[1:]]

    with server(argv, port=port, env=env) as base_url:
        assert subprocess.run(healthcheck, env=env, check=False).returncode == 0  # noqa: S603
        registered = httpx.post(
            f"{base_url}/api/v1/auth/register",
            json={"email": "docker@example.com", "password": "correct horse battery"},
        )
        assert registered.status_code == 201  # the schema was migrated
    stopped = subprocess.run(healthcheck, env=env, capture_output=True, check=False)  # noqa: S603
    assert stopped.returncode != 0


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def test_compose_runs_one_app_on_sqlite_by_default() -> None:
    compose = _compose()
    default = {name for name, service in compose["services"].items() if "profiles" not in service}
    assert default == {"app"}
    app = compose["services"]["app"]
    assert app["build"] == "."
    assert "data:/data" in app["volumes"]
    assert "DATABASE_URL" not in app["environment"]  # the image's SQLite file in /data
    assert app["environment"]["ENVIRONMENT"] == "production"
    assert "data" in compose["volumes"]


def test_compose_scale_profile_runs_two_apps_on_postgres_and_redis() -> None:
    services = _compose()["services"]
    scale = {name for name, service in services.items() if "scale" in service.get("profiles", ())}
    assert scale == {"postgres", "redis", "migrate", "app-1", "app-2"}
    assert services["migrate"]["command"] == ["fasttrack", "migrate"]
    ports = set()
    for name in ("app-1", "app-2"):
        service = services[name]
        assert service["environment"]["DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert service["environment"]["REDIS_URL"].startswith("redis://redis:")
        assert "--no-migrate" in service["command"]
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        ports.update(service["ports"])
    assert ports == {"8001:8000", "8002:8000"}
    assert services["postgres"]["healthcheck"]["test"][1] == "pg_isready"
