"""Registering the deployments against a live Prefect server (the pools' part)."""
from __future__ import annotations

import pytest

pytest.importorskip("prefect")

from prefect import get_client
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectNotFound
from prefect.testing.utilities import prefect_test_harness

from studio_nova_flows import deployments


@pytest.fixture(scope="module")
def server():
    with prefect_test_harness(server_startup_timeout=60):
        yield


def _delete_pools() -> None:
    with get_client(sync_client=True) as client:
        for pool in deployments.POOLS:
            try:
                client.delete_work_pool(pool.name)
            except ObjectNotFound:
                pass


def _pools() -> dict[str, tuple[str | None, int | None]]:
    with get_client(sync_client=True) as client:
        return {p.name: (p.description, p.concurrency_limit) for p in client.read_work_pools()}


def test_a_worker_that_creates_its_pool_between_the_check_and_the_create_does_not_fail_deploy(server, monkeypatch):
    """`studio-nova server` starts its workers while `deploy` runs; a worker creates its pool
    (bare) when it finds none. Here the worker gets in right after `ensure_pools` found no pool:
    the create then meets an existing pool, and the pool must still end as described."""
    _delete_pools()
    read = SyncPrefectClient.read_work_pool
    raced: list[str] = []

    def read_then_a_worker_creates_it(self, name):
        try:
            return read(self, name)
        except ObjectNotFound:
            self.create_work_pool(WorkPoolCreate(name=name, type="process"))  # what the worker does
            raced.append(name)
            raise

    monkeypatch.setattr(SyncPrefectClient, "read_work_pool", read_then_a_worker_creates_it)
    deployments.ensure_pools()
    assert sorted(raced) == sorted(p.name for p in deployments.POOLS)
    found = _pools()
    for pool in deployments.POOLS:
        assert found[pool.name] == (pool.description, pool.concurrency_limit)


def test_a_pool_a_worker_made_before_deploy_gets_its_description_and_limit(server):
    _delete_pools()
    with get_client(sync_client=True) as client:
        for pool in deployments.POOLS:
            client.create_work_pool(WorkPoolCreate(name=pool.name, type="process", concurrency_limit=7))
    deployments.ensure_pools()
    found = _pools()
    for pool in deployments.POOLS:
        assert found[pool.name] == (pool.description, pool.concurrency_limit)
