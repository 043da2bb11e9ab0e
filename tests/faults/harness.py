"""The suite as real processes for fault, hostile-input and secret tests.

Unlike suite.launcher, it lets a test kill and restart one service on the same port,
point decision at a proxy instead of identity or consent, add environment variables per
run, and wait for health over mutual TLS.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.decision.train import train_model
from shared.embedded_redis import EmbeddedRedis, free_port
from suite.launcher import SERVICES, ServiceProcess, hash_key_file
from tests.decision.synthetic import write_synthetic_cdnow

STARTUP_TIMEOUT_SECONDS = 30.0


def train_test_model(folder: Path) -> Path:
    """Train a model on 300 synthetic CDNOW customers; return the model folder."""
    folder.mkdir(parents=True, exist_ok=True)
    data = write_synthetic_cdnow(folder / "cdnow.txt", customers=300)
    models = folder / "models"
    train_model(data, models)
    return models


@dataclass
class ProcessSuite:
    """Redis and the three services as processes, each of which a test may stop.

    env is added to every service's environment; decision_targets replaces decision's
    identity or consent target (by service name) with another address, such as a proxy.
    """

    data_dir: Path
    model_path: Path
    redis: EmbeddedRedis
    env: dict[str, str] = field(default_factory=dict)
    decision_targets: dict[str, str] = field(default_factory=dict)
    health_credentials: grpc.ChannelCredentials | None = None
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def target(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    def start_all(self) -> ProcessSuite:
        """Start the three services in dependency order and wait until each is SERVING."""
        for name in SERVICES:
            self.ports.setdefault(name, free_port())
        try:
            for name in SERVICES:
                self.start(name)
        except BaseException:
            self.stop()
            raise
        return self

    def start(self, name: str) -> ServiceProcess:
        """Start one service on its port and wait until it is SERVING."""
        log_path = self.data_dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"],
                env=self._environment(name),
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        service = ServiceProcess(name, self.ports[name], log_path, process)
        self.services[name] = service
        self._wait_serving(service)
        return service

    def kill(self, name: str) -> None:
        """Kill one service with SIGKILL, as a crash would, and reap it."""
        process = self.services[name].process
        process.kill()
        process.wait()

    def alive(self, name: str) -> bool:
        return self.services[name].process.poll() is None

    def stop(self) -> None:
        """Stop every service with SIGTERM (SIGKILL after 10 s), then Redis."""
        for service in self.services.values():
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        for service in self.services.values():
            try:
                service.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()
        self.redis.stop()

    def logs(self) -> dict[str, str]:
        """Return each service's log so far, by service name."""
        return {
            name: service.log_path.read_text(errors="replace")
            for name, service in self.services.items()
        }

    def _environment(self, name: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        env["REDIS_URL"] = self.redis.url
        prefix = f"TRUSTFIRST_{name.upper()}_"
        env[prefix + "PORT"] = str(self.ports[name])
        env.setdefault(prefix + "GRACE_SECONDS", "1")
        if name == "identity" and "TRUSTFIRST_IDENTITY_HASH_KEY" not in env:
            env.setdefault(prefix + "HASH_KEY_FILE", str(hash_key_file(self.data_dir)))
        if name == "decision":
            for dependency in ("identity", "consent"):
                target = self.decision_targets.get(dependency, self.target(dependency))
                env[f"{prefix}{dependency.upper()}_TARGET"] = target
            env[prefix + "MODEL_PATH"] = str(self.model_path)
        return env

    def _wait_serving(self, service: ServiceProcess) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        if self.health_credentials is None:
            channel = grpc.insecure_channel(service.target)
        else:
            channel = grpc.secure_channel(service.target, self.health_credentials)
        with channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if service.process.poll() is not None:
                    raise RuntimeError(
                        f"{service.name} exited with {service.process.returncode}:\n"
                        + service.log_path.read_text(errors="replace")[-3000:]
                    )
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                except grpc.RpcError:
                    time.sleep(0.1)
                    continue
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                time.sleep(0.1)
        raise RuntimeError(
            f"{service.name} was not SERVING after {STARTUP_TIMEOUT_SECONDS} s"
        )


def start_process_suite(
    data_dir: Path,
    model_path: Path,
    env: dict[str, str] | None = None,
    decision_targets: dict[str, str] | None = None,
    health_credentials: grpc.ChannelCredentials | None = None,
    ports: dict[str, int] | None = None,
) -> ProcessSuite:
    """Start a Redis of its own (AOF, fsync on every write) and the three services.

    ports fixes the port of some services, so that a proxy can be set up before them.
    """
    redis = EmbeddedRedis(data_dir=data_dir / "redis").start()
    suite = ProcessSuite(
        data_dir=data_dir,
        model_path=model_path,
        redis=redis,
        env=env or {},
        decision_targets=decision_targets or {},
        health_credentials=health_credentials,
        ports=dict(ports or {}),
    )
    return suite.start_all()
