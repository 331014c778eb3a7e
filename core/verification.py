"""Verification codes: what the QR code on page 1 of an issued document leads to (电子保单验真).

A code names one version of one policy. It is derived with the centre's HMAC key (the key the index
hashes ID numbers with), so nobody without the key can compute the code of a policy number they know,
or walk through codes to find policies: 100 bits are far beyond guessing, and the index answers only
for codes it holds. The code carries no personal data, so it may sit in a URL.

    code = verification_code(settings.hmac_key, "PDAC264403050070000001", 1)   # 'k3q…' (20 characters)
    verification_url("https://verify.example.com.cn", code)                  # '…/verify/k3q…'
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

__all__ = ["CODE_BITS", "CODE_LENGTH", "normalise_code", "verification_code", "verification_url"]

CODE_BITS = 100
CODE_LENGTH = CODE_BITS // 5  # base32: five bits a character
# Domain separation: the same key makes the index's ID-number hashes, which must never equal a code.
_DOMAIN = b"verify\x00"
_CODE = re.compile(f"[a-z2-7]{{{CODE_LENGTH}}}")


def verification_code(hmac_key: bytes, policy_no: str, version: int) -> str:
    """The opaque code of ``policy_no``'s version ``version``: lowercase base32 without padding
    (letters and the digits 2-7 only: no 0/O or 1/l to misread, safe in a URL path)."""
    message = _DOMAIN + policy_no.encode("utf-8") + b"\x00" + str(int(version)).encode("ascii")
    digest = hmac.new(hmac_key, message, hashlib.sha256).digest()
    # 13 bytes are 104 bits, 21 base32 characters; the first 20 carry exactly CODE_BITS of them
    return base64.b32encode(digest[:13]).decode("ascii")[:CODE_LENGTH].lower()


def verification_url(public_url: str, code: str) -> str:
    """Where the code is answered: ``public_url`` + ``/verify/`` + ``code``."""
    return public_url.rstrip("/") + "/verify/" + code


def normalise_code(text: str) -> str | None:
    """A code as typed or scanned (any case, surrounding blanks, or the whole URL), or None when it
    cannot be a code at all."""
    text = text.strip()
    if "/verify/" in text:
        text = text.rsplit("/verify/", 1)[1].split("?", 1)[0].split("#", 1)[0].strip("/")
    text = text.lower()
    return text if _CODE.fullmatch(text) else None
