"""The archive's object store, on a real folder and on a real S3 API (moto's standalone server).

The contract tests run on both backends. moto neither verifies client checksums nor implements
GetObjectRetention, so retention set by Object Lock is read back with HEAD, and hash checks are the
store's own (DESIGN.md, "Real components in tests").
"""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from archive.store import (
    LocalStore,
    ObjectStore,
    S3Store,
    check_key,
    check_key_privacy,
    open_store,
    retention_until,
)
from core.errors import (
    EXIT_COMPONENT,
    ConfigError,
    ObjectConflict,
    ObjectCorrupt,
    ObjectMissing,
    RetentionViolation,
    StoreError,
    UnsafeKey,
)
from core.manifest import sha256_hex
from tests.conftest import DUMMY_SECRET, Buckets

CST = timezone(timedelta(hours=8))
KEY = "110105/2026/12/PAC20261201000001/v1-issue/bundle.pdf"

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


def _future(days: int = 30) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)


# --- both stores under one contract --------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """A store under test and a way to change one of its objects without it knowing."""

    store: ObjectStore
    tamper: Callable[[str, bytes], None]


def _local_backend(root: Path) -> Backend:
    store = LocalStore(root)

    def tamper(key: str, data: bytes) -> None:
        path = root / key
        path.chmod(0o644)
        path.write_bytes(data)

    return Backend(store, tamper)


def _s3_backend(endpoint: str, bucket: str, raw: Any, *, prefix: str = "archive") -> Backend:
    store = S3Store(bucket=bucket, prefix=prefix, endpoint_url=endpoint)

    def tamper(key: str, data: bytes) -> None:
        # Keep the recorded hash, as a careless or hostile writer would: only the bytes change.
        old = raw.head_object(Bucket=bucket, Key=f"{prefix}/{key}")["Metadata"]
        raw.put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=data, Metadata=old)

    return Backend(store, tamper)


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return _local_backend(tmp_path / "archive")
    endpoint = request.getfixturevalue("moto_endpoint")
    made: Buckets = request.getfixturevalue("buckets")
    return _s3_backend(endpoint, made.plain, request.getfixturevalue("raw_s3"))


def _put(store: ObjectStore, key: str, data: bytes, **kwargs: Any) -> Any:
    return store.put(key, data, sha256=sha256_hex(data), **kwargs)


def test_both_stores_keep_the_protocol(backend: Backend) -> None:
    assert isinstance(backend.store, ObjectStore)


def test_put_get_round_trip(backend: Backend) -> None:
    until = _future()
    result = _put(backend.store, KEY, PDF, retain_until=until, content_type="application/pdf")

    assert (result.key, result.created, result.sha256, result.size) == (KEY, True, sha256_hex(PDF), len(PDF))
    assert backend.store.get(KEY) == PDF
    assert backend.store.get(KEY, sha256=sha256_hex(PDF).upper()) == PDF
    info = backend.store.head(KEY)
    assert info is not None
    assert (info.key, info.size, info.sha256, info.retain_until) == (KEY, len(PDF), sha256_hex(PDF), until)
    assert abs(info.modified - datetime.now(UTC)) < timedelta(minutes=5)


def test_same_bytes_again_is_success_not_created(backend: Backend) -> None:
    assert _put(backend.store, KEY, PDF).created is True
    again = _put(backend.store, KEY, PDF)
    assert (again.created, again.sha256, again.size) == (False, sha256_hex(PDF), len(PDF))


def test_other_bytes_conflict_and_never_overwrite(backend: Backend) -> None:
    _put(backend.store, KEY, PDF)
    with pytest.raises(ObjectConflict, match="PAC20261201000001"):
        _put(backend.store, KEY, PDF + b"changed")
    assert backend.store.get(KEY) == PDF


def test_put_refuses_bytes_that_do_not_match_their_hash(backend: Backend) -> None:
    with pytest.raises(ObjectCorrupt):
        backend.store.put(KEY, PDF, sha256=sha256_hex(b"something else"))
    assert backend.store.head(KEY) is None
    with pytest.raises(ValueError):
        backend.store.put(KEY, PDF, sha256="not-a-hash")


def test_get_with_the_wrong_hash_is_corrupt(backend: Backend) -> None:
    _put(backend.store, KEY, PDF)
    with pytest.raises(ObjectCorrupt, match="PAC20261201000001"):
        backend.store.get(KEY, sha256=sha256_hex(b"what the index says"))


