"""The archive's one writer of versions (``archive.versions``), on a real folder store and a real index
(SQLite and PostgreSQL, ``index_url``).

The crash these tests make is the one DESIGN.md invariant 3 is about: the parts and the manifest are
stored, the index commit never happens. It is injected through the index's own public methods (a
subclass whose commit fails, as a power cut would) and the next attempt, on the real index, must adopt
what was stored, for an endorsement and a reissue alike, uploading nothing twice. The version's parts
here are stand-in bytes (the writer never reads them) except in the end-to-end endorsement test.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from archive.index import Index
from archive.reissue import ReissueRequest, reissue
from archive.store import LocalStore
from archive.versions import ArchivedPolicies, Draft, Filed, PolicyPlan, VersionWriter, same_record
from bench.synth import make_batch
from core.errors import FiledByAnother, ObjectMissing, VersionRefused
from core.manifest import MarkedCopy, Part, ReissueMark
from core.records import Endorsement, Policy, RawRecord, content_hash, parse_record
from pipeline.batchfile import read_batch
from usecases.filing import Filing
from usecases.run import run_batch

KEY = b"versions-test-hmac-key-0123456789"
NOW = datetime(2026, 3, 5, 10, 30, tzinfo=ZoneInfo("Asia/Shanghai"))


class PowerCut(Index):
    """An index whose commits named in ``cut`` never happen: the power fails after the upload."""

    cut: frozenset[str] = frozenset()

    def archive_policies(self, items):
        if "archive_policies" in self.cut:
            raise RuntimeError("power cut before the index commit")
        return super().archive_policies(items)

    def archive_version(self, **kwargs):
        if "archive_version" in self.cut:
            raise RuntimeError("power cut before the index commit")
        return super().archive_version(**kwargs)

    def archive_reissue(self, **kwargs):
        if "archive_reissue" in self.cut:
            raise RuntimeError("power cut before the index commit")
        return super().archive_reissue(**kwargs)


class StandInMarker:
    """A ``archive.reissue.Marker`` that appends a line instead of rendering a mark (no LibreOffice)."""

    template_version = "sha256:" + "0" * 64

    def mark(self, pdf: bytes, mark: ReissueMark) -> MarkedCopy:
        marked = pdf + f"\n% {mark.label}\n".encode()
        return MarkedCopy(marked, 1, b"", self.template_version, (), len(pdf))


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Path:
    """Two policies and one endorsement of the first."""
    return make_batch(
        tmp_path_factory.mktemp("versions-batch"), 2, seed=71, endorsements=1, images_per_record=1
    )


@pytest.fixture
def archive(index_url, tmp_path):
    store = LocalStore(tmp_path / "store")
    index = Index.open(index_url, hmac_key=KEY)
    yield store, index, VersionWriter(store=store, index=index, operator="tester")
    index.close()


def _records(batch: Path) -> list[tuple[Policy | Endorsement, RawRecord]]:
    return [(parse_record(raw.data)[0], raw) for raw in read_batch(batch)]


def _objects(store: LocalStore) -> dict[str, str]:
    return {info.key: info.sha256 or "" for info in store.list("")}


def _stand_ins(label: str) -> list[Part]:
    customer = Part("customer.pdf", f"%PDF-1.4 customer copy, {label}\n".encode(), 1)
    return [
        customer,
        Part("bundle.pdf", customer.data + f"% images, {label}\n".encode(), 2, extends=customer),
    ]


def _file_first(writer: VersionWriter, policy: Policy, raw: RawRecord) -> Filed:
    plan = writer.plan_policy(policy, raw, missing=())
    draft = plan.draft(_stand_ins(policy.policy_no), images=(), templates={}, seal=None, batch_id=None)
    (filed,) = writer.file_policies([(plan, draft)], batch_id=None)
    assert isinstance(filed, Filed), filed
    return filed


def _file_endorsement(writer: VersionWriter, endorsement: Endorsement, raw: RawRecord, label: str) -> Filed:
    """What ``Filing.file_endorsement`` asks of the writer, with stand-in documents."""
    index = writer.index
    row = index.policy_row(endorsement.policy_no)
    previous = index.versions(endorsement.policy_no)[-1]
    slot = writer.next_slot(row, previous, "endorsement")
    sha = content_hash(raw.data)
    stored = writer.adopt(slot, same=same_record(sha))
    if stored is None:
        draft = Draft(
            parts=_stand_ins(label),
            clerk=endorsement.issued_by,
            record=raw.data,
            record_sha256=sha,
            previous={"version": str(previous.version), "manifest": previous.manifest_key},
        )
        stored = writer.publish(slot, draft)
    before = ArchivedPolicies(store=writer.store, index=index).get(endorsement.policy_no)
    return writer.commit_endorsement(
        slot, stored, endorsement, raw=raw, record_sha256=sha, batch_id=None, before=before
    )


def test_an_endorsement_stored_but_not_indexed_is_adopted(archive, index_url, batch):
    store, index, writer = archive
    (policy, policy_raw), _, (endorsement, raw) = _records(batch)
    _file_first(writer, policy, policy_raw)
    cut = PowerCut.open(index_url, hmac_key=KEY)
    cut.cut = frozenset({"archive_version"})
    with pytest.raises(RuntimeError, match="power cut"):
        _file_endorsement(VersionWriter(store=store, index=cut, operator="tester"), endorsement, raw, "first")
    cut.close()
    stored = _objects(store)
    (manifest_key,) = [k for k in stored if k.endswith("/v2-endorsement/manifest.json")]
    assert len(index.versions(policy.policy_no)) == 1

    # the next attempt makes other documents (a new run, a new time): what was stored wins, unchanged
    filed = _file_endorsement(writer, endorsement, raw, "second")
    assert filed.adopted and filed.version == 2 and filed.keys[-1] == manifest_key
    assert _objects(store) == stored  # nothing uploaded twice
    v2 = index.versions(policy.policy_no)[-1]
    assert (v2.kind, v2.manifest_key, v2.record_id) == ("endorsement", manifest_key, endorsement.record_id)
    body = json.loads(store.get(manifest_key, sha256=v2.manifest_sha256))
    assert store.get(v2.customer_key, sha256=v2.customer_sha256) == _stand_ins("first")[0].data
    assert body["record_sha256"] == content_hash(raw.data)
    (event,) = [
        e for e in index.ledger_entries(subject=policy.policy_no) if e.action == "endorsement.archived"
    ]
    assert event.detail["adopted"] is True and event.detail["manifest"] == manifest_key
    assert index.verify_ledger() == []


def test_another_records_leftover_is_refused_and_an_incomplete_one_is_not_adopted(archive, batch):
    store, index, writer = archive
    (policy, policy_raw), _, (endorsement, raw) = _records(batch)
    _file_first(writer, policy, policy_raw)
    other = RawRecord(raw.line, {**raw.data, "special_terms": ["另一份批单"]})
    row = index.policy_row(policy.policy_no)
    slot = writer.next_slot(row, index.versions(policy.policy_no)[-1], "endorsement")
    leftover = writer.publish(
        slot,
        Draft(
            parts=_stand_ins("other"), clerk=None, record=other.data, record_sha256=content_hash(other.data)
        ),
    )
    objects = _objects(store)
    with pytest.raises(VersionRefused) as refused:
        _file_endorsement(writer, endorsement, raw, "mine")
    assert refused.value.field == "record_id" and "v2-endorsement" in str(refused.value)
    assert refused.value.exit_code == 1
    assert _objects(store) == objects and len(index.versions(policy.policy_no)) == 1

    # the same record's leftover whose part is gone is not adopted either: it would index a lost object
    (store.root / leftover.part("bundle.pdf").key).unlink()
    with pytest.raises(ObjectMissing, match=r"lacks its part bundle\.pdf"):
        writer.adopt(slot, same=same_record(content_hash(other.data)))


def test_a_reissue_stored_but_not_indexed_is_adopted_and_another_request_files_beside_it(
    archive, index_url, batch
):
    store, index, writer = archive
    (policy, policy_raw), _, _ = _records(batch)
    _file_first(writer, policy, policy_raw)
    request = ReissueRequest(policy_no=policy.policy_no, reason="lost", clerk="CLK0101")
    cut = PowerCut.open(index_url, hmac_key=KEY)
    cut.cut = frozenset({"archive_reissue"})
    with pytest.raises(RuntimeError, match="power cut"):
        reissue(store=store, index=cut, marker=StandInMarker(), request=request, operator="counter", now=NOW)
    cut.close()
    stored = _objects(store)
    assert any(k.endswith("/v2-reissue/manifest.json") for k in stored)
    assert len(index.versions(policy.policy_no)) == 1 and index.reissues(policy.policy_no) == []

    again = reissue(
        store=store, index=index, marker=StandInMarker(), request=request, operator="counter", now=NOW
    )
    assert again.adopted and again.version == 2 and again.manifest.key.endswith("/v2-reissue/manifest.json")
    assert _objects(store) == stored  # nothing uploaded twice
    assert again.pdf == store.get(again.copy.key, sha256=again.copy.sha256)
    (row,) = index.reissues(policy.policy_no)
    assert (row.version, row.copy_key, row.clerk) == (2, again.copy.key, "CLK0101")
    (event,) = [e for e in index.ledger_entries(subject=policy.policy_no) if e.action == "policy.reissued"]
    assert event.detail["manifest"] == again.manifest.key

    # a crash again, then a different request: it is not blocked by the leftover, it files beside it
    cut = PowerCut.open(index_url, hmac_key=KEY)
    cut.cut = frozenset({"archive_reissue"})
    with pytest.raises(RuntimeError, match="power cut"):
        reissue(store=store, index=cut, marker=StandInMarker(), request=request, operator="counter", now=NOW)
    cut.close()
    damaged = ReissueRequest(policy_no=policy.policy_no, reason="damaged", clerk="CLK0102")
    beside = reissue(
        store=store, index=index, marker=StandInMarker(), request=damaged, operator="counter", now=NOW
    )
    assert not beside.adopted and beside.version == 3
    assert beside.manifest.key.rsplit("/", 1)[-1].startswith("manifest-")
    assert index.versions(policy.policy_no)[-1].manifest_key == beside.manifest.key
    assert index.verify_ledger() == []


def test_a_batch_files_each_policy_alone_when_another_writer_indexed_one(archive, batch):
    _store, index, writer = archive
    (first, first_raw), (second, second_raw), _ = _records(batch)
    _file_first(writer, first, first_raw)  # "another run" filed the first record meanwhile
    plans: list[PolicyPlan] = []
    for policy, raw in ((first, first_raw), (second, second_raw)):
        slot = writer.first_slot(policy)
        plans.append(PolicyPlan(policy, raw, slot, content_hash(raw.data), (), None))
    drafts = [
        p.draft(_stand_ins(p.policy.policy_no), images=(), templates={}, seal=None, batch_id=None)
        for p in plans
    ]
    results = writer.file_policies(list(zip(plans, drafts, strict=True)), batch_id=None)
    assert isinstance(results[0], FiledByAnother)
    assert isinstance(results[1], Filed) and results[1].version == 1
    assert index.policy_row(second.policy_no) is not None


def test_an_endorsement_crash_through_filing_is_adopted(index_url, tmp_path, maker, batch):
    """End to end: the documents made by the pipeline, filed through ``Filing``, crash, re-run."""
    store = LocalStore(tmp_path / "store")
    index = Index.open(index_url, hmac_key=KEY)
    cut = PowerCut.open(index_url, hmac_key=KEY)
    cut.cut = frozenset({"archive_version"})
    crashed = run_batch(
        batch, filing=Filing(store=store, index=cut, maker=maker, operator="tester"), workers=1
    )
    cut.close()
    assert sorted(o.status for o in crashed.outcomes) == ["archived", "archived", "rejected"]
    stored = _objects(store)
    assert any(k.endswith("/v2-endorsement/manifest.json") for k in stored)

    rerun = run_batch(
        batch, filing=Filing(store=store, index=index, maker=maker, operator="tester"), workers=1
    )
    assert sorted(o.status for o in rerun.outcomes) == ["already_archived", "already_archived", "archived"]
    assert _objects(store) == stored  # adopted: nothing uploaded twice
    (event,) = [e for e in index.ledger_entries() if e.action == "endorsement.archived"]
    assert event.detail["adopted"] is True
    index.close()
