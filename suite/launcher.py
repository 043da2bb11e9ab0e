"""Start the whole suite on one machine: Redis and the three services as processes.

With no Redis URL the launcher starts an embedded real redis-server (AOF, fsync on every
write) whose data lives in the suite's data folder, so a second start finds the same state.
"""

import logging
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shared.embedded_redis import EmbeddedRedis, free_port

logger = logging.getLogger(__name__)

SERVICES = ("identity", "consent", "decision")
DEFAULT_PORTS = {"identity": 50051, "consent": 50052, "decision": 50053}


@dataclass
class ServiceProcess:
    """One service's process, its port and its log file."""

    name: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class Suite:
    """The running suite: where Redis is, and each service's process."""

    data_dir: Path
    redis_url: str
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    embedded_redis: EmbeddedRedis | None = None

    def target(self, name: str) -> str:
        return self.services[name].target

    def stop(self, grace_seconds: float = 10.0) -> None:
        """Send SIGTERM to each service, wait for it, then stop the embedded Redis."""
        for service in self.services.values():
            if service.process.poll() is None:
                service.process.terminate()
        for service in self.services.values():
            try:
                service.process.wait(timeout=grace_seconds)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in time; killing it", service.name)
                service.process.kill()
                service.process.wait()
        self.services.clear()
        if self.embedded_redis is not None:
            self.embedded_redis.stop()
            self.embedded_redis = None

    def __enter__(self) -> "Suite":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def hash_key_file(data_dir: Path) -> Path:
    """Return the identity hashing key file of a local suite, creating it on first use.

    The key decides every stored identifier hash, so it is kept beside the Redis data:
    a new key would make every stored identifier unreachable.
    """
    path = data_dir / "identity-hash-key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as key_file:
            key_file.write(secrets.token_hex(32))
    return path


def start_suite(
    data_dir: Path,
    model_path: Path,
    redis_url: str | None = None,
    ports: dict[str, int] | None = None,
    startup_timeout_seconds: float = 30.0,
) -> Suite:
    """Start Redis (unless redis_url is given) and the three services; wait until SERVING.

    ports maps service names to ports; a missing name gets a free port.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "logs").mkdir(exist_ok=True)
    embedded = None
    if redis_url is None:
        embedded = EmbeddedRedis(data_dir=data_dir / "redis").start()
        redis_url = embedded.url
    suite = Suite(data_dir=data_dir, redis_url=redis_url, embedded_redis=embedded)
    ports = ports or {}

    try:
        for name in SERVICES:
            port = ports.get(name) or free_port()
            suite.services[name] = _spawn(name, port, suite, model_path)
        for service in suite.services.values():
            _wait_serving(service, startup_timeout_seconds)
    except BaseException:
        suite.stop()
        raise
    return suite


def _service_env(
    name: str, port: int, suite: Suite, model_path: Path
) -> dict[str, str]:
    env = dict(os.environ)
    env["REDIS_URL"] = suite.redis_url
    env[f"TRUSTFIRST_{name.upper()}_PORT"] = str(port)
    if name == "identity":
        env.setdefault(
            "TRUSTFIRST_IDENTITY_HASH_KEY_FILE", str(hash_key_file(suite.data_dir))
        )
    if name == "decision":
        env["TRUSTFIRST_DECISION_IDENTITY_TARGET"] = suite.target("identity")
        env["TRUSTFIRST_DECISION_CONSENT_TARGET"] = suite.target("consent")
        env["TRUSTFIRST_DECISION_MODEL_PATH"] = str(model_path)
    return env


def _spawn(name: str, port: int, suite: Suite, model_path: Path) -> ServiceProcess:
    log_path = suite.data_dir / "logs" / f"{name}.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            env=_service_env(name, port, suite, model_path),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    logger.info("started %s", name, extra={"pid": process.pid, "port": port})
    return ServiceProcess(name=name, port=port, log_path=log_path, process=process)


def _wait_serving(service: ServiceProcess, timeout_seconds: float) -> None:
    """Poll the service's health until SERVING; raise with its log tail if it exits."""
    deadline = time.monotonic() + timeout_seconds
    with grpc.insecure_channel(service.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                raise RuntimeError(
                    f"{service.name} exited with {service.process.returncode}:\n"
                    + _log_tail(service.log_path)
                )
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise RuntimeError(
        f"{service.name} was not SERVING after {timeout_seconds} s:\n"
        + _log_tail(service.log_path)
    )


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"
