"""A real local Redis Cluster of three masters on loopback ports, for tests.

``LocalRedisCluster`` starts one redis-server per master in cluster mode, splits the
16384 slots evenly between them, joins them with CLUSTER MEET and waits until every node
reports ``cluster_state:ok``. It has no replicas. A suite uses it through the
``redis_cluster`` fixture below, for example with
``from tests.cluster import redis_cluster  # noqa: F401`` in its conftest.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from shared.embedded_redis import find_redis_server

SLOTS = 16384

# The cluster bus of a node listens on its port + 10000, so a port is only usable when
# both are free.
BUS_PORT_OFFSET = 10_000


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port() -> int:
    """Return a loopback port that is free, and whose cluster bus port is free too."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + BUS_PORT_OFFSET < 65536 and _port_is_free(port + BUS_PORT_OFFSET):
            return port
    raise RuntimeError("no free port pair for a cluster node on 127.0.0.1")


class LocalRedisCluster:
    """Three (or more) redis-server masters forming one cluster on 127.0.0.1."""

    def __init__(self, masters: int = 3, binary: str | None = None) -> None:
        self.binary = binary or find_redis_server()
        self.masters = masters
        self.ports: list[int] = []
        self.data_dir = Path(tempfile.mkdtemp(prefix="trustfirst-cluster-"))
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """URL of the first node. A cluster client discovers the others from it."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self, timeout_seconds: float = 20.0) -> LocalRedisCluster:
        """Start the nodes, assign the slots and wait until the cluster is ready."""
        deadline = time.monotonic() + timeout_seconds
        try:
            for _ in range(self.masters):
                self._start_node(free_cluster_port())
            for port in self.ports:
                self._wait_for_ping(port, deadline)
            self._assign_slots()
            self._meet()
            self._wait_until_ready(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node(self, port: int) -> None:
        folder = self.data_dir / str(port)
        folder.mkdir()
        args = [
            self.binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(folder),
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "5000",
            "--appendonly", "no",
            "--save", "",
            "--logfile", str(folder / "redis.log"),
        ]  # fmt: skip
        self._processes.append(subprocess.Popen(args, stdout=subprocess.DEVNULL))
        self.ports.append(port)

    def _wait_for_ping(self, port: int, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                with redis.Redis(
                    host="127.0.0.1", port=port, socket_timeout=0.5
                ) as client:
                    client.ping()
                    return
            except redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError(f"cluster node on port {port} did not answer PING in time")

    def _assign_slots(self) -> None:
        """Give each master an even, contiguous share of the slots."""
        share = SLOTS // self.masters
        for index, port in enumerate(self.ports):
            first = index * share
            last = SLOTS - 1 if index == self.masters - 1 else first + share - 1
            with redis.Redis(host="127.0.0.1", port=port) as client:
                # ADDSLOTS with every slot works on Redis 6.2, unlike ADDSLOTSRANGE.
                client.execute_command("CLUSTER ADDSLOTS", *range(first, last + 1))

    def _meet(self) -> None:
        with redis.Redis(host="127.0.0.1", port=self.ports[0]) as client:
            for port in self.ports[1:]:
                client.execute_command("CLUSTER MEET", "127.0.0.1", port)

    def _wait_until_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if all(self._node_ready(port) for port in self.ports):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the cluster on ports {self.ports} did not become ready")

    def _node_ready(self, port: int) -> bool:
        with redis.Redis(host="127.0.0.1", port=port, decode_responses=True) as client:
            info = client.cluster("INFO")
        return (
            info.get("cluster_state") == "ok"
            and int(info.get("cluster_known_nodes", 0)) == self.masters
            and int(info.get("cluster_slots_ok", 0)) == SLOTS
        )

    def port_of_slot(self, slot: int) -> int:
        """Return the port of the master that serves slot."""
        share = SLOTS // self.masters
        return self.ports[min(slot // share, self.masters - 1)]

    def stop(self) -> None:
        """Stop every node and remove the data folder."""
        for process in self._processes:
            process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()
        shutil.rmtree(self.data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[LocalRedisCluster]:
    """A three-master Redis Cluster for the tests of one module."""
    cluster = LocalRedisCluster().start()
    yield cluster
    cluster.stop()
