"""The index's tables, one definition for SQLite and PostgreSQL (SQLAlchemy Core).

The schema is versioned by Alembic migrations in ``archive/index/migrations/``; these ``Table``
objects are what the code queries and must match the newest migration (a test compares them).

Personal identifiers never appear here in clear: an ID number is stored as a keyed hash (HMAC-SHA256,
for exact lookup) plus a masked form for display. Phones and addresses are not stored at all.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()


def as_utc(value: datetime | None) -> datetime | None:
    """A time as these columns hand it back, in UTC: every time is stored in UTC, and SQLite keeps no
    zone (it hands datetimes back naive)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


batches = Table(
    "batches",
    metadata,
    Column("batch_id", String(64), primary_key=True),
    Column("input_name", String(255), nullable=False),
    Column("input_sha256", String(64), nullable=False, index=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("records", Integer),
    Column("archived", Integer),
    Column("already_archived", Integer),
    Column("rejected", Integer),
    Column("operator", String(64), nullable=False),
    # how the run ended: finished, interrupted (stopped on request) or aborted (a component failed)
    Column("ended", String(16)),
    Column("not_attempted", Integer),
    Column("reason", String(500)),
)

# One row per archived input record: the pipeline's idempotency key.
records = Table(
    "records",
    metadata,
    Column("record_id", String(64), primary_key=True),
    Column("content_sha256", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("policy_no", String(32), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("batch_id", String(64)),
    Column("line", Integer),
    Column("archived_at", DateTime(timezone=True), nullable=False),
)

policies = Table(
    "policies",
    metadata,
    Column("policy_no", String(32), primary_key=True),
    Column("proposal_no", String(32), nullable=False),
    Column("product_code", String(40), nullable=False, index=True),
    Column("branch_code", String(6), nullable=False, index=True),
    Column("branch_name", String(60), nullable=False),
    Column("applicant_name", String(100), nullable=False),
    Column("insured_name", String(100), nullable=False, index=True),
    Column("insured_id_masked", String(40), nullable=False),
    Column("plate", String(8), index=True),
    Column("vin", String(17), index=True),
    Column("period_start", DateTime(timezone=True), nullable=False),
    Column("period_end", DateTime(timezone=True), nullable=False),
    Column("total_premium", Numeric(16, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("print_serial", String(32), index=True),
    Column("status", String(16), nullable=False),  # issued | surrendered | cancelled
    Column("complete", Boolean, nullable=False),
    Column("missing_images", String(200), nullable=False),  # comma-separated kinds, "" when complete
    Column("issued_at", DateTime(timezone=True), nullable=False, index=True),
    Column("key_prefix", String(200), nullable=False),
    Column("current_version", Integer, nullable=False),
    Column("retain_until", DateTime(timezone=True), nullable=False),
    # when the status last changed, and the endorsement that changed it (issue 25)
    Column("status_since", DateTime(timezone=True)),
    Column("status_by", String(32)),
)

# Every person or organisation named on a policy, searchable by keyed hash of the ID number.
parties = Table(
    "parties",
    metadata,
    Column("policy_no", String(32), ForeignKey("policies.policy_no"), primary_key=True),
    Column("role", String(16), primary_key=True),  # applicant | insured | beneficiary
    Column("seq", Integer, primary_key=True),
    Column("name", String(100), nullable=False, index=True),
    Column("id_type", String(20), nullable=False),
    Column("id_hmac", String(64), nullable=False, index=True),
    Column("id_masked", String(40), nullable=False),
)

# Every version of a policy's documents: issue, endorsement, supplement, reissue. Never updated.
documents = Table(
    "documents",
    metadata,
    Column("policy_no", String(32), ForeignKey("policies.policy_no"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("record_id", String(64)),
    Column("endorsement_no", String(32)),
    Column("batch_id", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("customer_key", String(300), nullable=False),
    Column("customer_sha256", String(64), nullable=False),
    Column("customer_size", BigInteger, nullable=False),
    Column("customer_pages", Integer, nullable=False),
    Column("bundle_key", String(300), nullable=False),
    Column("bundle_sha256", String(64), nullable=False),
    Column("bundle_size", BigInteger, nullable=False),
    Column("bundle_pages", Integer, nullable=False),
    Column("manifest_key", String(300), nullable=False, unique=True),
    Column("manifest_sha256", String(64), nullable=False),
    Column("manifest_size", BigInteger, nullable=False),
    Column("seal_id", String(40)),
    Column("seal_version", String(40)),
    Column("retain_until", DateTime(timezone=True), nullable=False),
    # the verification code (core.verification) the version's QR code leads to; NULL only for versions
    # indexed before it existed and migrated without the key
    Column("verify_code", String(32)),
    # what the statistics count by (issue 25): change | surrender | cancel | add_clauses | reinstate for
    # an endorsement, the clerk who issued the record, and when underwriting approved it
    Column("endorsement_type", String(16)),
    Column("clerk", String(20)),
    Column("approved_at", DateTime(timezone=True)),
)
Index("ix_documents_created_at", documents.c.created_at)
Index("ix_documents_verify_code", documents.c.verify_code, unique=True)
# an uploaded PDF is looked up by its hash on the public verification page (issue 24)
Index("ix_documents_customer_sha256", documents.c.customer_sha256)
Index("ix_documents_bundle_sha256", documents.c.bundle_sha256)

# Every value a policy was ever findable by (issue 25): one row per indexed field and value, from the
# version that set it. Names, plate and VIN in clear (as ``policies`` holds them); ID numbers and property
# addresses only as keyed hashes (``Index.identity``). Never updated: an old value stays findable.
lookups = Table(
    "lookups",
    metadata,
    Column("policy_no", String(32), ForeignKey("policies.policy_no"), primary_key=True),
    Column("field", String(40), primary_key=True),  # insured.name, vehicle.plate, property.address, …
    Column("value", String(100), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("since", DateTime(timezone=True), nullable=False),
)
Index("ix_lookups_value", lookups.c.field, lookups.c.value)

# One row per rejected input line (issue 25, statistics): what could be read of it, as the batch report
# shows it (a number that could be personal data is masked there), and the first field named.
rejections = Table(
    "rejections",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("batch_id", String(64)),
    Column("line", Integer),
    Column("kind", String(16)),
    Column("record_id", String(64)),
    Column("policy_no", String(32)),
    Column("branch_code", String(6)),
    Column("product_code", String(40)),
    Column("clerk", String(20)),
    Column("field", String(60)),
)

# Append-only, hash-chained: each event's hash covers its content and the previous event's hash.
ledger = Table(
    "ledger",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(40), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("detail", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
)
Index("ix_ledger_subject", ledger.c.subject)

# One row: the chain's head. Updating it in the same transaction as the append serialises writers on
# both databases (a row lock on PostgreSQL, the write lock on SQLite).
ledger_head = Table(
    "ledger_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("seq", name="uq_ledger_head_seq"),
)

# Pre-printed numbered forms (单证), one row per serial: issued to a clerk → used by a document, or voided
# (by a reissue, or spoilt) → reconciled (核销). A serial first seen when a document used it, never issued
# through ``issuance serials issue``, has ``registered`` false. See archive/serials.py.
print_serials = Table(
    "print_serials",
    metadata,
    Column("serial", String(32), primary_key=True),
    Column("state", String(16), nullable=False),  # issued | used | voided
    Column("registered", Boolean, nullable=False),
    Column("issued_to", String(64)),
    Column("branch_code", String(6)),
    Column("issued_at", DateTime(timezone=True), index=True),
    Column("issued_by", String(64)),
    Column("used_at", DateTime(timezone=True), index=True),
    Column("policy_no", String(32), index=True),
    Column("version", Integer),
    Column("used_by", String(64)),
    Column("voided_at", DateTime(timezone=True), index=True),
    Column("void_reason", String(200)),
    Column("voided_by", String(64)),
    Column("voided_by_version", Integer),  # the reissue version of ``policy_no`` that voided it
    Column("reconciled_at", DateTime(timezone=True), index=True),
    Column("reconciled_by", String(64)),
)

# One row per reissue (补发): the marked copy the customer got, and why. The document version it belongs
# to reuses the source version's customer and archive copies; the marked copy is its own object.
reissues = Table(
    "reissues",
    metadata,
    Column("policy_no", String(32), ForeignKey("policies.policy_no"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("reissue_no", Integer, nullable=False),
    Column("reason", String(16), nullable=False),  # lost | damaged | other
    Column("clerk", String(64), nullable=False),
    Column("reissued_at", DateTime(timezone=True), nullable=False),
    Column("requester_id_hmac", String(64)),
    Column("source_version", Integer, nullable=False),
    Column("source_sha256", String(64), nullable=False),
    Column("copy_key", String(300), nullable=False, unique=True),
    Column("copy_sha256", String(64), nullable=False),
    Column("copy_size", BigInteger, nullable=False),
    Column("copy_pages", Integer, nullable=False),
    Column("old_serial", String(32)),
    Column("new_serial", String(32)),
    UniqueConstraint("policy_no", "reissue_no", name="uq_reissues_number"),
    Index("ix_reissues_copy_sha256", "copy_sha256"),
)

# The people who act on the archive (issue 24, "Identity"): one row per login name. Roles and branch
# prefixes are comma-separated, sorted (``archive.users`` validates them); no personal data beyond names.
# ``password_hash`` is argon2's encoded hash, never the password; failures and the lock serve the lockout.
users = Table(
    "users",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("display_name", String(100), nullable=False),
    Column("roles", String(100), nullable=False),
    Column("branches", String(200), nullable=False),  # "" = every branch
    Column("enabled", Boolean, nullable=False),
    Column("password_hash", String(200)),
    Column("failed_logins", Integer, nullable=False),
    Column("locked_until", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# The desk (issue 24): a signed-in browser is a row keyed by its token's SHA-256 (a stolen table lets
# no one in); ``ended_why``: signed_out | expired | disabled. ``csrf`` is the session's form token.
desk_sessions = Table(
    "desk_sessions",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("user_name", String(64), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Column("ended_why", String(16)),
    Index("ix_desk_sessions_user", "user_name"),
)

# A clerk's reissue (补发) request: pending until a supervisor approves (then filed: ``version``) or
# refuses it; filed at once where the branch needs no approval. The requester's ID number only as HMAC.
reissue_requests = Table(
    "reissue_requests",
    metadata,
    Column("request_id", Integer, primary_key=True, autoincrement=True),
    Column("policy_no", String(32), nullable=False),
    Column("branch_code", String(6), nullable=False),
    Column("reason", String(16), nullable=False),
    Column("clerk", String(64), nullable=False),
    Column("requester_id_hmac", String(64)),
    Column("requester_role", String(16)),
    Column("new_serial", String(32)),
    Column("status", String(12), nullable=False),  # pending | refused | released
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("decided_by", String(64)),
    Column("decided_at", DateTime(timezone=True)),
    Column("note", String(200)),
    Column("version", Integer),
    Index("ix_reissue_requests_policy", "policy_no"),
    Index("ix_reissue_requests_status", "status", "branch_code"),
)
