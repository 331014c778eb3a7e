"""The loopback RFC 3161 TSA (bench/tsa.py) that the signing tests and the throughput bench run: what it
answers is checked by pyHanko's own client and validator, and by OpenSSL's ``ts`` command."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from asn1crypto import cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyhanko.sign.timestamps import HTTPTimeStamper, TimestampRequestError
from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
from pyhanko.sign.validation.status import TimestampSignatureStatus
from pyhanko_certvalidator import ValidationContext

from bench.tsa import POLICY_OID, LoopbackTsa, TsaProcess

REPO = Path(__file__).resolve().parent.parent
DIGEST = hashlib.sha256(b"%PDF- the signed byte ranges of a policy").digest()


@pytest.fixture
def tsa() -> Iterator[LoopbackTsa]:
    with LoopbackTsa() as server:
        yield server


def _request(*, nonce: int | None = 4711, cert_req: bool = True, digest: bytes = DIGEST, **extra) -> bytes:
    fields = {
        "version": 1,
        "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": digest},
        "cert_req": cert_req,
        **extra,
    }
    if nonce is not None:
        fields["nonce"] = nonce
    return tsp.TimeStampReq(fields).dump()


def _post(url: str, body: bytes, conn: http.client.HTTPConnection | None = None) -> tuple[int, str, bytes]:
    parts = urlsplit(url)
    conn = conn or http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("POST", parts.path, body=body, headers={"Content-Type": "application/timestamp-query"})
    response = conn.getresponse()
    return response.status, response.getheader("Content-Type", ""), response.read()


class _TimeStampResp(core.Sequence):
    """RFC 3161's TimeStampResp, whose token is OPTIONAL (absent from a rejection): asn1crypto's own
    ``tsp.TimeStampResp`` requires it and cannot read a rejection (wbond/asn1crypto#286)."""

    _fields = [  # noqa: RUF012 - asn1crypto's declaration style
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def _tst_info(reply: bytes) -> tsp.TSTInfo:
    response = tsp.TimeStampResp.load(reply)
    assert response["status"]["status"].native == "granted"
    return response["time_stamp_token"]["content"]["encap_content_info"]["content"].parsed


def _pyhanko_status(token, root_der: bytes, digest: bytes = DIGEST) -> TimestampSignatureStatus:
    context = ValidationContext(trust_roots=[asn1_x509.Certificate.load(root_der)])
    kwargs = asyncio.run(validate_tst_signed_data(token["content"], context, lambda algorithm: digest))
    return TimestampSignatureStatus(**kwargs)


def test_pyhanko_client_gets_a_token_that_pyhanko_validates(tsa: LoopbackTsa) -> None:
    token = asyncio.run(HTTPTimeStamper(tsa.url).async_timestamp(DIGEST, "sha256"))
    status = _pyhanko_status(token, tsa.root_der)
    assert (status.intact, status.valid, status.trusted) == (True, True, True)
    assert abs(time.time() - status.timestamp.timestamp()) < 60
    # the same token against another root is not trusted, and for another document is not intact
    with LoopbackTsa() as other:
        assert _pyhanko_status(token, other.root_der).trusted is False
    assert _pyhanko_status(token, tsa.root_der, hashlib.sha256(b"forged").digest()).intact is False
    assert tsa.tokens == 1


def test_token_echoes_nonce_and_imprint_and_serials_increase(tsa: LoopbackTsa) -> None:
    status, content_type, reply = _post(tsa.url, _request(nonce=987654321987))
    assert (status, content_type) == (200, "application/timestamp-reply")
    first = _tst_info(reply)
    assert first["nonce"].native == 987654321987
    assert first["message_imprint"]["hashed_message"].native == DIGEST
    assert first["policy"].native == POLICY_OID
    second = _tst_info(_post(tsa.url, _request(nonce=None))[2])
    assert second["nonce"].native is None
    assert second["serial_number"].native > first["serial_number"].native


def test_reply_is_der_and_carries_the_tsa_certificate_when_asked(tsa: LoopbackTsa) -> None:
    reply = _post(tsa.url, _request(cert_req=True))[2]
    parsed = tsp.TimeStampResp.load(reply)
    # re-encoding every element from its parsed value gives the same bytes: the reply is DER
    assert core.load(reply).dump(force=True) == reply
    assert parsed.dump(force=True) == reply
    certificates = parsed["time_stamp_token"]["content"]["certificates"]
    assert [c.chosen.dump() for c in certificates] == [tsa.certificate_der]
    eku = x509.load_der_x509_certificate(tsa.certificate_der).extensions.get_extension_for_class(
        x509.ExtendedKeyUsage
    )
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    without = tsp.TimeStampResp.load(_post(tsa.url, _request(cert_req=False))[2])
    assert not without["time_stamp_token"]["content"]["certificates"]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
def test_openssl_verifies_the_token(tsa: LoopbackTsa, tmp_path: Path) -> None:
    data = tmp_path / "document"
    data.write_bytes(b"%PDF- the signed byte ranges of a policy")
    (tmp_path / "reply.tsr").write_bytes(_post(tsa.url, _request())[2])
    (tmp_path / "root.der").write_bytes(tsa.root_der)
    subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-in", "root.der", "-out", "root.pem"],
        cwd=tmp_path,
        check=True,
        timeout=30,
    )
    verify = ["openssl", "ts", "-verify", "-in", "reply.tsr", "-CAfile", "root.pem"]
    ok = subprocess.run(
        [*verify, "-data", "document"], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert ok.returncode == 0 and "Verification: OK" in ok.stdout, ok.stdout + ok.stderr
    data.write_bytes(b"%PDF- another document")
    bad = subprocess.run(
        [*verify, "-data", "document"], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert bad.returncode != 0


def test_bad_requests_get_a_rejection_naming_the_failure(tsa: LoopbackTsa) -> None:
    cases = [
        (b"not DER at all", "bad_data_format"),
        (_request(digest=b"short"), "bad_alg"),
        (_request(req_policy="1.2.3.4"), "unaccepted_policy"),
    ]
    for body, failure in cases:
        status, _, reply = _post(tsa.url, body)
        response = _TimeStampResp.load(reply)
        assert status == 200
        assert response["status"]["status"].native == "rejection"
        assert response["status"]["fail_info"].native == {failure}
        assert response["time_stamp_token"].native is None
        assert response.dump(force=True) == reply
    assert tsa.tokens == 0
    assert tsa.requests == 3


def test_failure_modes_fail_the_next_requests_then_recover(tsa: LoopbackTsa) -> None:
    stamper = HTTPTimeStamper(tsa.url)
    tsa.fail_next(2, "http500")
    for _ in range(2):
        with pytest.raises(TimestampRequestError, match="contacting timestamp service"):
            asyncio.run(stamper.async_timestamp(DIGEST, "sha256"))
    tsa.fail_next(1, "reject")
    # a rejection carries no token (RFC 3161 sec. 2.4.2), which asn1crypto cannot parse: pyHanko's
    # client raises ValueError here, not TimestampRequestError (wbond/asn1crypto#286)
    with pytest.raises(ValueError, match="time_stamp_token"):
        asyncio.run(stamper.async_timestamp(DIGEST, "sha256"))
    tsa.fail_next(1, "reject")
    status, _, reply = _post(tsa.url, _request())
    assert status == 200
    assert _TimeStampResp.load(reply)["status"]["fail_info"].native == {"system_failure"}
    tsa.fail_next(1, "drop")
    with pytest.raises(TimestampRequestError, match="contacting timestamp service"):
        asyncio.run(stamper.async_timestamp(DIGEST, "sha256"))
    assert tsa.tokens == 0
    token = asyncio.run(stamper.async_timestamp(DIGEST, "sha256"))
    assert _pyhanko_status(token, tsa.root_der).valid
    assert (tsa.requests, tsa.tokens) == (6, 1)


def test_delay_holds_each_answer_back_and_can_change_while_running(tsa: LoopbackTsa) -> None:
    started = time.monotonic()
    _post(tsa.url, _request())
    prompt = time.monotonic() - started
    tsa.delay = 0.3
    started = time.monotonic()
    _tst_info(_post(tsa.url, _request())[2])
    assert time.monotonic() - started >= 0.3 > prompt


def test_concurrent_requests_are_delayed_side_by_side_not_queued() -> None:
    with LoopbackTsa(delay=0.2) as tsa:

        def one(n: int) -> int:
            return _tst_info(_post(tsa.url, _request(nonce=n))[2])["nonce"].native

        started = time.monotonic()
        with ThreadPoolExecutor(20) as pool:
            nonces = list(pool.map(one, range(1, 21)))
        elapsed = time.monotonic() - started
    assert nonces == list(range(1, 21))
    assert 0.2 <= elapsed < 1.5  # one after another would take 20 x 0.2 s = 4 s
    assert tsa.tokens == 20


def test_a_connection_is_kept_alive_across_requests(tsa: LoopbackTsa) -> None:
    parts = urlsplit(tsa.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    _post(tsa.url, _request(), conn)
    sock = conn.sock
    assert sock is not None  # http.client drops the socket when the server says it will close
    for _ in range(3):
        _tst_info(_post(tsa.url, _request(), conn)[2])
        assert conn.sock is sock
    conn.close()


def test_kept_alive_requests_are_answered_without_a_stall(tsa: LoopbackTsa) -> None:
    # a reply written in two parts must not wait for the client's delayed ACK (Nagle's algorithm): that
    # costs some 40 ms a request on a kept-alive connection, and a pooled client sends many
    parts = urlsplit(tsa.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    _post(tsa.url, _request(), conn)
    started = time.monotonic()
    for _ in range(10):
        _tst_info(_post(tsa.url, _request(), conn)[2])
    assert time.monotonic() - started < 0.25
    conn.close()


def _start_process(*args: str) -> tuple[subprocess.Popen, dict]:
    process = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "tsa.py"), "--port", "0", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert process.stdout is not None
    return process, json.loads(process.stdout.readline())


def test_tsa_process_for_the_bench_reports_its_own_cpu() -> None:
    with TsaProcess(delay=0.01) as tsa:
        stamper = HTTPTimeStamper(tsa.url)
        for _ in range(2):
            token = asyncio.run(stamper.async_timestamp(DIGEST, "sha256"))
            assert _pyhanko_status(token, tsa.root_der).trusted
    assert tsa.summary["tokens"] == 2
    assert tsa.summary["cpu_seconds"] > 0
    assert tsa.stop() == (2, tsa.summary["cpu_seconds"])  # stopped once; the figures stay
    late = TsaProcess(delay=0.0)
    assert late.stop() == (0, late.summary["cpu_seconds"])


def test_as_a_process_it_reports_tokens_and_cpu_at_end_of_stdin(tmp_path: Path) -> None:
    process, ready = _start_process("--delay", "0.05", "--root-out", str(tmp_path / "root.der"))
    try:
        assert ready["root_certificate"] == str(tmp_path / "root.der")
        root = Path(ready["root_certificate"]).read_bytes()
        stamper = HTTPTimeStamper(ready["url"])
        for _ in range(3):
            token = asyncio.run(stamper.async_timestamp(DIGEST, "sha256"))
            assert _pyhanko_status(token, root).trusted
        process.stdin.close()
        summary = json.loads(process.stdout.readline())
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
    assert summary["tokens"] == 3 and summary["requests"] == 3
    assert summary["cpu_seconds"] > 0
    # cpu_seconds is printed to 0.1 ms: the per-token figure (from the unrounded CPU) agrees to that
    assert summary["cpu_ms_per_token"] == pytest.approx(
        summary["cpu_seconds"] * 1000 / 3, abs=0.05 / 3 + 1e-3
    )


def test_as_a_process_it_stops_on_sigterm() -> None:
    process, ready = _start_process()
    try:
        assert _post(ready["url"], _request())[0] == 200
        process.terminate()
        summary = json.loads(process.stdout.readline())
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
    assert summary["tokens"] == 1