def test_an_object_changed_behind_the_store_is_caught_on_read(backend: Backend) -> None:
    _put(backend.store, KEY, PDF)
    backend.tamper(KEY, PDF.replace(b"%%EOF", b"%%EOX"))

    with pytest.raises(ObjectCorrupt, match="PAC20261201000001"):
        backend.store.get(KEY)
    with pytest.raises(ObjectCorrupt):
        backend.store.get(KEY, sha256=sha256_hex(PDF))


def test_the_bytes_held_now_are_hashed_past_every_check(backend: Backend) -> None:
    """What an incident record says the store holds: the hash of the changed bytes, not the recorded one."""
    _put(backend.store, KEY, PDF)
    assert backend.store.observed_sha256(KEY) == sha256_hex(PDF)
    changed = PDF.replace(b"%%EOF", b"%%EOX")
    backend.tamper(KEY, changed)
    assert backend.store.observed_sha256(KEY) == sha256_hex(changed)
    assert backend.store.observed_sha256("110105/2026/12/PAC20261201000002/v1-issue/customer.pdf") is None


def test_missing_objects(backend: Backend) -> None:
    assert backend.store.head(KEY) is None
    with pytest.raises(ObjectMissing) as caught:
        backend.store.get(KEY)
    assert isinstance(caught.value, KeyError)
    backend.store.delete(KEY)  # nothing there: nothing to refuse


def test_list_filters_by_prefix_in_key_order(backend: Backend) -> None:
    keys = [
        "110105/2026/12/PAC20261201000002/v1-issue/bundle.pdf",
        "110105/2026/12/PAC20261201000001/v2-endorse/bundle.pdf",
        "110105/2026/12/PAC20261201000001/v1-issue/manifest.json",
        "110105/2026/12/PAC20261201000001/v1-issue/bundle.pdf",
        "110105/2026/11/PAC20261130000009/v1-issue/bundle.pdf",
        "310101/2026/12/PAC20261201000003/v1-issue/bundle.pdf",
        "audits/A1/report.json",
    ]
    for i, key in enumerate(keys):
        _put(backend.store, key, PDF + bytes([i]))

    listed = list(backend.store.list("110105/2026/12/"))
    assert [o.key for o in listed] == sorted(k for k in keys if k.startswith("110105/2026/12/"))
    assert all(o.size == len(PDF) + 1 for o in listed)
    assert [o.key for o in backend.store.list()] == sorted(keys)
    assert [o.key for o in backend.store.list("110105/2026/12/PAC20261201000001/v")] == sorted(
        k for k in keys if "PAC20261201000001" in k
    )
    # A plain string prefix, as S3 has it: not only whole segments.
    assert [o.key for o in backend.store.list("1101")] == sorted(k for k in keys if k.startswith("1101"))
    assert list(backend.store.list("999999/")) == []


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../x",
        "a/../../etc/passwd",
        "/abs/key.pdf",
        "a//b",
        "a/b/",
        "./a",
        "a/.hidden",
        "110105/2026/12/PAC 001/bundle.pdf",
        "110105/2026/12/张三/bundle.pdf",
        "110105\\2026\\bundle.pdf",
        "a" * 513,
        "x/" + "b" * 201,
    ],
)
def test_unsafe_keys_are_refused(backend: Backend, key: str) -> None:
    with pytest.raises(UnsafeKey) as caught:
        _put(backend.store, key, PDF)
    # The message never repeats the key: it may be the very personal data being refused.
    assert "1990030712" not in str(caught.value) and "13812345678" not in str(caught.value)
    with pytest.raises(UnsafeKey):
        check_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "110105/2026/12/11010519900307123X/bundle.pdf",
        "110105/2026/12/v1-id110105199003071234/bundle.pdf",
        "110105/2026/12/PAC20261201000001/tel-13812345678.pdf",
    ],
)
def test_keys_with_personal_data_shapes_fail_the_writers_check(key: str) -> None:
    with pytest.raises(UnsafeKey) as caught:
        check_key_privacy(key, document_numbers=("PAC20261201000001",))
    assert "1990030712" not in str(caught.value) and "13812345678" not in str(caught.value)


