"""Shared test setup: every test runs with its own settings and never touches the user's Prefect."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from typing import Iterator

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

# Tests build tiny models locally; nothing may ever be fetched from a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

PG_URL = os.environ.get("STUDIO_NOVA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(autouse=True, scope="session")
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory):
    prefect_home = tmp_path_factory.mktemp("prefect-home")
    saved = {k: os.environ.get(k) for k in ("PREFECT_HOME", "PREFECT_SERVER_ANALYTICS_ENABLED")}
    os.environ["PREFECT_HOME"] = str(prefect_home)
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    for key in [k for k in os.environ if k.startswith("STUDIO_NOVA_") and k != "STUDIO_NOVA_TEST_POSTGRES_URL"]:
        os.environ.pop(key)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextmanager
def new_postgres_database(prefix: str, driver: str | None = None) -> Iterator[str]:
    """A fresh, uniquely named database on the test server (its URL, with `driver` if given);
    dropped after. Skips the test when the server is unreachable."""
    admin_url = make_url(PG_URL)
    admin = create_engine(
        admin_url.set(drivername="postgresql+psycopg2"), isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    try:
        connection = admin.connect()
    except OperationalError as exc:
        admin.dispose()
        reason = " ".join(str(exc.orig).split())
        pytest.skip(
            f"PostgreSQL at {admin_url.render_as_string(hide_password=True)} is unreachable "
            f"({reason}); set STUDIO_NOVA_TEST_POSTGRES_URL to a server to run these tests"
        )
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        url = admin_url.set(database=name)
        yield (url.set(drivername=driver) if driver else url).render_as_string(hide_password=False)
    finally:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.close()
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh, uniquely named database on the test server for this session; dropped after."""
    with new_postgres_database("studio_nova_test") as url:
        yield url
