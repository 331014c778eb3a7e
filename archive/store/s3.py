"""``S3Store``: objects in an S3 bucket (AWS, MinIO, Ceph) through boto3."""

from __future__ import annotations

import base64
import contextlib
import logging
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import boto3
from botocore import exceptions as botocore_errors
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

from archive.store.base import (
    DEFAULT_CONTENT_TYPE,
    ITEM_ERRORS,
    SHA256_HEX,
    Leftover,
    ObjectInfo,
    PutItem,
    PutOutcome,
    PutResult,
    aware_utc,
    check_key,
    check_prefix,
    check_retention,
    normal_sha256,
    now_utc,
    verified_for_get,
    verified_for_put,
)
from core.errors import (
    ConfigError,
    IssuanceError,
    ObjectConflict,
    ObjectCorrupt,
    ObjectMissing,
    RetentionViolation,
    StoreError,
)
from core.manifest import Hashed, sha256_hex

logger = logging.getLogger(__name__)

_META_SHA256 = "sha256"
_META_RETAIN_UNTIL = "retain-until"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_RACE_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
_UNSUPPORTED_CODES = frozenset({"NotImplemented", "501"})
_DIGEST_CODES = frozenset({"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"})
_DENIED_CODES = frozenset({"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"})


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    code = str(response.get("Error", {}).get("Code") or "")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code or (str(status) if status else "")


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class S3Store:
    """Objects in an S3 bucket (AWS, MinIO, Ceph), under an optional key prefix.

    Credentials come from boto3's standard chain (environment, shared config, instance role) and are
    never logged or shown. With an ``endpoint_url`` the client uses path-style addressing, which MinIO
    and Ceph need. Each object carries user metadata ``sha256`` (hex) and ``retain-until`` (ISO 8601),
    and is uploaded with ``ChecksumSHA256`` so that a real S3 refuses bytes damaged in transit.

    A put first looks the key up (recorded hash the same: ``created=False``, judged without downloading
    the object, whose bytes every ``get`` checks; another hash: ``ObjectConflict``), then uploads with
    ``If-None-Match: *`` so that a writer racing another fails instead of overwriting. If the server
    answers that it does not implement conditional writes, the store notes it once (a warning) and from
    then on relies on the look-up, checking after the upload that its own bytes won.

    When the bucket has Object Lock enabled (asked once, then remembered) an object put with a future
    ``retain_until`` gets COMPLIANCE retention until then. ``delete`` checks retention itself first,
    then removes every version of the key (a locked bucket is versioned; a plain delete there would
    only hide the object behind a delete marker).

    Network failures, a missing bucket and refused access raise ``StoreError`` (exit code 3) naming
    the endpoint and bucket.
    """

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        client: Any = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
    ) -> None:
        if not _BUCKET.fullmatch(bucket):
            raise ConfigError(f"{bucket!r} is not a valid S3 bucket name")
        prefix = prefix.strip("/")
        if prefix:
            check_key(prefix)
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        if client is None:
            client = _make_client(
                endpoint_url=endpoint_url,
                region=region,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                max_attempts=max_attempts,
            )
        self._client = client
        self._endpoint = _without_userinfo(str(client.meta.endpoint_url))
        put_members = client.meta.service_model.operation_model("PutObject").input_shape.members
        # botocore learnt IfNoneMatch on PutObject in 1.35; older ones would refuse the parameter.
        self._conditional_put: bool = "IfNoneMatch" in put_members
        self._bucket_checked = False
        self._object_lock: bool | None = None
        self._versioned: bool | None = None

    @classmethod
    def from_url(cls, url: str, *, endpoint_url: str | None = None, **options: Any) -> S3Store:
        """Build a store from ``s3://bucket/prefix``; ``options`` go to the constructor."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ConfigError(f"not an S3 store URL: {url!r}", hint="write it as s3://bucket/prefix")
        if parts.query or parts.fragment or "@" in parts.netloc:
            raise ConfigError(
                "an S3 store URL takes only a bucket and a prefix",
                hint="credentials come from the environment (AWS_ACCESS_KEY_ID …), never from the URL",
            )
        return cls(bucket=parts.netloc, prefix=unquote(parts.path), endpoint_url=endpoint_url, **options)

    @property
    def client(self) -> Any:
        """The boto3 client the store talks through (given to the constructor, or made by it): its event
        hooks (``client.meta.events``) are where a caller can watch or interpose on the store's calls."""
        return self._client

    def describe(self) -> str:
        """``s3://bucket/prefix (endpoint …)``: no credentials."""
        return f"s3://{self.bucket}/{self.prefix} (endpoint {self._endpoint})"

    def __repr__(self) -> str:
        return f"S3Store({self.describe()})"

    # talking to the server

    def _unreachable(self, error: Exception) -> StoreError:
        return StoreError(
            f"cannot reach the object store at {self._endpoint} (bucket {self.bucket}): "
            f"{type(error).__name__}",
            hint="check the S3 endpoint URL, the network, and that the service is running",
        )

    def _call(self, operation: str, *, expect: frozenset[str] = frozenset(), **params: Any) -> Any:
        """Call one S3 operation. Error codes in ``expect`` come back as the ClientError; every other
        failure becomes a StoreError that names the endpoint and bucket but no secret."""
        try:
            return getattr(self._client, operation)(Bucket=self.bucket, **params)
        except ClientError as e:
            code = _error_code(e)
            if code in expect:
                raise
            if code == "NoSuchBucket":
                raise StoreError(
                    f"bucket {self.bucket} does not exist at {self._endpoint}",
                    hint="create it (with Object Lock for the archive) or fix the store URL",
                ) from e
            if code in _DENIED_CODES:
                raise StoreError(
                    f"the object store at {self._endpoint} refused {operation} on bucket {self.bucket} "
                    f"({code})",
                    hint="check the S3 credentials in the environment and the bucket policy",
                ) from e
            raise StoreError(
                f"the object store at {self._endpoint} failed {operation} on bucket {self.bucket} "
                f"({code or 'no error code'})",
                hint="see the log; retry later if the service is overloaded",
            ) from e
        except (NoCredentialsError, PartialCredentialsError) as e:
            raise StoreError(
                f"no usable S3 credentials for {self._endpoint} (bucket {self.bucket})",
                hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE",
            ) from e
        except (botocore_errors.ConnectionError, botocore_errors.HTTPClientError) as e:
            raise self._unreachable(e) from e
        except BotoCoreError as e:
            raise StoreError(
                f"the S3 client failed {operation} on {self._endpoint} (bucket {self.bucket}): "
                f"{type(e).__name__}"
            ) from e

    def _check_bucket(self) -> None:
        if not self._bucket_checked:
            # head_object answers a bare 404 for a missing bucket too; ask once so that mistake is named.
            try:
                self._call("head_bucket", expect=_MISSING_CODES | {"NoSuchBucket"})
            except ClientError as e:
                raise StoreError(
                    f"bucket {self.bucket} does not exist at {self._endpoint}",
                    hint="create it (with Object Lock for the archive) or fix the store URL",
                ) from e
            self._bucket_checked = True

    def _has_object_lock(self) -> bool:
        if self._object_lock is None:
            try:
                answer = self._call(
                    "get_object_lock_configuration",
                    expect=frozenset({"ObjectLockConfigurationNotFoundError"})
                    | _UNSUPPORTED_CODES
                    | _DENIED_CODES,
                )
                enabled = answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
            except ClientError as e:
                if _error_code(e) in _DENIED_CODES:
                    logger.warning(
                        "%s: not allowed to read the Object Lock configuration; objects get only the "
                        "bucket's default retention (the store still enforces retain_until itself)",
                        self,
                    )
                enabled = False
            self._object_lock = enabled
            logger.info("bucket %s at %s: Object Lock %s", self.bucket, self._endpoint, enabled)
        return self._object_lock

    def _is_versioned(self) -> bool:
        if self._versioned is None:
            status = self._call("get_bucket_versioning").get("Status")
            self._versioned = status in ("Enabled", "Suspended") or self._has_object_lock()
        return self._versioned

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return self._call("head_object", Key=self._key(key), expect=_MISSING_CODES)
        except ClientError:
            return None

    def _info(self, key: str, answer: dict[str, Any]) -> ObjectInfo:
        meta = {k.lower(): v for k, v in (answer.get("Metadata") or {}).items()}
        candidates: list[datetime] = []
        if meta.get(_META_RETAIN_UNTIL):
            with contextlib.suppress(ValueError):
                candidates.append(
                    aware_utc(datetime.fromisoformat(meta[_META_RETAIN_UNTIL]), _META_RETAIN_UNTIL)
                )
        if isinstance(answer.get("ObjectLockRetainUntilDate"), datetime):
            candidates.append(answer["ObjectLockRetainUntilDate"].astimezone(UTC))
        sha = meta.get(_META_SHA256)
        return ObjectInfo(
            key=key,
            size=int(answer.get("ContentLength", 0)),
            sha256=sha.lower() if sha and SHA256_HEX.fullmatch(sha.lower()) else None,
            retain_until=max(candidates) if candidates else None,
            modified=answer["LastModified"].astimezone(UTC),
        )

    def _read(self, key: str) -> tuple[bytes, ObjectInfo]:
        """One GET: the bytes and what the response says about them (the same fields HEAD gives)."""
        try:
            answer = self._call("get_object", Key=self._key(key), expect=_MISSING_CODES)
        except ClientError as e:
            raise ObjectMissing(f"no object {key} in {self.describe()}") from e
        body = answer["Body"]
        try:
            data = body.read()
        except (BotoCoreError, OSError) as e:  # the connection dropped in the middle of the body
            raise self._unreachable(e) from e
        finally:
            body.close()
        return data, self._info(key, answer)

    # the protocol

    def put(
        self,
        key: str,
        data: bytes,
        *,
        sha256: str | Hashed,
        retain_until: datetime | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> PutResult:
        """Store ``data`` under ``key`` unless the key exists; see the class and module docstrings."""
        full_key = self._key(key)
        digest = verified_for_put(key, data, sha256)
        until = aware_utc(retain_until, "retain_until") if retain_until is not None else None
        self._check_bucket()
        existing = self._head(key)
        if existing is not None:
            return self._settle_existing(key, existing, digest)

        metadata = {_META_SHA256: digest}
        params: dict[str, Any] = {
            "Key": full_key,
            "Body": data,
            "ContentType": content_type,
            # ChecksumAlgorithm sends x-amz-sdk-checksum-algorithm, which S3 (and moto) demand, like
            # Content-MD5, on any upload that sets Object Lock retention.
            "ChecksumAlgorithm": "SHA256",
            "ChecksumSHA256": base64.b64encode(bytes.fromhex(digest)).decode("ascii"),
        }
        if until is not None:
            metadata[_META_RETAIN_UNTIL] = until.isoformat()
            if self._has_object_lock():
                if until > datetime.now(UTC):
                    params["ObjectLockMode"] = "COMPLIANCE"
                    params["ObjectLockRetainUntilDate"] = until
                else:
                    logger.warning("retain_until of %s has passed; stored without Object Lock", key)
        params["Metadata"] = metadata
        return self._upload(key, params, digest, len(data))

    def put_many(self, items: Sequence[PutItem]) -> list[PutOutcome]:
        """``put`` each item in turn; an item's own error is its outcome, a ``StoreError`` ends the call.

        An S3 PUT is durable when it returns, so there is no barrier to share: this is a plain loop
        (in input order, so a key given twice is settled by the second put like any existing object).
        """
        outcomes: list[PutOutcome] = []
        for item in items:
            try:
                outcomes.append(
                    self.put(
                        item.key,
                        item.data,
                        sha256=item.sha256,
                        retain_until=item.retain_until,
                        content_type=item.content_type,
                    )
                )
            except ITEM_ERRORS as e:
                outcomes.append(e)
        return outcomes

    def _upload(self, key: str, params: dict[str, Any], digest: str, size: int) -> PutResult:
        expect = _RACE_CODES | _UNSUPPORTED_CODES | _DIGEST_CODES
        conditional = self._conditional_put
        try:
            if conditional:
                self._call("put_object", IfNoneMatch="*", expect=expect, **params)
            else:
                self._call("put_object", expect=_DIGEST_CODES, **params)
        except ClientError as e:
            code = _error_code(e)
            if code in _DIGEST_CODES:
                raise ObjectCorrupt(
                    f"the object store refused {key}: its bytes were damaged on the way ({code})",
                    hint="nothing was stored; retry the run",
                ) from e
            if code in _UNSUPPORTED_CODES and conditional:
                logger.warning(
                    "%s does not implement conditional puts (If-None-Match); relying on look-ups", self
                )
                self._conditional_put = False
                return self._upload(key, params, digest, size)
            # Another writer published this key between our look-up and our upload.
            existing = self._head(key)
            if existing is None:
                raise ObjectConflict(
                    f"another writer is storing {key} in {self.describe()} at the same moment",
                    hint="re-run: the second attempt settles which bytes the key holds",
                ) from e
            return self._settle_existing(key, existing, digest)
        if not conditional:
            # Without conditional puts a racing writer may have uploaded too; the latest one is visible.
            after = self._head(key)
            if after is not None and self._info(key, after).sha256 != digest:
                raise ObjectConflict(f"another writer stored other bytes under {key} at the same moment")
        logger.debug("stored %s (%d bytes) in %s", key, size, self)
        return PutResult(key=key, created=True, sha256=digest, size=size)

    def _settle_existing(self, key: str, answer: dict[str, Any], digest: str) -> PutResult:
        info = self._info(key, answer)
        stored = info.sha256
        if stored is None:
            # Not written by this store (no recorded hash): judge the bytes themselves.
            stored = sha256_hex(self._read(key)[0])
            logger.warning("object %s in %s has no recorded SHA-256; compared its bytes", key, self)
        if stored != digest:
            raise ObjectConflict(
                f"object {key} already exists in {self.describe()} with other bytes; it was not replaced",
                hint="archived objects are immutable: store a change as a new version",
            )
        return PutResult(key=key, created=False, sha256=digest, size=info.size)

    def get(self, key: str, *, sha256: str | None = None) -> bytes:
        """Return the bytes of ``key`` after hashing them here: moto and some S3 servers do not verify
        checksums, so the store never trusts the transfer alone."""
        expected = normal_sha256(sha256) if sha256 is not None else None
        self._check_bucket()
        data, info = self._read(key)
        return verified_for_get(key, data, expected or info.sha256, self.describe())

    def recover(self, key: str, *, retain_until: datetime | None = None) -> ObjectInfo | None:
        """S3 stores an object and its metadata in one request: nothing is ever half-published."""
        return self.head(key)

    def leftovers(self) -> Iterator[Leftover]:
        """Nothing: every object goes up in one PutObject request, which S3 never shows in part, and no
        multipart upload is ever started, so none can be left open."""
        return iter(())

    def clear_leftovers(self) -> int:
        """Nothing to remove (see ``leftovers``)."""
        return 0

    def observed_sha256(self, key: str) -> str | None:
        try:
            return sha256_hex(self._read(key)[0])
        except IssuanceError:
            return None

    def head(self, key: str) -> ObjectInfo | None:
        """One HEAD request: size, time, recorded hash, and the later of recorded and locked retention."""
        self._check_bucket()
        answer = self._head(key)
        return None if answer is None else self._info(key, answer)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield the objects under ``prefix`` in key order; ``sha256`` and ``retain_until`` are None
        (a listing carries no user metadata; ``head`` has them)."""
        check_prefix(prefix)
        self._check_bucket()
        params: dict[str, Any] = {"Prefix": self.prefix + prefix}
        while True:
            page = self._call("list_objects_v2", **params)
            for item in page.get("Contents", []):
                full_key: str = item["Key"]
                yield ObjectInfo(
                    key=full_key[len(self.prefix) :],
                    size=int(item.get("Size", 0)),
                    sha256=None,
                    retain_until=None,
                    modified=item["LastModified"].astimezone(UTC),
                )
            if not page.get("IsTruncated"):
                return
            params["ContinuationToken"] = page["NextContinuationToken"]

    def delete(self, key: str, *, now: datetime | None = None) -> None:
        """Remove every version of ``key`` if its retention has passed at ``now`` (default: the clock).

        The store's own check comes first; if the server still refuses (its lock runs on its own clock),
        that is a ``RetentionViolation`` too.
        """
        full_key = self._key(key)
        moment = now_utc(now)
        self._check_bucket()
        answer = self._head(key)
        if answer is None:
            return
        check_retention(key, self._info(key, answer).retain_until, moment)
        try:
            if self._is_versioned():
                for version_id in self._versions(full_key):
                    self._call("delete_object", Key=full_key, VersionId=version_id, expect=_DENIED_CODES)
            else:
                self._call("delete_object", Key=full_key, expect=_DENIED_CODES)
        except ClientError as e:
            raise RetentionViolation(
                f"the object store at {self._endpoint} refused to delete {key}: it is still locked there",
                hint="the bucket's Object Lock retention has not ended on the server's clock",
            ) from e
        logger.info("deleted %s from %s (retention ended)", key, self)

    def _versions(self, full_key: str) -> Iterator[str]:
        params: dict[str, Any] = {"Prefix": full_key}
        while True:
            page = self._call("list_object_versions", **params)
            for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                if item["Key"] == full_key:
                    yield item["VersionId"]
            if not page.get("IsTruncated"):
                return
            params["KeyMarker"] = page.get("NextKeyMarker")
            params["VersionIdMarker"] = page.get("NextVersionIdMarker")


def _make_client(
    *,
    endpoint_url: str | None,
    region: str | None,
    connect_timeout: float,
    read_timeout: float,
    max_attempts: int,
) -> Any:
    options: dict[str, Any] = {
        "connect_timeout": connect_timeout,
        "read_timeout": read_timeout,
        "retries": {"max_attempts": max_attempts, "mode": "standard"},
    }
    if endpoint_url:
        options["s3"] = {"addressing_style": "path"}
    try:
        # Checksums only where an operation needs them (we send our own SHA-256): newer botocore would
        # otherwise add CRC32 trailers that older MinIO and Ceph releases reject.
        config = Config(
            **options,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
    except TypeError:  # botocore < 1.36 has no such options and sends no default checksums anyway
        config = Config(**options)
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
