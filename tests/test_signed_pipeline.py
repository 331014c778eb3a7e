"""Every PDF the pipeline files is signed last (issue 23; DESIGN.md invariant 8), on real LibreOffice and
both index backends: customer and archive copies of new policies, endorsement versions, supplements,
reissued copies. Each is checked twice, by pyHanko's validator and by poppler's ``pdfsig`` (NSS), and the
audit's 真实性 check ``signatures`` reads them the way an auditor's report shows them."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from archive.audit.checks.auditor import Auditor
from archive.index import Index
from archive.store import LocalStore
from bench.synth import make_batch
from core.config import load_settings
from core.products import load_registry
from stamps import load_seal_registry
from stamps.keys import Pkcs12Key, write_specimen_pkcs12
from stamps.signing import FIELD, PdfSigner, check_signatures
from tests.conftest import REPO, add_users
from usecases.filing import Filing
from usecases.run import run_batch
from usecases.session import UNSIGNED_WARNING, signer_from

KEY = "signed-pipeline-hmac-key-0123456"
PASSWORD = "specimen-password"
ISSUANCE = [sys.executable, "-m", "cli.main"]


@pytest.fixture(scope="module")
def specimen(tmp_path_factory) -> tuple[Path, bytes]:
    path = tmp_path_factory.mktemp("secrets") / "signer.p12"
    return path, write_specimen_pkcs12(path, PASSWORD.encode())


@pytest.fixture(scope="module")
def sealing_maker(registry, pool, tmp_path_factory):
    from pipeline.documents import DocumentMaker

    return DocumentMaker(
        registry=registry,
        converter=pool,
        cache_dir=tmp_path_factory.mktemp("signed-cache"),
        seals=load_seal_registry(),
    )


def pdfsig(path: Path) -> str:
    result = subprocess.run(["pdfsig", str(path)], capture_output=True, text=True, timeout=60, check=False)
    return result.stdout + result.stderr


def signed_objects(store: LocalStore) -> list[tuple[str, bytes]]:
    return [(info.key, store.get(info.key)) for info in store.list("") if info.key.endswith(".pdf")]


def manifests(store: LocalStore) -> dict[str, dict]:
    """Each PDF's key → the manifest of the version that filed it."""
    by_key = {}
    for info in store.list(""):
        if info.key.endswith("manifest.json"):
            body = json.loads(store.get(info.key))
            for part in body["parts"]:
                by_key.setdefault(part["key"], body)
    return by_key


def auditor(store: LocalStore, index: Index, roots: list[bytes]) -> Auditor:
    return Auditor(
        store=store,
        index=index,
        products=load_registry(),
        seals=load_seal_registry(),
        seal_dpi=75,
        thumbnail_width=0,
        trust_roots=roots,
    )


