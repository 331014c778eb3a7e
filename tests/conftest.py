"""Shared fixtures: synthetic records (bench.synth), the real templates, and real LibreOffice."""

from __future__ import annotations

import copy
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from argon2 import PasswordHasher
from botocore.config import Config

from archive.index import Index
from archive.users import LocalAccounts
from bench.synth import make_batch
from core.config import load_settings
from core.products import load_registry
from pipeline.convert import ConverterPool
from pipeline.documents import DocumentMaker

RESOURCES = Path(__file__).parent / "resources"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three valid policies (one per product) and one endorsement, with their images."""
    folder = tmp_path_factory.mktemp("synth")
    make_batch(folder, 3, seed=7, endorsements=1)
    return folder


@pytest.fixture(scope="session")
def synth_records(synth_dir: Path) -> list[dict]:
    lines = (synth_dir / "batch.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture
def records(synth_records: list[dict]) -> dict[str, dict]:
    """Fresh copies a test may change: by product code, plus ``endorsement``."""
    out = {}
    for r in synth_records:
        key = r["product_code"] if r["kind"] == "policy" else "endorsement"
        out.setdefault(key, copy.deepcopy(r))
    return out


@pytest.fixture
def batch_dir(synth_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the synthetic batch folder (images included)."""
    target = tmp_path / "batch"
    shutil.copytree(synth_dir, target)
    return target


def write_batch(folder: Path, records: list[dict | str], name: str = "batch.jsonl") -> Path:
    """Write records (dicts as JSON, strings as raw lines) to a JSONL batch in ``folder``."""
    path = folder / name
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def registry():
    return load_registry()


@pytest.fixture(scope="session")
def pool(tmp_path_factory: pytest.TempPathFactory):
    """Two warm LibreOffice instances shared by the whole session (real ones, no mocks)."""
    with ConverterPool(size=2, workdir=tmp_path_factory.mktemp("lo")) as converter_pool:
        converter_pool.start()
        yield converter_pool


@pytest.fixture(scope="session")
def maker(registry, pool, tmp_path_factory: pytest.TempPathFactory) -> DocumentMaker:
    return DocumentMaker(registry=registry, converter=pool, cache_dir=tmp_path_factory.mktemp("cache"))


# --- PostgreSQL: a throw-away cluster started by the test set-up (Debian's postgresql) -----------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory):
    """A real PostgreSQL server on a Unix socket in a temporary folder; yields a URL factory.

    The server refuses to run as root, so as root it runs as the ``postgres`` user (runuser).
    """
    import glob
    import os
    import subprocess
    import tempfile
    import uuid

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not candidates:
        pytest.fail("PostgreSQL is not installed: run `make test` (it installs Debian's postgresql)")
    bin_dir = Path(candidates[-1]).parent
    as_user: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="issuance-pg-"))
    os.chmod(root, 0o777)
    data, port = root / "data", _free_port()
    subprocess.run(
        [
            *as_user,
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ],
        check=True,
        capture_output=True,
    )
    options = f"-k {root} -p {port} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
    subprocess.run(
        [
            *as_user,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-w",
            "-l",
            str(root / "log"),
            "start",
        ],
        check=True,
        capture_output=True,
    )

    def new_database() -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        subprocess.run(
            [
                str(bin_dir / "psql"),
                "-h",
                str(root),
                "-p",
                str(port),
                "-U",
                "postgres",
                "-qc",
                f"CREATE DATABASE {name}",
            ],
            check=True,
            capture_output=True,
        )
        return f"postgresql+psycopg://postgres@/{name}?host={root}&port={port}"

    try:
        yield new_database
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)  # the throw-away cluster's files go with it


@pytest.fixture(params=["sqlite", "postgresql"])
def index_url(request, tmp_path: Path) -> str:
    """Each index test runs on the embedded SQLite and on a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.sqlite'}"
    return request.getfixturevalue("postgres_server")()


# --- S3: moto's standalone server on loopback, fresh buckets per test ---------------------------------

DUMMY_SECRET = "dummy-secret-never-shown"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials for this test only; no shared config or profile from the machine."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "dummy-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def raw_s3(moto_endpoint: str, aws_env: None) -> Any:
    """A plain boto3 client on the same server: the world behind the store's back."""
    return boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


@dataclass(frozen=True)
class Buckets:
    plain: str
    locked: str


@pytest.fixture
def buckets(raw_s3: Any) -> Buckets:
    suffix = uuid.uuid4().hex[:10]
    made = Buckets(plain=f"plain-{suffix}", locked=f"locked-{suffix}")
    raw_s3.create_bucket(Bucket=made.plain)
    raw_s3.create_bucket(Bucket=made.locked, ObjectLockEnabledForBucket=True)
    return made


# --- helper "identity" (issue 24): the users that actions for a person name (--by) ------------------------


def add_users(
    users: dict[str, Sequence[str]], *, env: Mapping[str, str] | None = None, base: Path | None = None
) -> None:
    """Local accounts named ``users`` with their roles (every branch), in the index that ``issuance``
    would open with ``env`` (default: this process's) in ``base`` (default: the working folder): since
    ``reissue --by``, ``attach --by``, ``audit --by`` and ``get --by`` refuse a name that is not a known
    user with the role. A user that exists already is left as it is."""
    settings = load_settings(env=os.environ if env is None else env, base=base)
    index = Index.open(settings.index_url, hmac_key=settings.hmac_key)
    try:
        # a cheap argon2: these users are made in many tests, and sign in through none of them
        accounts = LocalAccounts(index, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        known = {u.name for u in accounts.every()}
        for name, roles in users.items():
            if name not in known:
                accounts.add(name, roles=roles, password="a test user's password", by="test set-up")
    finally:
        index.close()
