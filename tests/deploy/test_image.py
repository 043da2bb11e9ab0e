"""The Dockerfile and its build context, checked without a Docker engine.

No Docker engine runs here, so the image is never built. Instead, the Dockerfile is
parsed with BuildKit's own parser (the `dockerfile` package) and its rules are checked.
The builder stage's install step is then repeated: the files it copies, filtered by
.dockerignore, are built into a wheel, and each console script's module must be in it.
"""

import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dockerfile
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICE_PORTS = {"identity": 50051, "consent": 50052, "decision": 50053}
SCRIPTS = {
    "trustfirst": "suite/cli.py",
    "trustfirst-identity": "services/identity/__main__.py",
    "trustfirst-consent": "services/consent/__main__.py",
    "trustfirst-decision": "services/decision/__main__.py",
}


@dataclass
class Stage:
    """One FROM section of the Dockerfile and its instructions."""

    base: str
    name: str | None
    commands: list[dockerfile.Command]

    def of(self, instruction: str) -> list[dockerfile.Command]:
        return [command for command in self.commands if command.cmd == instruction]


def _stages() -> list[Stage]:
    commands = dockerfile.parse_file(str(ROOT / "Dockerfile"))
    arguments: dict[str, str] = {}
    stages: list[Stage] = []
    for command in commands:
        if command.cmd == "ARG" and not stages:
            name, _, default = command.value[0].partition("=")
            arguments[name] = default
        elif command.cmd == "FROM":
            base = re.sub(
                r"\$\{(\w+)\}",
                lambda match: arguments[match.group(1)],
                command.value[0],
            )
            name = command.value[2] if len(command.value) == 3 else None
            stages.append(Stage(base, name, []))
        elif stages:
            stages[-1].commands.append(command)
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return _stages()


def _flag(command: dockerfile.Command, name: str) -> str | None:
    for flag in command.flags:
        key, _, value = flag.partition("=")
        if key == f"--{name}":
            return value
    return None


