"""The consent domain on a real three-master Redis Cluster.

Every multi-key step of one subject uses keys with the subject id as hash tag, so it
must run on a cluster, where keys of one subject may live on another master than the
erasure record or another subject.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio as aioredis

from services.consent.durability import FSYNC, NONE, DurabilityGuard
from services.consent.models import Change, Pair, RecordRequest
from services.consent.reconciler import IdentityEvent
from shared.redis_client import create_redis
from tests.cluster import LocalRedisCluster, redis_cluster  # noqa: F401
from tests.consent.helpers import Domain, build_domain
from trustfirst.consent.v1 import consent_pb2 as pb

EMAIL = Pair(pb.PURPOSE_MARKETING, pb.CHANNEL_EMAIL)
SUBJECTS = [f"cluster-{index}" for index in range(12)]


@pytest.fixture
async def cluster_domain(
    redis_cluster: LocalRedisCluster,  # noqa: F811
) -> AsyncIterator[Domain]:
    for port in redis_cluster.ports:
        with redis.Redis(port=port) as node:
            node.flushall()
            node.config_set("appendonly", "yes")
            node.config_set("appendfsync", "always")
    client = create_redis(redis_cluster.url, 2.0, cluster=True)
    yield build_domain(client)
    await client.aclose()


async def write(domain: Domain, subject_id: str, action: int) -> None:
    await domain.recorder.record(
        RecordRequest(
            subject_id=subject_id,
            changes=(
                Change(
                    EMAIL.purpose, EMAIL.channel, pb.ConsentAction.ValueType(action)
                ),
            ),
            source="pos",
            notice_version="v1",
        )
    )


async def test_cluster_write_check_verify(cluster_domain: Domain) -> None:
    for subject_id in SUBJECTS:
        await write(cluster_domain, subject_id, pb.CONSENT_ACTION_GRANT)
        await write(cluster_domain, subject_id, pb.CONSENT_ACTION_WITHDRAW)

    answers = [await cluster_domain.reader.check(s, [EMAIL]) for s in SUBJECTS]
    reports = [await cluster_domain.verifier.verify(s) for s in SUBJECTS]
    earlier = await cluster_domain.reader.list_at(SUBJECTS[0], 1)

    assert {a.verdicts[0].reason for a in answers} == {pb.CHECK_REASON_WITHDRAWN}
    assert [r.problems for r in reports] == [[]] * len(SUBJECTS)
    assert earlier.states[0].status == pb.CONSENT_STATUS_GRANTED


async def test_cluster_merge_and_erase(cluster_domain: Domain) -> None:
    await write(cluster_domain, SUBJECTS[0], pb.CONSENT_ACTION_GRANT)
    await write(cluster_domain, SUBJECTS[1], pb.CONSENT_ACTION_DENY)

    await cluster_domain.reconciler.apply(
        IdentityEvent("1-1", "merge", SUBJECTS[0], (SUBJECTS[1],))
    )
    merged = await cluster_domain.reader.check(SUBJECTS[0], [EMAIL])
    await cluster_domain.reconciler.apply(
        IdentityEvent("2-1", "erase", SUBJECTS[0], (SUBJECTS[1],))
    )
    erased = await cluster_domain.verifier.verify(SUBJECTS[0])

    assert merged.verdicts[0].reason == pb.CHECK_REASON_DENIED
    assert erased.entry_count == 0
    assert erased.erasure is not None
    assert erased.erasure.sequence == 2


def test_cluster_client_type(redis_cluster: LocalRedisCluster) -> None:  # noqa: F811
    client = create_redis(redis_cluster.url, 2.0, cluster=True)

    assert not isinstance(client, aioredis.Redis)


@pytest.mark.usefixtures("cluster_domain")
async def test_cluster_guard_needs_fsync(
    redis_cluster: LocalRedisCluster,  # noqa: F811
) -> None:
    # redis-py would send WAIT to one default node, so WAIT mode is not offered.
    client = create_redis(redis_cluster.url, 2.0, cluster=True)
    try:
        fsync = await DurabilityGuard(client).refresh()
        waiting = await DurabilityGuard(client, wait_replicas=1).refresh()
    finally:
        await client.aclose()

    assert fsync.mode == FSYNC
    assert waiting.mode == NONE
