"""A real RFC 3161 time-stamping authority on loopback, for tests and benchmarks (not product code).

It answers HTTP POSTs of ``application/timestamp-query`` with ``application/timestamp-reply``: a
``TSTInfo`` (the request's message imprint, an increasing serial, genTime now in UTC, an accuracy, the
nonce echoed) signed as CMS ``SignedData`` with ECDSA P-256 / SHA-256, signed attributes contentType,
messageDigest and signingCertificateV2 (RFC 5816), and the TSA's certificate when the request asks for it.
The TSA's certificate (EKU id-kp-timeStamping, critical) and its root are SPECIMENs generated at start.

HTTP/1.1 with keep-alive, one thread per connection: a client's connection pool is reused, and a
``delay`` holds back each answer on its own connection, not behind the others.

For tests, in a thread of the test process::

    with LoopbackTsa(delay=0.0) as tsa:
        tsa.url, tsa.root_der, tsa.fail_next(2, "http500"), tsa.delay = 0.2, tsa.tokens

For a benchmark, as a process of its own (its CPU apart from the issuance process): ``TsaProcess``, or::

    python bench/tsa.py --port 0 --delay 0.2

prints one JSON line ``{"url": …, "root_certificate": …}`` (the root as a DER file), serves until SIGTERM,
SIGINT or the end of its standard input, then prints one JSON line with the tokens issued and the CPU
seconds the process spent after it was ready.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import functools
import hashlib
import http.server
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Literal

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

# run as a script (``TsaProcess``) as well as imported: the project's own modules from the repository
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stamps.keys import specimen_leaf, specimen_name, specimen_root

__all__ = ["POLICY_OID", "FailureMode", "LoopbackTsa", "TimeStampAuthority", "TsaProcess", "TsaServer"]

# a private OID without registration: the 2.25 arc takes a UUID as an integer (ITU-T X.667);
# this one was drawn at random for the loopback TSA
POLICY_OID = "2.25.216183286950372384390829217066521640907"

FailureMode = Literal["http500", "reject", "drop"]

_DIGEST_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64}
_CONTENT_TYPE = "application/timestamp-query"
_REPLY_TYPE = "application/timestamp-reply"


def _specimen_name(common_name: str) -> x509.Name:
    return specimen_name(common_name, "样本 SPECIMEN loopback TSA (not for real use)")


class TimeStampAuthority:
    """Makes time-stamp replies: the part of the TSA that has nothing to do with HTTP."""

    def __init__(self, *, now: dt.datetime | None = None) -> None:
        now = now or dt.datetime.now(dt.UTC)
        root_key, root = specimen_root(_specimen_name("样本 SPECIMEN TSA Root"), now=now)
        self._key = ec.generate_private_key(ec.SECP256R1())
        # RFC 3161 sec. 2.3: the TSA's certificate has exactly this EKU, marked critical
        cert = specimen_leaf(
            _specimen_name("样本 SPECIMEN Time-Stamping Unit"),
            self._key,
            issuer=(root_key, root),
            now=now,
            usage=ExtendedKeyUsageOID.TIME_STAMPING,
            usage_critical=True,
        )
        der = serialization.Encoding.DER
        self.root_der = root.public_bytes(der)
        self.certificate_der = cert.public_bytes(der)
        # what is the same in every token, built once
        self._cert = asn1_x509.Certificate.load(self.certificate_der)
        self._tsa_name = asn1_x509.GeneralName(name="directory_name", value=self._cert.subject)
        self._sid = cms.SignerIdentifier(
            {
                "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                    {"issuer": self._cert.issuer, "serial_number": self._cert.serial_number}
                )
            }
        )
        self._signing_certificate = cms.CMSAttribute(
            {
                "type": "signing_certificate_v2",
                "values": [
                    tsp.SigningCertificateV2(
                        {
                            "certs": [
                                tsp.ESSCertIDv2(
                                    {
                                        "hash_algorithm": {"algorithm": "sha256"},
                                        "cert_hash": hashlib.sha256(self.certificate_der).digest(),
                                        "issuer_serial": {
                                            "issuer": [
                                                asn1_x509.GeneralName(
                                                    name="directory_name", value=self._cert.issuer
                                                )
                                            ],
                                            "serial_number": self._cert.serial_number,
                                        },
                                    }
                                )
                            ]
                        }
                    )
                ],
            }
        )
        # what is the same in every token, encoded once: asn1crypto re-encodes a whole certificate and
        # its names on every dump, which made up nearly all of a token's CPU
        digest_algorithm = algos.DigestAlgorithm({"algorithm": "sha256"}).dump()
        self._policy = core.ObjectIdentifier(POLICY_OID).dump()
        self._accuracy = tsp.Accuracy({"millis": 10}).dump()
        self._tsa_field = _tlv(0xA0, self._tsa_name.dump())  # [0] EXPLICIT GeneralName
        self._content_type_attr = cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}).dump()
        self._signing_certificate_attr = self._signing_certificate.dump()
        self._message_digest_oid = cms.CMSAttributeType("message_digest").dump()
        self._signer_info_head = core.Integer(1).dump() + self._sid.dump() + digest_algorithm
        self._signature_algorithm = algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}).dump()
        self._signed_data_head = core.Integer(3).dump() + _tlv(0x31, digest_algorithm)
        self._tst_info_type = cms.ContentType("tst_info").dump()
        self._certificates = _tlv(0xA0, self.certificate_der)  # [0] IMPLICIT SET OF Certificate
        self._signed_data_type = cms.ContentType("signed_data").dump()
        self._granted = _tlv(0x30, core.Integer(0).dump())  # PKIStatusInfo { status granted }
        self._serials = itertools.count(1)
        self._serial_lock = threading.Lock()
        self.issued = 0

    def reply(self, request: bytes, *, reject: bool = False) -> bytes:
        """The DER ``TimeStampResp`` to a DER ``TimeStampReq``: a token, or a rejection with the failure
        RFC 3161 names (bad data format, unsupported hash, unknown policy); ``reject`` answers
        ``rejection`` / systemFailure whatever the request."""
        if reject:
            return _rejection("system_failure", "rejected on purpose (failure mode of the test TSA)")
        try:
            req = tsp.TimeStampReq.load(request)
            imprint = req["message_imprint"]
            algorithm = imprint["hash_algorithm"]["algorithm"].native
            hashed = imprint["hashed_message"].native
            version = req["version"].native
            policy = req["req_policy"].native
            nonce = req["nonce"].native
            cert_req = bool(req["cert_req"].native)
        except (ValueError, TypeError, KeyError) as e:
            return _rejection("bad_data_format", f"the request is not a TimeStampReq: {e}")
        if version != "v1":
            return _rejection("bad_request", "only version 1 requests are understood")
        if algorithm not in _DIGEST_SIZES or len(hashed) != _DIGEST_SIZES[algorithm]:
            return _rejection("bad_alg", f"message imprint: {algorithm} of {len(hashed)} bytes not accepted")
        if policy is not None and policy != POLICY_OID:
            return _rejection("unaccepted_policy", f"only policy {POLICY_OID} is offered")
        with self._serial_lock:
            serial = next(self._serials)
            self.issued += 1
        # TSTInfo (RFC 3161 sec. 2.4.2): version, policy, messageImprint, serialNumber, genTime, accuracy,
        # nonce, [0] tsa; ordering left at its default (false), so absent
        tst_info = _tlv(
            0x30,
            core.Integer(1).dump()
            + self._policy
            + imprint.dump()
            + core.Integer(serial).dump()
            + core.GeneralizedTime(dt.datetime.now(dt.UTC)).dump()
            + self._accuracy
            + (core.Integer(nonce).dump() if nonce is not None else b"")
            + self._tsa_field,
        )
        message_digest_attr = _tlv(
            0x30,
            self._message_digest_oid + _tlv(0x31, _tlv(0x04, hashlib.sha256(tst_info).digest())),
        )
        # DER orders a SET OF by the encodings of its members (X.690 sec. 11.6)
        attributes = b"".join(
            sorted([self._content_type_attr, message_digest_attr, self._signing_certificate_attr])
        )
        signature = self._key.sign(_tlv(0x31, attributes), ec.ECDSA(hashes.SHA256()))
        signer_info = _tlv(
            0x30,
            self._signer_info_head
            + _tlv(0xA0, attributes)  # [0] IMPLICIT signedAttrs
            + self._signature_algorithm
            + _tlv(0x04, signature),
        )
        encap = _tlv(0x30, self._tst_info_type + _tlv(0xA0, _tlv(0x04, tst_info)))
        signed_data = _tlv(
            0x30,
            self._signed_data_head
            + encap
            + (self._certificates if cert_req else b"")
            + _tlv(0x31, signer_info),
        )
        token = _tlv(0x30, self._signed_data_type + _tlv(0xA0, signed_data))
        return _tlv(0x30, self._granted + token)


def _tlv(tag: int, content: bytes) -> bytes:
    """One DER element: tag, definite length, content."""
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    length = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content


def _rejection(failure: str, text: str) -> bytes:
    status = tsp.PKIStatusInfo({"status": "rejection", "status_string": [text], "fail_info": {failure}})
    # asn1crypto's TimeStampResp wants a token although RFC 3161 makes it optional: encoded by hand
    return _tlv(0x30, status.dump())


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client's pooled connection serves many requests
    # headers and body leave in two writes: with Nagle's algorithm the second waits for the client's
    # delayed ACK, some 40 ms a request on a kept-alive connection
    disable_nagle_algorithm = True
    server: TsaServer

    def do_POST(self) -> None:
        started = time.thread_time()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        tsa = self.server
        failure = tsa.take_failure()
        tsa.count_request()
        if failure == "drop":
            self.close_connection = True  # the socket is closed with no answer at all
            return
        if failure == "http500":
            tsa.add_cpu(time.thread_time() - started)
            self.send_error(500, "failure mode of the test TSA")
            return
        if self.headers.get("Content-Type", "").split(";")[0].strip() != _CONTENT_TYPE:
            self.send_error(415, f"expected {_CONTENT_TYPE}")
            return
        before_sleep = time.thread_time()
        if tsa.delay > 0:
            time.sleep(tsa.delay)
        after_sleep = time.thread_time()
        reply = tsa.authority.reply(body, reject=failure == "reject")
        self.send_response(200)
        self.send_header("Content-Type", _REPLY_TYPE)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)
        tsa.add_cpu(time.thread_time() - after_sleep + before_sleep - started)

    def log_message(self, format: str, *args: object) -> None:
        pass  # a benchmark's TSA answers thousands of requests: no line per request on stderr


class TsaServer(http.server.ThreadingHTTPServer):
    """The HTTP side: a thread per connection, failure modes, counters."""

    daemon_threads = True
    request_queue_size = 128  # many clients connect at once; a short listen backlog drops SYNs

    def __init__(self, address: tuple[str, int], *, delay: float = 0.0) -> None:
        super().__init__(address, _Handler)
        self.authority = TimeStampAuthority()
        self.delay = delay
        self._lock = threading.Lock()
        self._failures: collections.deque[FailureMode] = collections.deque()
        self.requests = 0
        self.cpu_seconds = 0.0

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def fail_next(self, count: int, mode: FailureMode) -> None:
        """The next ``count`` requests fail as ``mode``: HTTP 500, a ``rejection`` reply, or the
        connection closed with no answer."""
        if mode not in ("http500", "reject", "drop"):
            raise ValueError(f"unknown failure mode {mode!r}")
        with self._lock:
            self._failures.extend([mode] * count)

    def take_failure(self) -> FailureMode | None:
        with self._lock:
            return self._failures.popleft() if self._failures else None

    def count_request(self) -> None:
        with self._lock:
            self.requests += 1

    @property
    def tokens(self) -> int:
        """Tokens issued (granted replies)."""
        return self.authority.issued

    def add_cpu(self, seconds: float) -> None:
        with self._lock:
            self.cpu_seconds += seconds


class LoopbackTsa:
    """A TSA served from a thread of this process, for tests: ``url``, ``root_der``, ``delay`` (settable
    while it runs), ``fail_next``, and the counters ``requests``, ``tokens``, ``cpu_seconds`` (CPU of the
    threads answering, sleeps excluded)."""

    def __init__(self, *, delay: float = 0.0, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = TsaServer((host, port), delay=delay)
        # a short poll: shutdown() waits up to one interval, and tests start and stop many of these
        serve = functools.partial(self._server.serve_forever, poll_interval=0.05)
        self._thread = threading.Thread(target=serve, name="loopback-tsa", daemon=True)

    def __enter__(self) -> LoopbackTsa:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def root_der(self) -> bytes:
        return self._server.authority.root_der

    @property
    def certificate_der(self) -> bytes:
        return self._server.authority.certificate_der

    @property
    def delay(self) -> float:
        return self._server.delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        self._server.delay = seconds

    def fail_next(self, count: int, mode: FailureMode) -> None:
        self._server.fail_next(count, mode)

    @property
    def requests(self) -> int:
        return self._server.requests

    @property
    def tokens(self) -> int:
        return self._server.tokens

    @property
    def cpu_seconds(self) -> float:
        return self._server.cpu_seconds


class TsaProcess:
    """This TSA as a process of its own, for a benchmark that reports the TSA's CPU apart from its own.
    Started when made: ``url``, ``root_der``; ``stop()`` (or the end of a ``with`` block) ends it and
    returns (tokens issued, CPU seconds it spent serving); ``summary`` then holds all it reported
    (requests, tokens, cpu_seconds, cpu_ms_per_token, handler_cpu_seconds)."""

    def __init__(self, *, delay: float = 0.0, python: str = sys.executable) -> None:
        command = [python, str(Path(__file__).resolve()), "--port", "0", "--delay", str(delay)]
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            self._process.kill()
            raise RuntimeError(f"the TSA process did not start (exit code {self._process.wait()})")
        ready = json.loads(line)
        self.url: str = ready["url"]
        self.root_der = Path(ready["root_certificate"]).read_bytes()
        self.summary: dict[str, float | int | None] = {}

    def __enter__(self) -> TsaProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> tuple[int, float]:
        """Ends the process (once) and returns the tokens it issued and the CPU seconds it spent."""
        process = self._process
        if process.returncode is None:
            assert process.stdin is not None and process.stdout is not None
            try:
                process.stdin.close()  # the end of its input stops it and makes it print its summary
                line = process.stdout.readline()
                process.wait(timeout=30)
                self.summary = json.loads(line) if line else {}
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        return int(self.summary.get("tokens") or 0), float(self.summary.get("cpu_seconds") or 0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port (the URL is printed)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--root-out", type=Path, help="where to write the root certificate (DER)")
    args = parser.parse_args(argv)

    server = TsaServer((args.host, args.port), delay=args.delay)
    root_path = args.root_out or Path(tempfile.mkdtemp(prefix="loopback-tsa-")) / "tsa-root.der"
    root_path.write_bytes(server.authority.root_der)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    def watch_stdin() -> None:
        # the parent closing our stdin (or dying) stops us as surely as SIGTERM
        while os.read(sys.stdin.fileno(), 4096):
            pass
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ready_cpu = time.process_time()
    print(json.dumps({"url": server.url, "root_certificate": str(root_path)}), flush=True)
    while not stop.wait(0.5):
        pass
    cpu = time.process_time() - ready_cpu
    server.shutdown()
    server.server_close()
    tokens = server.tokens
    summary = {
        "requests": server.requests,
        "tokens": tokens,
        "cpu_seconds": round(cpu, 4),
        "cpu_ms_per_token": round(cpu / tokens * 1000, 3) if tokens else None,
        "handler_cpu_seconds": round(server.cpu_seconds, 4),
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # the parent went away before reading the summary
        sys.exit(1)