@pytest.mark.parametrize(
    "policy_no",
    [
        "PDAA202644030500000001",  # PICC's commercial motor: 4 letters + 18 digits
        "110105199003071234",  # 18 digits, even one with a resident ID's shape
        "12110105202600000002",  # 20 digits
        "PDAA13812345678",  # a mobile number's shape inside a document number
    ],
)
def test_real_document_numbers_pass_every_key_check(policy_no: str) -> None:
    key = f"110105/2026/12/{policy_no}/v1-issue/customer-ghijklmnopab.pdf"
    assert check_key(key) == key
    assert check_key_privacy(key, document_numbers=(policy_no,)) == key


@pytest.mark.parametrize(
    "key",
    [
        KEY,
        # A 17-digit run inside a policy number, with "1113007000001" in it: neither ID- nor phone-shaped.
        "110105/2026/11/PAUT20261113007000001/v1-issue/customer.pdf",
        "audits/2026-12-01_a.b-c/report.csv",
    ],
)
def test_ordinary_keys_pass(key: str) -> None:
    assert check_key(key) == key


def test_delete_is_refused_inside_retention_and_allowed_after(backend: Backend) -> None:
    until = _future(days=10)
    _put(backend.store, KEY, PDF, retain_until=until)

    with pytest.raises(RetentionViolation, match="第87条"):
        backend.store.delete(KEY, now=until - timedelta(seconds=1))
    with pytest.raises(RetentionViolation):
        backend.store.delete(KEY)  # the clock is still inside retention
    assert backend.store.get(KEY) == PDF

    backend.store.delete(KEY, now=until)
    assert backend.store.head(KEY) is None
    assert list(backend.store.list()) == []
    # The key is free again only because retention ended: a new put is a new object.
    assert _put(backend.store, KEY, PDF + b"v2").created is True


def test_delete_without_retention_is_allowed(backend: Backend) -> None:
    _put(backend.store, KEY, PDF)
    backend.store.delete(KEY)
    assert backend.store.head(KEY) is None


def test_retention_until_one_year_term_keeps_five_years() -> None:
    start = datetime(2026, 12, 1, tzinfo=CST)
    end = datetime(2027, 12, 1, tzinfo=CST)  # 至2027年11月30日二十四时止
    assert retention_until(start, end) == datetime(2032, 12, 1, tzinfo=CST)
    # A short-term policy is a term of one year or less too.
    assert retention_until(start, datetime(2027, 1, 1, tzinfo=CST)) == datetime(2032, 1, 1, tzinfo=CST)


def test_retention_until_longer_term_keeps_ten_years() -> None:
    start = datetime(2026, 12, 1, tzinfo=CST)
    assert retention_until(start, datetime(2029, 12, 1, tzinfo=CST)) == datetime(2039, 12, 1, tzinfo=CST)
    # One second past a year is a longer term.
    end = datetime(2027, 12, 1, 0, 0, 1, tzinfo=CST)
    assert retention_until(start, end) == datetime(2037, 12, 1, 0, 0, 1, tzinfo=CST)


def test_retention_until_leap_day_and_bad_input() -> None:
    start = datetime(2028, 2, 29, tzinfo=CST)
    end = datetime(2029, 3, 1, tzinfo=CST)  # 至2029年2月28日二十四时止: one year
    # 29 Feb 2034 does not exist: the next day keeps "at least five years".
    assert retention_until(datetime(2027, 3, 1, tzinfo=CST), start) == datetime(2033, 3, 1, tzinfo=CST)
    assert retention_until(start, end) == datetime(2034, 3, 1, tzinfo=CST)
    with pytest.raises(ValueError):
        retention_until(datetime(2026, 12, 1), datetime(2027, 12, 1))
    with pytest.raises(ValueError):
        retention_until(end, start)


# --- S3 specifics --------------------------------------------------------------------------------


def test_object_lock_bucket_gets_compliance_retention(
    moto_endpoint: str, buckets: Buckets, raw_s3: Any
) -> None:
    store = S3Store(bucket=buckets.locked, endpoint_url=moto_endpoint)
    until = _future(days=3)
    assert _put(store, KEY, PDF, retain_until=until).created is True

    # moto 5.2 answers GetObjectRetention with a 500; HEAD carries the same two fields.
    head = raw_s3.head_object(Bucket=buckets.locked, Key=KEY)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"].astimezone(UTC) == until
    assert store.head(KEY).retain_until == until
    assert _put(store, KEY, PDF, retain_until=until).created is False
    with pytest.raises(ObjectConflict):
        _put(store, KEY, PDF + b"x", retain_until=until)

    with pytest.raises(RetentionViolation):
        store.delete(KEY, now=until - timedelta(days=1))
    # Past our own check, the server's lock (on its own clock) still holds: that is refused too.
    with pytest.raises(RetentionViolation, match="still locked"):
        store.delete(KEY, now=until + timedelta(days=1))
    assert store.get(KEY) == PDF


