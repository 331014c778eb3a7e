"""Trusted time (issue 23, item 3): every signature carries its own RFC 3161 token from a real TSA on
loopback (``bench/tsa.py``); a TSA that fails is asked once more, and one that keeps failing or is too
slow fails only the records waiting for it, with a reason naming it, and a re-run files them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from archive.index import Index
from archive.store import LocalStore
from bench.synth import make_batch
from bench.tsa import LoopbackTsa
from core.errors import SigningFailed
from core.records import parse_record
from pipeline.report import ALREADY_ARCHIVED, ARCHIVED, NOT_ATTEMPTED
from stamps.keys import Pkcs12Key, write_specimen_pkcs12
from stamps.signing import PdfSigner, check_signatures
from stamps.timestamps import Timestamper
from usecases.filing import Filing
from usecases.run import run_batch

KEY = b"timestamps-test-hmac-key-0123456"
PASSWORD = b"specimen-password"


@pytest.fixture(scope="module")
def tsa():
    with LoopbackTsa() as running:
        yield running


@pytest.fixture(scope="module")
def specimen(tmp_path_factory) -> tuple[Pkcs12Key, bytes]:
    path = tmp_path_factory.mktemp("secrets") / "signer.p12"
    root = write_specimen_pkcs12(path, PASSWORD)
    return Pkcs12Key.open(path, PASSWORD), root


@pytest.fixture(scope="module")
def customer_copy(maker, synth_records) -> bytes:
    policy, problems = parse_record(next(r for r in synth_records if r["product_code"] == "AUTO-COMM"))
    assert policy is not None and not problems
    return maker.policy_pdf(policy).pdf


def test_each_signature_carries_its_own_token_from_the_tsa(tsa, specimen, customer_copy, tmp_path):
    key, root = specimen
    signer = PdfSigner(key, timestamper=Timestamper(tsa.url))
    before = tsa.tokens
    twice = signer.sign(signer.sign(customer_copy))

    assert tsa.tokens - before == 2  # one token per signature, none shared
    first, last = check_signatures(twice, roots=[root, tsa.root_der], require_timestamp=True)
    assert first.ok and last.ok, (first.problems, last.problems)
    assert first.timestamped_at is not None and last.timestamped_at >= first.timestamped_at
    # a token the validator cannot trust is named as such
    (_, untrusted) = check_signatures(twice, roots=[root])
    assert "the timestamp's authority does not chain to a trusted root" in untrusted.problems
    target = tmp_path / "stamped.pdf"
    target.write_bytes(twice)
    said = subprocess.run(["pdfsig", str(target)], capture_output=True, text=True, check=False).stdout
    assert said.count("Signature is Valid.") == 2 and "Total document signed" in said
    # without a TSA, a check that asks for a timestamp says there is none
    plain = PdfSigner(key).sign(customer_copy)
    (check,) = check_signatures(plain, roots=[root], require_timestamp=True)
    assert check.problems == ("the signature carries no timestamp",)


@pytest.mark.parametrize("mode", ["http500", "reject", "drop"])
def test_a_tsa_that_fails_once_is_asked_again(tsa, specimen, customer_copy, mode):
    key, root = specimen
    signer = PdfSigner(key, timestamper=Timestamper(tsa.url))
    tsa.fail_next(1, mode)
    signed = signer.sign(customer_copy)
    (check,) = check_signatures(signed, roots=[root, tsa.root_der], require_timestamp=True)
    assert check.ok, check.problems


@pytest.mark.parametrize(
    ("mode", "said"),
    [("http500", "did not answer (HTTPException: HTTP 500)"), ("reject", "refused the request")],
)
def test_a_tsa_that_fails_twice_fails_the_signature_naming_it(tsa, specimen, customer_copy, mode, said):
    key, _ = specimen
    timestamper = Timestamper(tsa.url)
    tsa.fail_next(2, mode)
    with pytest.raises(SigningFailed, match=r"time-stamping authority http://127\.0\.0\.1") as raised:
        PdfSigner(key, timestamper=timestamper).sign(customer_copy)
    assert said in str(raised.value) and "a re-run files the record" in str(raised.value)


def test_a_tsa_slower_than_the_timeout_fails_the_signature(specimen, customer_copy):
    key, _ = specimen
    with LoopbackTsa(delay=1.5) as slow:
        timestamper = Timestamper(slow.url, timeout=0.5)
        with pytest.raises(SigningFailed, match="did not answer"):
            PdfSigner(key, timestamper=timestamper).sign(customer_copy)


def test_a_failing_tsa_fails_only_the_records_in_flight_and_a_re_run_files_them(
    tsa, specimen, maker, tmp_path
):
    """While the TSA refuses, the records waiting for it end not attempted, with the TSA named; the run
    itself ends normally (nothing else was wrong) and counts add up. Once the TSA answers again, a re-run
    files them, each exactly once."""
    key, root = specimen
    batch = make_batch(tmp_path / "batch", 3, seed=81, images_per_record=1)
    store = LocalStore(tmp_path / "store")
    index = Index.open(f"sqlite:///{tmp_path / 'index.sqlite'}", hmac_key=KEY)

    def filing(url: str) -> Filing:
        signer = PdfSigner(key, timestamper=Timestamper(url))
        return Filing(store=store, index=index, maker=maker, operator="tester", signer=signer)

    try:
        with LoopbackTsa() as refusing:
            refusing.fail_next(1000, "http500")
            down = filing(refusing.url)
            first = run_batch(batch, filing=down, workers=1)
            down.close()
        counts = first.counts()
        assert counts[NOT_ATTEMPTED] == 3 and counts[ARCHIVED] == 0 and counts["records"] == 3
        for outcome in first.outcomes:
            (reason,) = outcome.reasons
            assert reason.field == "signature" and "time-stamping authority" in reason.message
        assert [i for i in store.list("") if i.key.endswith(".pdf")] == []  # nothing half-filed

        up = filing(tsa.url)
        assert run_batch(batch, filing=up, workers=1).counts()[ARCHIVED] == 3
        assert run_batch(batch, filing=up, workers=1).counts()[ALREADY_ARCHIVED] == 3
        up.close()
        for info in store.list(""):
            if info.key.endswith(".pdf"):
                last = check_signatures(store.get(info.key), roots=[root, tsa.root_der])[-1]
                assert last.ok and last.timestamped_at is not None, (info.key, last.problems)
        manifest = next(i.key for i in store.list("") if i.key.endswith("manifest.json"))
        assert json.loads(store.get(manifest))["signature"]["level"] == "PAdES-B-T"
    finally:
        index.close()


def test_the_timestamper_refuses_what_is_not_an_http_url():
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="ISSUANCE_TSA_URL"):
        Timestamper("ftp://tsa.example/")
    assert Timestamper("http://user:secret@tsa.example:8080/tsr").where == "http://tsa.example:8080"


def test_nothing_about_the_tsa_credentials_reaches_a_message(specimen, customer_copy):
    key, _ = specimen
    timestamper = Timestamper("http://user:secret@127.0.0.1:9/tsr", timeout=0.5)  # nothing listens there
    with pytest.raises(SigningFailed) as raised:
        PdfSigner(key, timestamper=timestamper).sign(customer_copy)
    assert "secret" not in str(raised.value) and "user" not in str(raised.value)


def test_a_root_file_lists_its_certificates(tmp_path: Path, tsa):
    from stamps.keys import load_certificates

    pem = tmp_path / "roots.pem"
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_der_x509_certificate(tsa.root_der)
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM) * 2)
    der = tmp_path / "root.der"
    der.write_bytes(tsa.root_der)
    assert load_certificates([pem, der]) == [tsa.root_der] * 3


def test_issuance_run_exits_3_when_the_tsa_failed_records(specimen, tmp_path):
    """Not a silent 0: the operator's nightly job sees that records wait for a re-run."""
    import os
    import sys

    from tests.conftest import REPO

    key_path = tmp_path / "signer.p12"
    write_specimen_pkcs12(key_path, PASSWORD)
    batch = make_batch(tmp_path / "batch", 1, seed=82, images_per_record=0)
    with LoopbackTsa() as refusing:
        refusing.fail_next(1000, "reject")
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "ISSUANCE_HMAC_KEY": KEY.decode(),
            "ISSUANCE_SIGNING_KEY": str(key_path),
            "ISSUANCE_SIGNING_PASSWORD": PASSWORD.decode(),
            "ISSUANCE_TSA_URL": refusing.url,
        }
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", "run", str(batch), "--no-progress"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert done.returncode == 3, done.stderr
    assert "1 not attempted (a component failed them; run again)" in done.stdout
    assert "refused the request (status rejection" in done.stderr


def test_a_token_larger_than_the_room_kept_makes_room_once(tsa, specimen, customer_copy):
    """A TSA whose tokens carry more than guessed (a long chain): the signature is made again with room
    for it, and the room stays for the rest of the run; one extra token, once."""
    key, root = specimen
    signer = PdfSigner(key, timestamper=Timestamper(tsa.url), reserve=1024)
    before = tsa.tokens
    signed = signer.sign(customer_copy)
    assert tsa.tokens - before == 2 and signer.reserve > 1024
    (check,) = check_signatures(signed, roots=[root, tsa.root_der], require_timestamp=True)
    assert check.ok, check.problems
    signer.sign(customer_copy)
    assert tsa.tokens - before == 3
