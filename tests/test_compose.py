"""docker-compose.yml and the Dockerfile, checked by parsing them (Docker itself does not run in CI)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, whether written as a mapping or as a list of NAME=value."""
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {name: str(value) for name, value in env.items()}


def volume_sources(service: dict[str, Any], target: str) -> list[str]:
    """The sources of the volumes a service mounts at `target` (short `src:dst[:mode]` or long syntax)."""
    sources = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            if rest.split(":")[0] == target:
                sources.append(source)
        elif volume.get("target") == target:
            sources.append(volume["source"])
    return sources


def command_text(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else command


def dockerfile_of(service: dict[str, Any]) -> Path:
    build = service["build"]
    if isinstance(build, str):
        return (ROOT / build / "Dockerfile").resolve()
    return (ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).resolve()


def test_has_the_three_services(services: dict[str, Any]) -> None:
    assert {"db", "web", "worker"} <= set(services)


def test_db_is_postgres_with_a_health_check_and_a_named_volume(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    db = services["db"]
    assert db["image"].startswith("postgres:16")
    assert {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"} <= set(environment(db))
    test = db["healthcheck"]["test"]
    assert "pg_isready" in (" ".join(test) if isinstance(test, list) else test)
    (source,) = volume_sources(db, "/var/lib/postgresql/data")
    assert source in compose["volumes"]


@pytest.mark.parametrize("name", ["web", "worker"])
def test_web_and_worker_wait_for_a_healthy_database(services: dict[str, Any], name: str) -> None:
    assert services[name]["depends_on"]["db"]["condition"] == "service_healthy"


def test_web_migrates_then_serves_the_app(services: dict[str, Any]) -> None:
    command = command_text(services["web"])
    assert "rlhf db upgrade" in command
    assert "uvicorn --factory app.main:create_app_from_env" in command
    assert command.index("rlhf db upgrade") < command.index("uvicorn")
    assert any(str(port).split(":")[-1] == "8000" for port in services["web"]["ports"])


def test_worker_runs_the_worker_command(services: dict[str, Any]) -> None:
    assert command_text(services["worker"]).strip() == "rlhf worker"


def test_web_and_worker_share_the_data_volume_and_the_database(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    web, worker = services["web"], services["worker"]
    (web_data,) = volume_sources(web, "/data")
    assert volume_sources(worker, "/data") == [web_data]
    assert web_data in compose["volumes"]  # a named volume, not a host folder
    web_env, worker_env = environment(web), environment(worker)
    assert web_env["RLHF_DATA_DIR"] == worker_env["RLHF_DATA_DIR"] == "/data"
    url = web_env["RLHF_DATABASE_URL"]
    assert worker_env["RLHF_DATABASE_URL"] == url
    assert re.fullmatch(r"postgresql\+psycopg://[^@/]+@db(:5432)?/\w+", url), url
    assert "RLHF_ADMIN_TOKEN" in web_env


def test_worker_is_scalable(services: dict[str, Any]) -> None:
    # `docker compose up --scale worker=3` refuses a fixed container name or host port.
    worker = services["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker


def test_web_and_worker_build_from_one_dockerfile(services: dict[str, Any]) -> None:
    dockerfile = dockerfile_of(services["web"])
    assert dockerfile_of(services["worker"]) == dockerfile
    assert dockerfile.is_file()


def test_dockerfile_installs_cpu_torch_before_the_project(services: dict[str, Any]) -> None:
    lines = dockerfile_of(services["web"]).read_text().splitlines()
    instructions = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    assert instructions[0].startswith("FROM python:3.11-slim")
    torch = next(i for i, line in enumerate(instructions) if re.search(r"pip install .*\btorch\b", line))
    assert "--index-url https://download.pytorch.org/whl/cpu" in instructions[torch]
    project = next(i for i, line in enumerate(instructions) if re.search(r"pip install (-e )?\.$", line))
    assert torch < project
    assert any(line.startswith("USER ") and line.split()[1] != "root" for line in instructions[project:])
    assert any(line.startswith("WORKDIR ") for line in instructions)


def test_dockerignore_leaves_out_local_state() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", "runs", "rlhf-data", "test-output", "bench/.venvs", ".git"} <= ignored


def test_forwarded_headers_are_trusted_from_the_setting_only(services: dict[str, Any]) -> None:
    assert "RLHF_FORWARDED_ALLOW_IPS" in environment(services["web"])
    assert "--no-proxy-headers" in command_text(services["web"])  # not uvicorn's own default (127.0.0.1)
    assert "--no-proxy-headers" in (ROOT / "Dockerfile").read_text()