def test_plain_bucket_puts_no_lock(moto_endpoint: str, buckets: Buckets, raw_s3: Any) -> None:
    store = S3Store(bucket=buckets.plain, endpoint_url=moto_endpoint)
    _put(store, KEY, PDF, retain_until=_future())
    head = raw_s3.head_object(Bucket=buckets.plain, Key=KEY)
    assert "ObjectLockMode" not in head
    assert head["Metadata"]["sha256"] == sha256_hex(PDF)


@pytest.mark.parametrize("same_bytes", [True, False])
def test_a_writer_that_wins_the_race_is_never_overwritten(
    moto_endpoint: str, buckets: Buckets, raw_s3: Any, same_bytes: bool
) -> None:
    """Another writer stores the key between the store's look-up and its upload: If-None-Match."""
    store = S3Store(bucket=buckets.locked, endpoint_url=moto_endpoint)
    theirs = PDF if same_bytes else PDF + b"theirs"

    def other_writer_first(**_: Any) -> None:
        raw_s3.put_object(
            Bucket=buckets.locked, Key=KEY, Body=theirs, Metadata={"sha256": sha256_hex(theirs)}
        )

    store.client.meta.events.register_first("before-call.s3.PutObject", other_writer_first)
    if same_bytes:
        assert _put(store, KEY, PDF).created is False
    else:
        with pytest.raises(ObjectConflict):
            _put(store, KEY, PDF)
    versions = raw_s3.list_object_versions(Bucket=buckets.locked, Prefix=KEY)["Versions"]
    assert len(versions) == 1  # ours was refused, not stacked on top
    assert raw_s3.get_object(Bucket=buckets.locked, Key=KEY)["Body"].read() == theirs


def test_threads_racing_on_one_key(moto_endpoint: str, buckets: Buckets) -> None:
    store = S3Store(bucket=buckets.plain, endpoint_url=moto_endpoint)
    outcomes: list[str] = []
    start = threading.Barrier(6)

    def writer(i: int) -> None:
        start.wait()
        try:
            outcomes.append("created" if _put(store, KEY, PDF + bytes([i])).created else "same")
        except ObjectConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 5 + ["created"]


def test_unreachable_endpoint_is_a_store_error_quickly(aws_env: None) -> None:
    store = S3Store(
        bucket="archive", endpoint_url="http://127.0.0.1:9", connect_timeout=1, read_timeout=1, max_attempts=1
    )
    began = time.monotonic()
    with pytest.raises(StoreError) as caught:
        _put(store, KEY, PDF)
    assert time.monotonic() - began < 10
    assert caught.value.exit_code == EXIT_COMPONENT
    message = str(caught.value)
    assert "127.0.0.1:9" in message and "archive" in message
    assert DUMMY_SECRET not in message and "dummy-key-id" not in message
    with pytest.raises(StoreError):
        store.get(KEY)


def test_missing_bucket_is_a_store_error(moto_endpoint: str, aws_env: None) -> None:
    store = S3Store(bucket="no-such-bucket", endpoint_url=moto_endpoint)
    with pytest.raises(StoreError, match="no-such-bucket"):
        store.head(KEY)


def test_describe_names_the_place_not_the_secret(
    moto_endpoint: str, buckets: Buckets, tmp_path: Path
) -> None:
    s3 = S3Store(bucket=buckets.plain, prefix="/archive/", endpoint_url=moto_endpoint)
    assert s3.describe() == f"s3://{buckets.plain}/archive/ (endpoint {moto_endpoint})"
    assert DUMMY_SECRET not in s3.describe()
    assert LocalStore(tmp_path).describe() == tmp_path.as_uri()


def test_open_store_by_url(moto_endpoint: str, buckets: Buckets, tmp_path: Path) -> None:
    by_file_url = open_store(tmp_path.as_uri())
    assert isinstance(by_file_url, LocalStore) and by_file_url.root == tmp_path
    assert isinstance(open_store("var/archive"), LocalStore)
    s3 = open_store(f"s3://{buckets.plain}/archive", s3_endpoint=moto_endpoint)
    assert isinstance(s3, S3Store)
    _put(s3, KEY, PDF)
    assert s3.get(KEY) == PDF
    for bad in ("ftp://host/x", "s3://key:secret@bucket/x", "file://otherhost/x", "", "s3://Bad_Bucket/x"):
        with pytest.raises(ConfigError):
            open_store(bad)


