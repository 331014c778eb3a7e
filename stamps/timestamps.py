"""Trusted time: an RFC 3161 client that asks a time-stamping authority (TSA) over HTTP for a token.

A PAdES B-T signature carries, as an unsigned attribute, a token by which the TSA says that the signature
value existed at its time (RFC 3161; ETSI EN 319 142-1). Every signature gets its own token: the request
holds a digest of that signature's value. The request is a fixed structure in which only the digest and
a nonce change, so it is written from a template; the answer is checked for its status and for carrying
the digest and nonce asked for. The token's own signature and certificate are checked by the validator
(``stamps.signing.check_signatures``), not on every issue.

One HTTP/1.1 connection per thread is kept open (keep-alive) to the TSA for the run: the pipeline signs
from several threads at once, and each waits for its own answer while the others go on.
"""

from __future__ import annotations

import http.client
import os
import threading
import urllib.parse
from base64 import b64encode

from asn1crypto import cms, core, tsp

from core.errors import ConfigError, SigningFailed

__all__ = ["Timestamper"]

# DER: SEQUENCE { SEQUENCE { OID sha-256 }, OCTET STRING (32) } — the message imprint of RFC 3161 §2.4.1
_IMPRINT_HEAD = bytes.fromhex("302f300b0609608648016503040201" + "0420")
_VERSION = bytes.fromhex("020101")
_CERT_REQ = bytes.fromhex("0101ff")  # certReq TRUE: the token carries the TSA's certificate


class _TimeStampResp(core.Sequence):
    """RFC 3161's TimeStampResp, whose token is OPTIONAL (absent from a refusal): asn1crypto's own
    ``tsp.TimeStampResp`` requires it and cannot read a refusal (wbond/asn1crypto#286)."""

    _fields = [  # noqa: RUF012 - asn1crypto's declaration style
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(size),)) + size


class Timestamper:
    """Asks the TSA at ``url`` (``ISSUANCE_TSA_URL``) for tokens; ``SigningFailed`` naming the TSA when it
    does not give one after ``attempts`` tries (a TSA that fails or is slow fails the records in flight
    only, with that reason)."""

    def __init__(self, url: str, *, timeout: float = 10.0, attempts: int = 2) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"ISSUANCE_TSA_URL must be an http(s) URL, not {url!r}")
        self.url = url
        self.where = f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._headers = {"Content-Type": "application/timestamp-query", "Connection": "keep-alive"}
        if parts.username:  # a TSA behind basic authentication: the credentials never appear in messages
            user = urllib.parse.unquote(parts.username)
            secret = urllib.parse.unquote(parts.password or "")
            self._headers["Authorization"] = "Basic " + b64encode(f"{user}:{secret}".encode()).decode()
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self._local = threading.local()

    def token(self, digest: bytes) -> bytes:
        """A timestamp token (CMS ``ContentInfo``, DER) over ``digest`` (SHA-256 of a signature value)."""
        if len(digest) != 32:
            raise ValueError("a SHA-256 digest is 32 bytes")
        nonce = os.urandom(8)
        # a positive INTEGER in minimal DER: first byte 0x40..0x7f, so the TSA echoes the same bytes
        nonce_der = b"\x02\x08" + bytes(((nonce[0] & 0x3F) | 0x40,)) + nonce[1:]
        body = _VERSION + _IMPRINT_HEAD + digest + nonce_der + _CERT_REQ
        request = b"\x30" + _der_length(len(body)) + body
        problem = ""
        for _ in range(self.attempts):
            try:
                answer = self._post(request)
            except (OSError, http.client.HTTPException) as e:
                self._drop()
                problem = f"did not answer ({type(e).__name__}: {e})" if str(e) else "did not answer"
                continue
            token, problem = _token_of(answer, digest, nonce_der)
            if token is not None:
                return token
        raise SigningFailed(f"the time-stamping authority {self.where} {problem}; a re-run files the record")

    def _post(self, request: bytes) -> bytes:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            connection = self._local.connection = kind(self._host, self._port, timeout=self.timeout)
        connection.request("POST", self._path, body=request, headers=self._headers)
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            self._drop()
            raise http.client.HTTPException(f"HTTP {response.status}")
        return data

    def _drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()


def _token_of(answer: bytes, digest: bytes, nonce_der: bytes) -> tuple[bytes | None, str]:
    """The token in a TSA's answer, or None and why not."""
    try:
        response = _TimeStampResp.load(answer)
        status = response["status"]["status"].native
        token = response["time_stamp_token"]
        if status not in ("granted", "granted_with_mods") or isinstance(token, core.Void):
            text = response["status"]["status_string"].native
            said = f": {'; '.join(text)}" if text else ""
            return None, f"refused the request (status {status}{said})"
        der = token.dump()
    except (ValueError, TypeError, KeyError) as e:
        return None, f"answered with something that is not a timestamp response ({e})"
    # The token must be about this request: its TSTInfo holds the imprint and the nonce as sent (a
    # search of the DER is enough here; the validator parses and checks the token in full).
    if digest not in der or nonce_der[2:] not in der:
        return None, "answered with a token for another request"
    return der, ""
