"""Filing into the archive on real components: LibreOffice, a folder or moto's S3 server, SQLite or a real
PostgreSQL. Each DESIGN.md invariant has a test here: nothing lost, idempotent, write order and crash
recovery (including kill -9), immutable versions, customer copy ≠ archive copy, bad input never crashes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from io import BytesIO
from pathlib import Path

import pytest
from pypdf import PdfReader

from archive.index import Index
from archive.store import FileSystem, LocalStore, check_key_privacy
from archive.versions import part_key
from bench.synth import make_batch
from core.manifest import Part
from core.records import parse_record
from pipeline.batchfile import read_batch
from pipeline.documents import DocumentMaker
from pipeline.images import RecordImageError
from pipeline.report import ALREADY_ARCHIVED, ARCHIVED, REJECTED
from tests.conftest import DUMMY_SECRET, REPO, add_users, write_batch
from usecases.filing import Filed, Filing
from usecases.run import run_batch

KEY = b"filing-test-hmac-key-0123456789"
ISSUANCE = [sys.executable, "-m", "cli.main"]
ID_RE = re.compile(r'"id_no": "([0-9]{17}[0-9X])"')


@pytest.fixture(scope="module")
def sealing_maker(registry, pool, tmp_path_factory):
    from stamps import load_seal_registry

    return DocumentMaker(
        registry=registry,
        converter=pool,
        cache_dir=tmp_path_factory.mktemp("filing-cache"),
        seals=load_seal_registry(),
    )


@pytest.fixture
def local_archive(tmp_path, sealing_maker):
    store = LocalStore(tmp_path / "archive")
    index = Index.open(f"sqlite:///{tmp_path / 'index.sqlite'}", hmac_key=KEY)
    yield Filing(store=store, index=index, maker=sealing_maker, operator="tester")
    index.close()


def _objects(filing: Filing) -> dict[str, str]:
    return {info.key: info.sha256 or "" for info in filing.store.list("")}


def _statuses(report) -> list[str]:
    return [o.status for o in sorted(report.outcomes, key=lambda o: o.line)]


def _pages(data: bytes) -> int:
    return len(PdfReader(BytesIO(data)).pages)


def test_every_record_ends_in_one_outcome_and_versions_are_immutable(local_archive, tmp_path):
    folder = tmp_path / "b"
    batch = make_batch(folder, 3, seed=21, endorsements=1, images_per_record=3)
    lines = batch.read_text(encoding="utf-8").splitlines()
    endorsement = json.loads(lines[-1])
    stray = dict(endorsement, record_id="STRAY-1", policy_no="PZZZ99999999", endorsement_no="EZZZ99999999")
    write_batch(folder, [*lines[:3], '{"kind": ', lines[3], stray])
    report = run_batch(batch, filing=local_archive, workers=3)
    assert _statuses(report) == [ARCHIVED, ARCHIVED, ARCHIVED, REJECTED, ARCHIVED, REJECTED]
    counts = report.counts()
    assert counts == {"records": 6, "archived": 4, "already_archived": 0, "rejected": 2}
    index, store = local_archive.index, local_archive.store

    policy_no = endorsement["policy_no"]
    v1, v2 = index.versions(policy_no)
    assert (v1.kind, v2.kind) == ("issue", "endorsement")
    customer1 = store.get(v1.customer_key, sha256=v1.customer_sha256)
    bundle1 = store.get(v1.bundle_key, sha256=v1.bundle_sha256)
    customer2 = store.get(v2.customer_key, sha256=v2.customer_sha256)
    # customer copy ≠ archive copy: the images only in the archive copy
    images = json.loads(store.get(v1.manifest_key))["images"]
    assert len(images) == 3 and _pages(bundle1) == _pages(customer1) + sum(i["pages"] for i in images)
    outline = [o.title for o in PdfReader(BytesIO(bundle1)).outline if not isinstance(o, list)]
    assert outline == ["保单", "条款", "影像资料"]
    # the endorsement version: the customer copy grew by the sealed endorsement, v1 is untouched
    assert _pages(customer2) > _pages(customer1)
    assert (
        PdfReader(BytesIO(customer2)).pages[0].extract_text()
        == PdfReader(BytesIO(customer1)).pages[0].extract_text()
    )
    manifest2 = json.loads(store.get(v2.manifest_key, sha256=v2.manifest_sha256))
    assert manifest2["previous_version"]["manifest"] == v1.manifest_key
    assert manifest2["record"] == endorsement and manifest2["seal"]["id"]
    for part in manifest2["parts"]:
        assert store.head(part["key"]).sha256 == part["sha256"]
    # keys carry no personal data: branch/yyyy/mm/policy_no/v{n}-{kind}/…
    for key in _objects(local_archive):
        assert re.fullmatch(
            r"\d{6}/\d{4}/\d{2}/[A-Z0-9]+/v\d+-(issue|endorsement)/[a-z]+(-[a-p]{12})?\.(pdf|json)", key
        )
    assert index.verify_ledger() == []


def test_rerun_archives_nothing_twice(local_archive, tmp_path):
    batch = make_batch(tmp_path / "b", 3, seed=22, endorsements=1, images_per_record=1)
    first = run_batch(batch, filing=local_archive, workers=2)
    assert first.counts()["archived"] == 4
    objects, ledger = _objects(local_archive), local_archive.index.count("ledger")
    again = run_batch(batch, filing=local_archive, workers=2)
    assert again.counts() == {"records": 4, "archived": 0, "already_archived": 4, "rejected": 0}
    assert _objects(local_archive) == objects
    assert local_archive.index.count("ledger") == ledger + 2  # batch started + finished, nothing else
    assert local_archive.index.count("documents") == 4


def test_same_record_id_other_content_is_a_conflict_never_an_overwrite(local_archive, tmp_path):
    folder = tmp_path / "b"
    batch = make_batch(folder, 2, seed=23, images_per_record=1)
    run_batch(batch, filing=local_archive, workers=2)
    objects = _objects(local_archive)
    records = [json.loads(line) for line in batch.read_text(encoding="utf-8").splitlines()]
    records[0]["special_terms"] = ["改过的特别约定"]
    changed = write_batch(folder, records, name="changed.jsonl")
    report = run_batch(changed, filing=local_archive, workers=2)
    assert _statuses(report) == [REJECTED, ALREADY_ARCHIVED]
    (reason,) = sorted(report.outcomes, key=lambda o: o.line)[0].reasons
    assert reason.field == "record_id" and "conflict" in reason.message
    assert _objects(local_archive) == objects


def test_same_policy_no_from_another_record_is_refused(local_archive, tmp_path):
    folder = tmp_path / "b"
    batch = make_batch(folder, 1, seed=24, images_per_record=1)
    run_batch(batch, filing=local_archive, workers=1)
    record = json.loads(batch.read_text(encoding="utf-8"))
    record["record_id"] = "ANOTHER-RECORD"
    report = run_batch(write_batch(folder, [record], name="again.jsonl"), filing=local_archive, workers=1)
    assert [r.field for r in report.outcomes[0].reasons] == ["policy_no"]


class PowerCutIndex(Index):
    """An index whose commit of new policies never happens, as when the power fails between the upload
    and the index commit: the project's own seam (the index's public method), not the database."""

    def archive_policies(self, items):
        raise RuntimeError("power cut between the upload and the index commit")


class ManifestlessStore(LocalStore):
    """A real folder store killed before any manifest: the parts it is given land, manifests never do."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.stored_parts: list[str] = []

    def put_many(self, items):
        if any(item.key.endswith("manifest.json") for item in items):
            raise RuntimeError("killed before the manifest")
        self.stored_parts.extend(item.key for item in items)
        return super().put_many(items)