# --- LocalStore specifics ------------------------------------------------------------------------


def test_local_objects_are_read_only_and_have_a_sidecar(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    _put(store, KEY, PDF, retain_until=_future(), content_type="application/pdf")
    assert stat.S_IMODE((tmp_path / KEY).stat().st_mode) == 0o444
    assert (tmp_path / ".meta" / f"{KEY}.json").is_file()
    assert sorted(p.name for p in (tmp_path / KEY).parent.iterdir()) == ["bundle.pdf"]  # no temp left


def test_local_list_skips_temp_files_and_metadata(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    _put(store, KEY, PDF)
    # What a writer killed mid-way leaves behind: a half temp file next to where the object would go.
    (tmp_path / KEY).with_name(".customer.pdf.0123abcd.tmp").write_bytes(PDF[:100])
    assert [o.key for o in store.list()] == [KEY]
    assert store.head(KEY.replace("bundle", "customer")) is None
    assert _put(store, KEY.replace("bundle", "customer"), PDF).created is True


def test_local_object_without_sidecar_after_a_crash(tmp_path: Path) -> None:
    """A crash between publishing the object and its sidecar: re-put repairs, nothing is guessed."""
    store = LocalStore(tmp_path)
    until = _future()
    _put(store, KEY, PDF, retain_until=until)
    (tmp_path / ".meta" / f"{KEY}.json").unlink()

    with pytest.raises(ObjectCorrupt, match="no recorded SHA-256"):
        store.get(KEY)
    assert store.get(KEY, sha256=sha256_hex(PDF)) == PDF
    with pytest.raises(RetentionViolation, match="unknown"):
        store.delete(KEY, now=until + timedelta(days=1))

    assert _put(store, KEY, PDF, retain_until=until).created is False
    assert store.get(KEY) == PDF
    assert store.head(KEY).retain_until == until


def test_local_re_put_hashes_the_stored_file(tmp_path: Path) -> None:
    """created=False promises the key holds these bytes, so a damaged copy is reported, not blessed."""
    backend = _local_backend(tmp_path)
    _put(backend.store, KEY, PDF)
    backend.tamper(KEY, PDF[::-1])
    with pytest.raises(ObjectCorrupt):
        _put(backend.store, KEY, PDF)
    assert (tmp_path / KEY).read_bytes() == PDF[::-1]  # reported, and left as evidence


def test_local_key_under_an_object_conflicts(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    _put(store, "a/b", PDF)
    with pytest.raises(ObjectConflict):
        _put(store, "a/b/c", PDF)
    with pytest.raises(ObjectConflict):
        _put(store, "a", PDF)


@pytest.mark.parametrize("same_bytes", [True, False])
def test_local_two_processes_put_the_same_key(tmp_path: Path, same_bytes: bool) -> None:
    context = multiprocessing.get_context("spawn")
    rounds = 4
    barrier = context.Barrier(2)
    results = context.Queue()
    children = []
    for writer in range(2):
        data = PDF if same_bytes else PDF + bytes([writer])
        children.append(
            context.Process(target=_many_puts, args=(str(tmp_path), data, rounds, barrier, results))
        )
    for child in children:
        child.start()
    outcomes = [results.get(timeout=60) for _ in range(2 * rounds)]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0

    store = LocalStore(tmp_path)
    for n in range(rounds):
        key = f"{KEY}.{n}"
        mine = sorted(o for k, o, _ in outcomes if k == key)
        assert mine == (["created", "same"] if same_bytes else ["conflict", "created"])
        winner = next(d for k, o, d in outcomes if k == key and o == "created")
        assert store.get(key) == winner
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def _many_puts(root: str, data: bytes, rounds: int, barrier: Any, results: Any) -> None:
    store = LocalStore(Path(root))
    for n in range(rounds):
        key = f"{KEY}.{n}"
        barrier.wait()
        try:
            outcome = "created" if _put(store, key, data).created else "same"
        except ObjectConflict:
            outcome = "conflict"
        results.put((key, outcome, data))


def test_local_store_error_on_unwritable_root(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    store = LocalStore(blocker / "archive")
    with pytest.raises(StoreError) as caught:
        _put(store, KEY, PDF)
    assert caught.value.exit_code == EXIT_COMPONENT
    assert os.fspath(blocker) in str(caught.value)