def test_every_copy_filed_is_signed_last_and_checks_out(index_url, tmp_path, sealing_maker, specimen):
    key_path, root = specimen
    signer = PdfSigner(Pkcs12Key.open(key_path, PASSWORD.encode()))
    folder = tmp_path / "batch"
    batch = make_batch(folder, 3, seed=71, endorsements=1, images_per_record=2)
    store = LocalStore(tmp_path / "store")
    index = Index.open(index_url, hmac_key=KEY.encode())
    filing = Filing(store=store, index=index, maker=sealing_maker, operator="tester", signer=signer)
    try:
        before = filing.clock.cpu_snapshot().get("sign", {}).get("items", 0)  # the maker's clock is shared
        report = run_batch(batch, filing=filing, workers=2)
        assert report.counts()["archived"] == 4, list(report.outcomes)
        assert report.extra["signing"]["signed_by"]["fingerprint"] == signer.fingerprint
        assert report.extra["signing"]["items"] - before == 8  # two copies per version
        policy_no = json.loads(batch.read_text(encoding="utf-8").splitlines()[0])["policy_no"]
        late = next(folder.rglob("*.jpg"))
        filing.attach(policy_no, kind="other", files=[late], by="CLK9", label="补充件")

        # a reissued copy, through the command line with the signing key configured as an operator would
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "ISSUANCE_STORE": f"file://{store.root}",
            "ISSUANCE_INDEX": index_url,
            "ISSUANCE_HMAC_KEY": KEY,
            "ISSUANCE_SIGNING_KEY": str(key_path),
            "ISSUANCE_SIGNING_PASSWORD": PASSWORD,
        }
        add_users({"CLK9": ["clerk"]}, env=env, base=tmp_path)
        out = tmp_path / "reissued.pdf"
        done = subprocess.run(
            [*ISSUANCE, "reissue", policy_no, "--reason", "lost", "--by", "CLK9", "-o", str(out)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr

        objects = signed_objects(store)
        kinds = {key.rsplit("/", 1)[-1].split("-")[0] for key, _ in objects}
        assert kinds == {"customer", "bundle", "reissue"}
        by_key = manifests(store)
        for key, data in objects:
            checks = check_signatures(data, roots=[root])
            assert checks, key
            *earlier, last = checks
            assert last.ok and last.whole_file, (key, last.problems)
            assert all(c.intact and c.valid and c.ok for c in earlier), key
            assert last.fingerprint == by_key[key]["signature"]["fingerprint"] == signer.fingerprint
            target = tmp_path / "check.pdf"
            target.write_bytes(data)
            said = pdfsig(target)
            assert said.count("Signature is Valid.") == len(checks), (key, said)
            # poppler lists signatures in file order: the last one covers the whole document
            assert said.rsplit("Signature #", 1)[1].count("Total document signed") == 1, (key, said)
            if len(checks) > 1:
                assert said.count("Not total document signed") == len(checks) - 1
        # the customer copy after an endorsement is signed as a whole: one signature, not a stale one
        v2 = next(data for key, data in objects if "v2-endorsement/customer" in key)
        assert [c.field for c in check_signatures(v2, roots=[root])] == [FIELD]
        # the reissued copy: the original's signature inside, intact, and the reissue's over the whole
        reissued = next(data for key, data in objects if "/reissue" in key)
        assert out.read_bytes() == reissued
        original, again = check_signatures(reissued, roots=[root])
        assert original.ok and not original.whole_file and again.ok and again.whole_file

        # the audit's 真实性 check: passes with the company's root, names the root when it is another
        result = auditor(store, index, [root]).check_policy(policy_no)
        check = result.check("signatures")
        assert check.passed, check.evidence
        assert any("covers the whole file" in line for line in check.evidence)
        other = write_specimen_pkcs12(tmp_path / "other.p12", b"x")
        check = auditor(store, index, [other]).check_policy(policy_no).check("signatures")
        assert not check.passed
        assert any("does not chain to a trusted root" in line for line in check.evidence)
    finally:
        filing.close()
        index.close()


def test_a_copy_signed_by_another_certificate_than_its_manifest_records_fails_the_audit(
    tmp_path, sealing_maker, specimen
):
    key_path, root = specimen
    signer = PdfSigner(Pkcs12Key.open(key_path, PASSWORD.encode()))
    other_path = tmp_path / "other.p12"
    other_root = write_specimen_pkcs12(other_path, b"other")

    class Impostor(PdfSigner):
        @property
        def facts(self) -> dict:  # what the manifest records: the company's certificate
            return signer.facts

    impostor = Impostor(Pkcs12Key.open(other_path, b"other"))
    batch = make_batch(tmp_path / "batch", 1, seed=72, images_per_record=1)
    store = LocalStore(tmp_path / "store")
    index = Index.open(f"sqlite:///{tmp_path / 'index.sqlite'}", hmac_key=KEY.encode())
    # the documents are signed by the impostor, the manifests say the company's certificate signed
    filing = Filing(store=store, index=index, maker=sealing_maker, operator="tester", signer=impostor)
    try:
        report = run_batch(batch, filing=filing, workers=1)
        assert report.counts()["archived"] == 1
        policy_no = json.loads(batch.read_text(encoding="utf-8").splitlines()[0])["policy_no"]
        check = auditor(store, index, [root, other_root]).check_policy(policy_no).check("signatures")
        assert not check.passed
        assert any("signed by another certificate" in line for line in check.evidence)
    finally:
        index.close()


def test_with_no_key_documents_go_out_unsigned_with_a_warning_and_the_audit_says_so(
    tmp_path, sealing_maker, caplog, monkeypatch
):
    monkeypatch.delenv("ISSUANCE_SIGNING_KEY", raising=False)
    settings = load_settings(env={"ISSUANCE_HMAC_KEY": KEY}, base=tmp_path)
    with caplog.at_level(logging.WARNING):
        assert signer_from(settings) is None
    assert UNSIGNED_WARNING in caplog.text
    batch = make_batch(tmp_path / "batch", 1, seed=73, images_per_record=1)
    store = LocalStore(tmp_path / "store")
    index = Index.open(f"sqlite:///{tmp_path / 'index.sqlite'}", hmac_key=KEY.encode())
    filing = Filing(store=store, index=index, maker=sealing_maker, operator="tester")
    try:
        run_batch(batch, filing=filing, workers=1)
        for _, data in signed_objects(store):
            assert check_signatures(data) == []
        assert all(body["signature"] is None for body in manifests(store).values())
        policy_no = json.loads(batch.read_text(encoding="utf-8").splitlines()[0])["policy_no"]
        check = auditor(store, index, []).check_policy(policy_no).check("signatures")
        assert check.passed and any("issued unsigned" in line for line in check.evidence)
    finally:
        index.close()