def test_crash_after_manifest_before_index_commit_is_adopted(local_archive, tmp_path, sealing_maker):
    batch = make_batch(tmp_path / "b", 1, seed=25, images_per_record=2)
    cut = PowerCutIndex.open(f"sqlite:///{tmp_path / 'index.sqlite'}", hmac_key=KEY)
    crashing = Filing(store=local_archive.store, index=cut, maker=sealing_maker, operator="tester")
    crashed = run_batch(batch, filing=crashing, workers=1)
    cut.close()
    assert _statuses(crashed) == [REJECTED]
    uploaded = _objects(local_archive)
    assert any(k.endswith("manifest.json") for k in uploaded) and local_archive.index.count("records") == 0

    rerun = run_batch(batch, filing=local_archive, workers=1)
    assert _statuses(rerun) == [ARCHIVED]
    assert _objects(local_archive) == uploaded  # adopted: nothing uploaded twice
    events = [e for e in local_archive.index.ledger_entries() if e.action == "policy.archived"]
    assert len(events) == 1 and events[0].detail["adopted"] is True


def test_crash_before_manifest_leaves_orphans_only(local_archive, tmp_path, sealing_maker):
    batch = make_batch(tmp_path / "b", 1, seed=26, images_per_record=1)
    store = ManifestlessStore(local_archive.store.root)
    crashing = Filing(store=store, index=local_archive.index, maker=sealing_maker, operator="tester")
    run_batch(batch, filing=crashing, workers=1)
    uploaded_parts = store.stored_parts
    assert len(uploaded_parts) == 2 and set(_objects(local_archive)) == set(uploaded_parts)  # no manifest
    report = run_batch(batch, filing=local_archive, workers=1)
    assert _statuses(report) == [ARCHIVED]
    (version,) = local_archive.index.versions(json.loads(batch.read_text(encoding="utf-8"))["policy_no"])
    claimed = {version.customer_key, version.bundle_key, version.manifest_key}
    assert claimed <= set(_objects(local_archive))  # whatever else is there is an orphan for the audit


