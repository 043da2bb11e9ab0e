"""The embedded redis-server starts from a relative data folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from shared.embedded_redis import EmbeddedRedis


def test_relative_data_dir_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    server = EmbeddedRedis(data_dir=Path("var/redis"), appendfsync="everysec").start()
    try:
        client = redis.Redis.from_url(server.url)
        pong = client.ping()
        client.close()
    finally:
        server.stop()

    assert pong is True
    assert (tmp_path / "var" / "redis" / "redis.log").is_file()
