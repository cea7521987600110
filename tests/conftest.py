"""Shared fixtures: a real PostgreSQL (embedded, or the server named by CHOPMARK_DATABASE_URL),
a fresh database per test cloned from a migrated template, the service runtime and API client
(``mclient``: with a moderation batch worker), API keys, and synthetic photo-like images."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support import encode, photo_like

TEMPLATE = "chopmark_test_template"


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A PostgreSQL server URL (maintenance database)."""
    url = os.environ.get("CHOPMARK_DATABASE_URL")
    if url:
        yield url
        return
    import shutil
    import tempfile

    from service.db.embedded import embedded_database_url

    # Not under pytest's private (0700) temp folder: as root, pgserver runs PostgreSQL as its own
    # system user, which must be able to reach the data folder.
    folder = Path(tempfile.mkdtemp(prefix="chopmark-test-pg-"))
    folder.chmod(0o755)
    yield embedded_database_url(folder / "data")
    from service.db.embedded import stop_embedded

    stop_embedded(folder / "data")
    shutil.rmtree(folder, ignore_errors=True)


def _with_database(url: str, name: str) -> str:
    conninfo = psycopg.conninfo.conninfo_to_dict(url)
    conninfo["dbname"] = name
    return psycopg.conninfo.make_conninfo(**conninfo)


@pytest.fixture(scope="session")
def pg_template(pg_server_url: str) -> str:
    """A database with every migration applied, cloned for each test."""
    from service.db.migrate import upgrade

    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    upgrade(_with_database(pg_server_url, TEMPLATE))
    return TEMPLATE


@pytest.fixture
def database_url(pg_server_url: str, pg_template: str) -> Iterator[str]:
    name = f"chopmark_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    yield _with_database(pg_server_url, name)
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def settings(tmp_path: Path, database_url: str):
    from service.settings import Settings

    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        index_refresh_seconds=0.2,
        max_upload_bytes=2 * 1024 * 1024,
        max_request_bytes=8 * 1024 * 1024,
    )


@pytest.fixture
def runtime(settings):
    from service.runtime import Runtime

    rt = Runtime.open(settings)
    yield rt
    rt.close()


@pytest.fixture
def client(settings, runtime):
    from fastapi.testclient import TestClient

    from service.api.app import create_app

    with TestClient(create_app(settings, runtime=runtime)) as c:
        yield c


@pytest.fixture
def mclient(settings, runtime):
    """The API with the moderation routes and a batch worker with short webhook backoff."""
    from fastapi.testclient import TestClient

    from service.api.app import create_app
    from service.moderation.jobs import ModerationWorker

    app = create_app(settings, runtime=runtime)
    worker = ModerationWorker(runtime, poll_seconds=0.1, webhook_backoff_seconds=0.2)
    with TestClient(app) as c:
        worker.start()
        try:
            yield c
        finally:
            worker.stop()


@pytest.fixture
def make_key(runtime) -> Callable[..., str]:
    """Create an API key with the given scopes; returns the secret."""
    from service.auth.keys import create_key

    def make(*scopes: str, name: str = "test") -> str:
        with runtime.pool.connection() as conn, conn.transaction():
            _, secret = create_key(conn, name, list(scopes))
        return secret

    return make


@pytest.fixture
def photo() -> Callable[..., bytes]:
    """``photo(seed, size=(640, 480), fmt="JPEG")`` → encoded bytes of a synthetic photo."""

    def make(seed: int, size: tuple[int, int] = (640, 480), fmt: str = "JPEG") -> bytes:
        return encode(photo_like(seed, size), fmt)

    return make


@pytest.fixture
def cli(settings, tmp_path):
    """``cli(*args, ok=True)``: the ``chopmark`` command line as a user runs it, a subprocess
    on the test's database and data folder."""
    env = {
        **os.environ,
        "CHOPMARK_DATABASE_URL": settings.database_url,
        "CHOPMARK_DATA_DIR": str(settings.data_dir),
        "COLUMNS": "200",
    }

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "service.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        if ok:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    return run