def test_missing_images_mark_incomplete_and_attach_clears_it(local_archive, tmp_path):
    batch = make_batch(tmp_path / "b", 1, seed=27, images_per_record=1)  # AUTO-COMM needs four kinds
    run_batch(batch, filing=local_archive, workers=1)
    policy_no = json.loads(batch.read_text(encoding="utf-8"))["policy_no"]
    (summary,) = local_archive.index.find(policy_no=policy_no)
    assert not summary.complete and len(summary.missing_images) == 3
    v1 = local_archive.index.versions(policy_no)[0]
    before = local_archive.store.get(v1.bundle_key)
    image = next((tmp_path / "b" / "images").iterdir())
    for kind in summary.missing_images:
        filed = local_archive.attach(policy_no, kind=kind, files=[image], by="CLK9")
    assert filed.version == 4 and filed.missing_images == ()
    (summary,) = local_archive.index.find(policy_no=policy_no)
    assert summary.complete and summary.versions == 4
    versions = local_archive.index.versions(policy_no)
    assert [v.kind for v in versions] == ["issue", "supplement", "supplement", "supplement"]
    assert versions[-1].customer_key == v1.customer_key  # the customer copy does not change
    assert local_archive.store.get(v1.bundle_key) == before  # the original stays byte-identical
    assert _pages(local_archive.store.get(versions[-1].bundle_key)) == _pages(before) + 3