def _dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Return whether a context path is left out, by Docker's last-match-wins rule.

    A pattern matches the path or one of its parent folders, and `**` spans folders.
    """
    parts = path.split("/")
    candidates = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.removeprefix("!").strip("/")
        regex = re.escape(body)
        regex = regex.replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _yaml_documents(*paths: Path) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for path in paths:
        documents.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return documents


def test_multi_stage(stages: list[Stage]) -> None:
    builder, runtime = stages[0], stages[-1]

    assert len(stages) == 2
    assert builder.name == "builder"
    assert builder.base == runtime.base
    assert runtime.base.startswith("python:3.11-slim")


def test_runtime_copies_venv_only(stages: list[Stage]) -> None:
    runtime = stages[-1]
    copies = runtime.of("COPY")

    assert [_flag(copy, "from") for copy in copies] == ["builder"]
    assert copies[0].value == ("/opt/venv", "/opt/venv")
    assert runtime.of("ADD") == []


def test_builder_installs_data_extra(stages: list[Stage]) -> None:
    runs = [command.value[0] for command in stages[0].of("RUN")]

    assert "python -m venv /opt/venv" in runs
    assert 'pip install ".[data]"' in runs


def test_user_numeric_non_root(stages: list[Stage]) -> None:
    users = stages[-1].of("USER")

    assert len(users) == 1
    uid, _, gid = users[0].value[0].partition(":")
    assert uid.isdigit()
    assert gid.isdigit()
    assert int(uid) != 0
    assert int(gid) != 0


def test_user_matches_deployments(stages: list[Stage]) -> None:
    user = stages[-1].of("USER")[0].value[0]
    uid, _, gid = user.partition(":")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    base = ROOT / "k8s" / "base"
    deployments = [
        doc
        for doc in _yaml_documents(*(base / f"{name}.yaml" for name in SERVICE_PORTS))
        if doc["kind"] == "Deployment"
    ]

    for name in SERVICE_PORTS:
        assert compose["services"][name]["user"] == user, name
    assert len(deployments) == len(SERVICE_PORTS)
    for deployment in deployments:
        context = deployment["spec"]["template"]["spec"]["securityContext"]
        assert context["runAsUser"] == int(uid), deployment["metadata"]["name"]
        assert context["runAsGroup"] == int(gid), deployment["metadata"]["name"]
        assert context["fsGroup"] == int(gid), deployment["metadata"]["name"]


def test_mount_points_created(stages: list[Stage]) -> None:
    uid, _, gid = stages[-1].of("USER")[0].value[0].partition(":")
    runs = " ".join(command.value[0] for command in stages[-1].of("RUN"))
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    identity = compose["services"]["identity"]["environment"]
    decision = compose["services"]["decision"]["environment"]
    folders = [
        str(Path(identity["TRUSTFIRST_IDENTITY_HASH_KEY_FILE"]).parent),
        decision["TRUSTFIRST_DECISION_MODEL_PATH"],
    ]

    for folder in folders:
        created = (
            rf"--owner={uid} --group={gid} --mode=0\d{{3}} {re.escape(folder)}(\s|$)"
        )
        assert re.search(created, runs), folder


def test_runtime_environment(stages: list[Stage]) -> None:
    environment = " ".join(" ".join(command.value) for command in stages[-1].of("ENV"))

    assert "PATH /opt/venv/bin:$PATH" in environment
    assert "HOME /tmp" in environment


def test_command_exec_form(stages: list[Stage]) -> None:
    commands = stages[-1].of("CMD")

    assert len(commands) == 1
    assert commands[0].json is True
    assert stages[-1].of("ENTRYPOINT") == []


def test_exposes_service_ports(stages: list[Stage]) -> None:
    exposed = {
        int(port) for command in stages[-1].of("EXPOSE") for port in command.value
    }

    assert exposed == set(SERVICE_PORTS.values())


def test_context_allowlist(stages: list[Stage]) -> None:
    patterns = _dockerignore()
    sources = [
        source
        for command in stages[0].of("COPY")
        for source in command.value[:-1]
        if _flag(command, "from") is None
    ]

    assert sources == [
        "pyproject.toml",
        "README.md",
        "gen",
        "shared",
        "services",
        "suite",
    ]
    for source in sources:
        assert not _dockerignore_excludes(patterns, source), source
    for left_out in [
        ".git/HEAD",
        ".venv/bin/python",
        "tests/conftest.py",
        "k8s/base/kustomization.yaml",
        "services/__pycache__/app.cpython-311.pyc",
        "trustfirst.egg-info/PKG-INFO",
    ]:
        assert _dockerignore_excludes(patterns, left_out), left_out


def test_builder_wheel_scripts(stages: list[Stage], tmp_path: Path) -> None:
    patterns = _dockerignore()
    context = tmp_path / "context"
    for command in stages[0].of("COPY"):
        for source in command.value[:-1]:
            origin = ROOT / source
            if origin.is_file():
                context.mkdir(exist_ok=True)
                shutil.copy2(origin, context / source)
                continue
            for path in origin.rglob("*"):
                relative = path.relative_to(ROOT).as_posix()
                if path.is_file() and not _dockerignore_excludes(patterns, relative):
                    (context / relative).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, context / relative)

    # Same as the builder's `pip install .`: an isolated build of the project's wheel.
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            "dist",
            "./context",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    (wheel,) = (tmp_path / "dist").glob("trustfirst-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(name for name in names if name.endswith("entry_points.txt"))
        scripts = archive.read(entry_points).decode()

    for script, module_file in SCRIPTS.items():
        assert re.search(rf"^{re.escape(script)} = ", scripts, re.MULTILINE), script
        assert module_file in names, f"{script} needs {module_file} in the image"
    assert "trustfirst/identity/v1/identity_pb2.py" in names