def test_bad_images_reject_the_record_naming_the_image(local_archive, tmp_path):
    folder = tmp_path / "b"
    batch = make_batch(folder, 2, seed=28, images_per_record=2)
    records = [json.loads(line) for line in batch.read_text(encoding="utf-8").splitlines()]
    (folder / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    records[0]["images"][1]["path"] = "images/broken.jpg"
    report = run_batch(write_batch(folder, records, name="bad.jsonl"), filing=local_archive, workers=2)
    first, second = sorted(report.outcomes, key=lambda o: o.line)
    assert first.status == REJECTED and [r.field for r in first.reasons] == ["images[1].path"]
    assert second.status == ARCHIVED


def test_an_image_spoilt_after_its_check_fails_only_its_record(local_archive, tmp_path):
    # A group's images are read after its schedules went to LibreOffice: one spoilt between the check
    # and the filing still fails its own record, naming the image, and no other.
    folder = tmp_path / "b"
    batch = make_batch(folder, 3, seed=29, images_per_record=2)
    raws = [raw for raw in read_batch(batch) if raw.data and raw.data["kind"] == "policy"]
    assert len(raws) >= 2
    (folder / "images" / "spoilt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    raws[0].data["images"][1]["path"] = "images/spoilt.jpg"
    items = [(parse_record(raw.data)[0], raw) for raw in raws]
    results = local_archive.file_policies(items, batch_dir=folder, batch_id=None)
    assert isinstance(results[0], RecordImageError) and results[0].field == "images[1]"
    assert all(isinstance(r, Filed) for r in results[1:])
    assert local_archive.index.policy_row(items[0][0].policy_no) is None
    assert local_archive.index.policy_row(items[1][0].policy_no) is not None


# --- the command line on S3 (moto) and PostgreSQL, and on the embedded defaults -----------------------


def _cli(args, cwd: Path, env: dict[str, str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ISSUANCE, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        timeout=900,
        **kw,
    )


@pytest.mark.parametrize(
    "args", [["seals", "list"], ["find", "--policy", "PAC00000000000000000"]], ids=["table", "print"]
)
def test_a_reader_gone_away_ends_the_command_quietly_with_141(tmp_path, args):
    # ``issuance … | head``: standard output closed before the command writes; whether the output goes
    # through rich (a table) or print, the command ends with 141 and no traceback
    proc = subprocess.Popen(
        [*ISSUANCE, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "ISSUANCE_HMAC_KEY": KEY.decode()},
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "Exception ignored" not in err


def test_the_command_ends_with_the_code_main_returned(monkeypatch, capsys):
    import cli.main as cli

    ended: list[int] = []

    def end(code: int) -> None:
        ended.append(code)
        raise SystemExit(code)  # os._exit would end pytest too

    monkeypatch.setattr(cli.os, "_exit", end)
    for code in (0, 1, 3):
        monkeypatch.setattr(cli, "main", lambda code=code: (print("out"), code)[1])
        with pytest.raises(SystemExit):
            cli.console_main()
    assert ended == [0, 1, 3]
    assert capsys.readouterr().out == "out\n" * 3


def test_cli_on_s3_and_postgresql(tmp_path, moto_endpoint, raw_s3, buckets, postgres_server):
    sample = REPO / "examples" / "sample-batch" / "batch.jsonl"
    env = {
        "ISSUANCE_STORE": f"s3://{buckets.locked}/archive",
        "ISSUANCE_S3_ENDPOINT": moto_endpoint,
        "ISSUANCE_INDEX": postgres_server(),
        "ISSUANCE_HMAC_KEY": KEY.decode(),
        "ISSUANCE_WORKERS": "2",
    }
    result = _cli(["-v", "run", str(sample)], tmp_path, env)
    assert result.returncode == 1, result.stderr  # the sample's bad lines
    assert "9 archived" in result.stdout
    ids = set(ID_RE.findall(sample.read_text(encoding="utf-8")))
    good = json.loads(sample.read_text(encoding="utf-8").splitlines()[4])  # line 5, 欧阳·𠮷祥
    found = _cli(["find", "--id-no", good["insured"]["id_no"], "--json"], tmp_path, env)
    assert found.returncode == 0, found.stderr
    (hit,) = [json.loads(line) for line in found.stdout.splitlines()]
    assert hit["policy_no"] == good["policy_no"] and hit["insured_name"] == "欧阳·𠮷祥"
    add_users({"AUD1": ["auditor"]}, env=env, base=tmp_path)
    read = ["--by", "AUD1", "--purpose", "S3 and PostgreSQL"]
    got = _cli(["get", good["policy_no"], "--copy", "archive", "-o", "bundle.pdf", *read], tmp_path, env)
    assert got.returncode == 0, got.stderr and (tmp_path / "bundle.pdf").read_bytes().startswith(b"%PDF")
    # no raw ID number in any key, in the logs, or in any table of the index
    keys = [o["Key"] for o in raw_s3.list_objects_v2(Bucket=buckets.locked).get("Contents", [])]
    assert keys and not any(i in k for i in ids for k in keys)
    assert not any(i in result.stderr + result.stdout + found.stdout for i in ids)
    assert DUMMY_SECRET not in result.stderr
    index = Index.open(env["ISSUANCE_INDEX"], hmac_key=KEY)
    with index.engine.connect() as conn:
        from archive.index import schema

        for table in schema.metadata.sorted_tables:
            for row in conn.execute(table.select()):
                assert not any(i in str(v) for i in ids for v in row), table.name
    # COMPLIANCE retention on the locked bucket
    head = raw_s3.head_object(Bucket=buckets.locked, Key=keys[0])
    assert head["ObjectLockMode"] == "COMPLIANCE"


def test_cli_get_refuses_a_tampered_object(tmp_path):
    sample = REPO / "examples" / "sample-batch" / "batch.jsonl"
    env = {"ISSUANCE_WORKERS": "2"}
    assert _cli(["run", str(sample)], tmp_path, env).returncode == 1
    policy_no = json.loads(sample.read_text(encoding="utf-8").splitlines()[2])["policy_no"]
    index = Index.open(
        f"sqlite:///{tmp_path / 'var' / 'index.sqlite'}",
        hmac_key=(tmp_path / "var/secrets/hmac.key").read_bytes().strip(),
    )
    (version,) = index.versions(policy_no)
    target = tmp_path / "var" / "archive" / version.customer_key
    os.chmod(target, 0o644)
    target.write_bytes(target.read_bytes().replace(b"%%EOF", b"%%EOG"))
    add_users({"CLK9": ["clerk"]}, env={**os.environ, **env}, base=tmp_path)
    got = _cli(
        ["get", policy_no, "-o", "copy.pdf", "--by", "CLK9", "--purpose", "tamper test"], tmp_path, env
    )
    assert got.returncode != 0 and "sha" in got.stderr.lower()
    assert not (tmp_path / "copy.pdf").exists()
    # the secret key file is readable by its owner only
    assert (tmp_path / "var/secrets/hmac.key").stat().st_mode & 0o077 == 0


def _run_offices(root: Path) -> set[int]:
    """LibreOffice processes started by ``issuance run`` in ``root`` (their profiles live in its scratch
    folder; other runs on the machine are not this test's)."""
    import psutil

    found = set()
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["name"] == "soffice.bin" and f"{root}/var/scratch/run-" in cmdline:
            found.add(proc.info["pid"])
    return found


def test_kill_9_at_any_point_then_rerun_archives_everything_exactly_once(tmp_path):
    folder = tmp_path / "batch"
    batch = make_batch(folder, 10, seed=29, endorsements=3, images_per_record=2)
    expected = len(batch.read_text(encoding="utf-8").splitlines())
    env = {"ISSUANCE_WORKERS": "2", "ISSUANCE_HMAC_KEY": KEY.decode()}
    offices_before = _run_offices(tmp_path)
    for delay in (0.7, 2.0, 3.0, 4.5, 6.0):  # 0.7 s: LibreOffice still starting
        proc = subprocess.Popen(
            [*ISSUANCE, "run", str(batch), "--no-progress"],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO), **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its LibreOffice children, mid-flight
        proc.wait()
    final = _cli(["run", str(batch), "--report", "final.json", "--no-progress"], tmp_path, env)
    assert final.returncode == 0, final.stderr
    # no LibreOffice outlives the runs killed (each bridge ends its LibreOffice within a second or two)
    deadline = time.monotonic() + 10
    while _run_offices(tmp_path) - offices_before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _run_offices(tmp_path) - offices_before
    counts = json.loads((tmp_path / "final.json").read_text())["counts"]
    assert counts["archived"] + counts["already_archived"] == expected and counts["rejected"] == 0
    index = Index.open(f"sqlite:///{tmp_path / 'var' / 'index.sqlite'}", hmac_key=KEY)
    store = LocalStore(tmp_path / "var" / "archive")
    assert index.count("records") == expected
    with index.engine.connect() as conn:
        from sqlalchemy import text

        versions = conn.execute(text("SELECT policy_no, version FROM documents ORDER BY 1, 2")).all()
    by_policy: dict[str, list[int]] = {}
    for policy_no, version in versions:
        by_policy.setdefault(policy_no, []).append(version)
    assert len(by_policy) == 10
    assert all(v == list(range(1, len(v) + 1)) for v in by_policy.values())  # no gaps, no doubles
    assert sum(len(v) for v in by_policy.values()) == expected
    for policy_no in by_policy:
        for v in index.versions(policy_no):
            for key, digest in ((v.customer_key, v.customer_sha256), (v.bundle_key, v.bundle_sha256)):
                assert store.get(key, sha256=digest)
    assert index.verify_ledger() == []


def test_crash_between_manifest_and_its_hash_sidecar_is_recovered(local_archive, tmp_path):
    """kill -9 after LocalStore links manifest.json but before its sidecar lands: the re-run adopts it."""
    batch = make_batch(tmp_path / "b", 1, seed=30, images_per_record=1)
    store = local_archive.store
    files = store.files

    class DieOnManifestSidecar(FileSystem):
        def replace(self, source: Path, target: Path) -> None:
            if target.name == "manifest.json.json":  # the manifest's sidecar (.meta/{key}.json)
                raise SystemExit("killed between the object and its sidecar")  # never caught as an error
            super().replace(source, target)

    store.files = DieOnManifestSidecar()
    try:
        with pytest.raises(SystemExit):
            local_archive.file_policy(
                parse_policy(batch), raw=_raw(batch), batch_dir=batch.parent, batch_id=None
            )
    finally:
        store.files = files
    manifest = next(k for k in _objects(local_archive) if k.endswith("manifest.json"))
    assert local_archive.store.head(manifest).sha256 is None  # the half-published state
    report = run_batch(batch, filing=local_archive, workers=1)
    assert _statuses(report) == [ARCHIVED]
    assert local_archive.store.head(manifest).sha256  # completed
    events = [e for e in local_archive.index.ledger_entries() if e.action == "policy.archived"]
    assert events[0].detail["adopted"] is True


def _raw(batch: Path):
    return next(iter(read_batch(batch)))


def parse_policy(batch: Path):
    return parse_record(_raw(batch).data)[0]


def test_part_names_never_look_like_a_phone_number():
    """A digest like …13812345678… must not put a mobile-number shape into an object key."""

    class Fixed(Part):
        sha256 = "a13812345678" + "0" * 52

    key = part_key("110105/2026/12/PAC20261201000001/v1-issue", Fixed("customer.pdf", b""))
    check_key_privacy(key, document_numbers=("PAC20261201000001",))  # raises for a phone or ID shape
    assert key.endswith("/customer-ahjohijklmno.pdf")
