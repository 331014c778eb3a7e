"""The desk's use cases (issue 24): who is signed in, what their role and branches allow, and what the
clerks, supervisors and the public do through it. The web pages (``desk/``) only parse requests and
render answers; every rule is here or below, so that the same refusal reaches a browser and a test.

Sessions live in the index database (``desk_sessions``): the browser holds a random token, the table its
SHA-256, so that a copy of the table lets no one in. A session ends when its user signs out, after
``Settings.session_minutes`` without a request, or when the user is disabled.

Every view of a policy's documents, every download, print, reissue, approval and sign-in is a ledger
event naming the user (DESIGN.md invariant 7); a search by ID number is recorded without the number.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from archive.audit.checks import thumbnail_png
from archive.index import LedgerEvent
from archive.index.desk import ReissueRequestRow, SessionRow
from archive.index.lookups import HistoryRow
from archive.reissue import Reissued, ReissueRequest
from archive.users import User
from core import lifecycle
from core.config import Settings
from core.errors import (
    IssuanceError,
    LoginRefused,
    NotPermitted,
    NotSignedIn,
    PolicyNotFound,
    PolicyNotReissuable,
    ReissueRefused,
    UsageError,
    UserError,
)
from pipeline.scratch import run_scratch
from stamps import poppler
from stamps.keys import load_certificates
from stamps.signing import SignatureCheck, check_signatures
from usecases.identity import identity_from
from usecases.reissue import Reissuer
from usecases.session import Archive
from usecases.verification import VerifiedDocument, verify_code

logger = logging.getLogger(__name__)

# What each role may do (DOMAIN.md, "Who may do what"); the pages ask ``may`` and the use cases below
# ``require`` it again, so a page that forgot cannot hand anything out.
PERMISSIONS: dict[str, frozenset[str]] = {
    "find": frozenset({"clerk", "supervisor"}),
    "view_policy": frozenset({"clerk", "supervisor", "auditor"}),
    "view_customer_copy": frozenset({"clerk", "supervisor", "auditor"}),
    "view_archive_copy": frozenset({"auditor"}),
    "reissue": frozenset({"clerk", "supervisor"}),
    "approve_reissue": frozenset({"supervisor"}),
    "audit": frozenset({"auditor"}),
    "operate": frozenset({"operator"}),
    "manage_users": frozenset({"admin"}),
}
REISSUE_REASONS = {"lost": "遗失 lost", "damaged": "损毁 damaged", "other": "其他 other"}
# a requester proves to be the customer with the ID number of one of these parties (DOMAIN.md: reissue
# only to the customer, after checking who asks)
REQUESTER_ROLES = ("applicant", "insured")
# a session's last request is written at most this often: a page with many thumbnails is one write
TOUCH_EVERY = timedelta(seconds=30)
THUMBNAIL_WIDTH = 180
THUMBNAIL_DPI = 40
THUMBNAILS_KEPT = 512  # page images kept in memory (a few KB each)
MAX_UPLOAD = 50 * 1024 * 1024


def may(user: User, action: str, branch: str | None = None) -> bool:
    """Whether ``user`` may do ``action`` (a key of ``PERMISSIONS``), at ``branch`` when one is given."""
    if not user.enabled or not set(user.roles) & PERMISSIONS[action]:
        return False
    return branch is None or not user.branches or any(branch.startswith(p) for p in user.branches)


def require(user: User, action: str, branch: str | None = None) -> None:
    if not may(user, action, branch):
        where = f" at branch {branch}" if branch else ""
        roles = "/".join(sorted(PERMISSIONS[action]))
        raise NotPermitted(f"{user.name} may not {action.replace('_', ' ')}{where} (needs: {roles})")


@dataclass(frozen=True)
class SignedIn:
    """A signed-in browser: the user as they are now, the session's form token and its key."""

    user: User
    csrf: str
    session_key: str  # the token's SHA-256, never the token


@dataclass(frozen=True)
class PolicyPage:
    """What a clerk's policy page shows: the policy, its versions, masked parties, reissues, requests."""

    policy: Any
    versions: list[Any]
    parties: list[Any]
    reissues: list[Any]
    requests: list[ReissueRequestRow]
    approval_needed: bool
    serial: str | None  # the form the policy is printed on now: a reissue voids the old one
    history: list[HistoryRow] = field(default_factory=list)  # indexed fields' values, oldest first


@dataclass(frozen=True)
class UploadCheck:
    """Whether an uploaded PDF is byte for byte a copy this centre issued, and its signatures."""

    sha256: str
    size: int
    issued: tuple[str, int, str] | None  # (policy_no, version, copy) when the hash is in the index
    document: VerifiedDocument | None
    signatures: list[SignatureCheck]
    unreadable: str | None  # why the signatures could not be read (not a PDF)

    @property
    def signature_valid(self) -> bool:
        return bool(self.signatures) and self.signatures[-1].ok


class Desk:
    """The desk's use cases over one open archive (opened once: a page must not pay for it)."""

    def __init__(self, settings: Settings, *, clock: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.clock = clock or (lambda: datetime.now(UTC))
        self.idle = timedelta(minutes=settings.session_minutes)
        self._stack = contextlib.ExitStack()
        try:
            self.archive = self._stack.enter_context(Archive(settings))
            self.index = self.archive.index
            self.people = identity_from(settings, self.index, clock=self.clock)
            # page images are made from customer copies: personal data, in the desk's private folder
            self.scratch = self._stack.enter_context(run_scratch(settings.scratch_dir))
            self.reissuer = self._stack.enter_context(Reissuer(settings, self.archive))
            self._roots = list(load_certificates(settings.trust_roots))
        except BaseException:
            self._stack.close()
            raise
        self._thumbnails: dict[tuple[str, int], bytes] = {}
        self._thumbnails_lock = threading.Lock()
        self._rendering: dict[str, threading.Lock] = {}  # copies being rendered, by SHA-256

    def close(self) -> None:
        self._stack.close()

    def warm_up(self) -> None:
        """Start the reissues' LibreOffice now, so that a clerk's first reissue does not wait for it; a
        LibreOffice that will not start is logged here and reported again at the first reissue."""
        try:
            self.reissuer.warm_up()
        except IssuanceError as e:
            logger.warning("LibreOffice for reissues did not start: %s", e.message)

    def __enter__(self) -> Desk:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- sessions ---------------------------------------------------------------------------------------

    def sign_in(self, name: str, password: str) -> tuple[str, SignedIn]:
        """A new session for ``name`` (the token for the browser, and the session); ``LoginRefused``
        otherwise. The lockout (10 failures in a row, 15 minutes) is the identity's."""
        try:
            user = self.people.authenticate(name, password)
        except LoginRefused as refused:
            if refused.reason != "unknown":  # a name no one has is not recorded: it may be anything typed
                self.index.append_event(
                    LedgerEvent(name, "desk.sign_in_refused", name, {"reason": refused.reason})
                )
            raise
        token = secrets.token_urlsafe(32)
        now = self.clock()
        row = SessionRow(_sha256(token), user.name, secrets.token_urlsafe(32), now, now)
        self.index.open_session(row, event=LedgerEvent(user.name, "desk.signed_in", user.name, {}))
        return token, SignedIn(user, row.csrf, row.token_sha256)

    def session(self, token: str | None) -> SignedIn:
        """The session ``token`` opens; ``NotSignedIn`` when there is none or it has ended."""
        if not token or len(token) > 100:
            raise NotSignedIn("sign in first")
        key = _sha256(token)
        row = self.index.desk_session(key)
        if row is None or row.ended_at is not None:
            raise NotSignedIn("sign in first" if row is None else "your session has ended; sign in again")
        now = self.clock()
        if now - row.last_seen_at > self.idle:
            self.index.end_session(
                key,
                at=now,
                why="expired",
                event=LedgerEvent(row.user_name, "desk.session_expired", row.user_name, {}),
            )
            minutes = self.settings.session_minutes
            raise NotSignedIn(f"your session ended after {minutes:g} minutes without use; sign in again")
        try:
            user = self.people.user(row.user_name)
        except UserError:  # a directory entry that became unusable
            user = None
        if user is None or not user.enabled:
            self.index.end_session(
                key,
                at=now,
                why="disabled",
                event=LedgerEvent(row.user_name, "desk.session_ended", row.user_name, {"why": "disabled"}),
            )
            raise NotSignedIn("your account is disabled")
        if now - row.last_seen_at > TOUCH_EVERY:
            self.index.touch_session(key, now)
        return SignedIn(user, row.csrf, key)

    def sign_out(self, session: SignedIn) -> None:
        self.index.end_session(
            session.session_key,
            at=self.clock(),
            why="signed_out",
            event=LedgerEvent(session.user.name, "desk.signed_out", session.user.name, {}),
        )

    def csrf_ok(self, session: SignedIn, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(session.csrf, token or "")

    def login_csrf(self, nonce: str) -> str:
        """The sign-in form's token for the browser's nonce cookie (no session exists yet)."""
        return hmac.new(self.settings.hmac_key, b"desk-login:" + nonce.encode(), "sha256").hexdigest()

    # --- clerks: finding and reading -------------------------------------------------------------------

    def find(self, user: User, text: str, *, limit: int = 50) -> list[Any]:
        """Policies whose number, plate or name is ``text`` (tried in that order), in the user's branches."""
        require(user, "find")
        text = " ".join(text.split())
        if not text:
            return []
        if len(text) > 100:
            raise UsageError("a search is a policy number, a plate or a name (at most 100 characters)")
        for criterion in ("policy_no", "plate", "name"):
            found = self.index.find(**{criterion: text}, limit=limit)
            found = [p for p in found if may(user, "find", p.branch_code)]
            if found:
                return found
        return []

    def find_by_id(self, user: User, id_no: str, *, limit: int = 50) -> list[Any]:
        """Policies on which the person with ``id_no`` is a party (the number is hashed, never kept)."""
        require(user, "find")
        id_no = id_no.strip()
        if not 6 <= len(id_no) <= 40:
            raise UsageError("an ID number has 6 to 40 characters")
        found = [p for p in self.index.find(id_no=id_no, limit=limit) if may(user, "find", p.branch_code)]
        self.index.append_event(
            LedgerEvent(user.name, "desk.searched_by_id", user.name, {"found": len(found)})
        )
        return found

    def policy(self, user: User, policy_no: str) -> PolicyPage:
        """The policy page's facts; recorded as a view (the page shows the customer copy's pages)."""
        row = self._policy(user, "view_policy", policy_no)
        reissues = self.index.reissues(row.policy_no)
        serial = (self.index.newest_used_serial(row.policy_no) or (row.print_serial, 0))[0]
        if serial in {r.old_serial for r in reissues}:
            serial = None  # reissued without a new form: the old one is void, and none replaces it
        page = PolicyPage(
            policy=row,
            versions=self.index.versions(row.policy_no),
            parties=self.index.parties(row.policy_no),
            reissues=reissues,
            requests=self.index.reissue_requests(policy_no=row.policy_no, limit=20),
            approval_needed=self.approval_needed(row.branch_code),
            serial=serial,
            history=self.index.lookup_history(row.policy_no),
        )
        self.index.append_event(
            LedgerEvent(user.name, "desk.policy_viewed", row.policy_no, {"version": row.current_version})
        )
        return page

    def copy(self, user: User, policy_no: str, version: int, which: str, *, purpose: str) -> bytes:
        """A version's customer or archive copy for viewing or printing, verified against its hash and
        recorded with the user and the purpose (view, print, download)."""
        action = "view_archive_copy" if which == "archive" else "view_customer_copy"
        row = self._policy(user, action, policy_no)
        chosen = self._version(row.policy_no, version)
        key, digest = (
            (chosen.bundle_key, chosen.bundle_sha256)
            if which == "archive"
            else (chosen.customer_key, chosen.customer_sha256)
        )
        data = self.archive.store.get(key, sha256=digest)
        self.index.append_event(
            LedgerEvent(
                user.name,
                "copy.read",
                row.policy_no,
                {
                    "user": user.name,
                    "version": version,
                    "kind": chosen.kind,
                    "copy": which,
                    "sha256": digest,
                    "purpose": purpose,
                    "via": "desk",
                },
            )
        )
        return data

    def page_thumbnail(
        self, user: User, policy_no: str, version: int, page: int, *, which: str = "customer"
    ) -> bytes:
        """Page ``page`` of a version's customer copy (or, for auditors, ``which="archive"``: its archive
        copy) as a small PNG; the page that shows them records the view once (``desk.policy_viewed``,
        or the audit's ``copy.read``)."""
        archive = which == "archive"
        row = self._policy(user, "view_archive_copy" if archive else "view_customer_copy", policy_no)
        chosen = self._version(row.policy_no, version)
        key, digest, pages = (
            (chosen.bundle_key, chosen.bundle_sha256, chosen.bundle_pages)
            if archive
            else (chosen.customer_key, chosen.customer_sha256, chosen.customer_pages)
        )
        if not 1 <= page <= pages:
            raise PolicyNotFound(f"version {version} of {row.policy_no} has no page {page}")
        cached = (digest, page)
        with self._thumbnails_lock:
            if cached in self._thumbnails:
                return self._thumbnails[cached]
            rendering = self._rendering.setdefault(digest, threading.Lock())
        # a page asks for all its pages at once: the first request reads the copy and renders every page
        # in one pdftoppm pass; the others wait for it instead of each reading and rendering the copy
        with rendering:
            with self._thumbnails_lock:
                if cached in self._thumbnails:
                    return self._thumbnails[cached]
            data = self.archive.store.get(key, sha256=digest)
            pngs = _thumbnails(data, folder=self.scratch)
            with self._thumbnails_lock:
                for number, png in enumerate(pngs, 1):
                    if len(self._thumbnails) >= THUMBNAILS_KEPT:
                        self._thumbnails.pop(next(iter(self._thumbnails)))
                    self._thumbnails[(digest, number)] = png
                self._rendering.pop(digest, None)
        if page > len(pngs):
            raise PolicyNotFound(f"version {version} of {row.policy_no} has no page {page}")
        return pngs[page - 1]

    # --- reissue (补发) with a supervisor's approval -------------------------------------------------------

    def approval_needed(self, branch_code: str) -> bool:
        return not any(branch_code.startswith(p) for p in self.settings.no_approval_branches)

    def request_reissue(
        self,
        user: User,
        policy_no: str,
        *,
        reason: str,
        requester_id_no: str,
        new_serial: str | None,
    ) -> ReissueRequestRow:
        """A clerk's reissue request: the requester checked against the applicant and the insured (by
        HMAC); filed at once where the branch needs no approval, else pending for a supervisor."""
        row = self._policy(user, "reissue", policy_no)
        if reason not in REISSUE_REASONS:
            raise UsageError(f"unknown reason {reason!r}", hint="one of: " + ", ".join(REISSUE_REASONS))
        if row.status != lifecycle.IN_FORCE:
            raise PolicyNotReissuable(lifecycle.not_reissued(row.policy_no, row.status, row.status_by))
        id_no = (requester_id_no or "").strip()
        if not id_no:
            raise UsageError("the requester's ID number is needed to reissue", hint="ask for their ID card")
        id_hmac = self.index.identity(id_no)
        roles = self.index.party_roles(row.policy_no, id_hmac=id_hmac) & set(REQUESTER_ROLES)
        if not roles:
            self.index.append_event(
                LedgerEvent(user.name, "reissue.requester_refused", row.policy_no, {"reason": reason})
            )
            raise ReissueRefused(
                "the ID number given is not the applicant's or the insured's on this policy; nothing was "
                "reissued",
                hint="a reissue goes only to the customer (DOMAIN.md)",
            )
        serial = (new_serial or "").strip().upper() or None
        pending = ReissueRequestRow(
            request_id=0,
            policy_no=row.policy_no,
            branch_code=row.branch_code,
            reason=reason,
            clerk=user.name,
            requester_id_hmac=id_hmac,
            requester_role=sorted(roles)[0],
            new_serial=serial,
            status="pending",
            requested_at=self.clock(),
        )
        numbered = self.index.add_reissue_request(
            pending,
            event=lambda r: LedgerEvent(
                user.name,
                "reissue.requested",
                r.policy_no,
                {"request": r.request_id, "reason": reason, "requester": r.requester_role},
            ),
        )
        if self.approval_needed(row.branch_code):
            return numbered
        return self._file(numbered, approver=None)

    def pending_requests(self, user: User) -> list[ReissueRequestRow]:
        """Requests waiting for a supervisor, of the branches ``user`` may approve for."""
        require(user, "approve_reissue")
        return [
            r
            for r in self.index.reissue_requests(status="pending", limit=200)
            if may(user, "approve_reissue", r.branch_code)
        ]

    def decide(self, user: User, request_id: int, *, approve: bool, note: str = "") -> ReissueRequestRow:
        """A supervisor approves (the reissue is filed, the copy released to the clerk) or refuses."""
        request = self.index.reissue_request(request_id)
        if request is None:
            raise PolicyNotFound(f"there is no reissue request {request_id}")
        require(user, "approve_reissue", request.branch_code)
        if request.clerk == user.name:
            raise ReissueRefused("a reissue is approved by another person than the clerk who asked")
        if request.status != "pending":
            raise ReissueRefused(f"request {request_id} is {request.status} already")
        if approve:
            return self._file(request, approver=user.name)
        note = note.strip()[:200]

        def refuse(current: ReissueRequestRow | None) -> tuple[Any, Sequence[LedgerEvent]]:
            if current is None or current.status != "pending":
                raise ReissueRefused(f"request {request_id} was decided meanwhile")
            decided = replace(
                current, status="refused", decided_by=user.name, decided_at=self.clock(), note=note
            )
            event = LedgerEvent(
                user.name, "reissue.refused", current.policy_no, {"request": request_id, "note": note}
            )
            return decided, [event]

        return self.index.change_reissue_request(request_id, refuse)

    def _file(self, request: ReissueRequestRow, *, approver: str | None) -> ReissueRequestRow:
        """File the reissue a request asks for, then mark the request released (one ledger event each)."""
        reissued: Reissued = self.reissuer.reissue(
            ReissueRequest(
                policy_no=request.policy_no,
                reason=request.reason,
                clerk=request.clerk,
                requester_id_hmac=request.requester_id_hmac,
                new_serial=request.new_serial,
            ),
        )

        def release(current: ReissueRequestRow | None) -> tuple[Any, Sequence[LedgerEvent]]:
            assert current is not None  # filed just now from this very row
            released = replace(
                current,
                status="released",
                decided_by=approver,
                decided_at=self.clock() if approver else None,
                version=reissued.version,
            )
            detail = {"request": request.request_id, "version": reissued.version}
            actor = approver or request.clerk
            action = "reissue.approved" if approver else "reissue.released"
            return released, [LedgerEvent(actor, action, request.policy_no, detail)]

        return self.index.change_reissue_request(request.request_id, release)

    def reissue_request(self, user: User, request_id: int) -> ReissueRequestRow:
        """A request, for the clerks and supervisors of its branch."""
        request = self.index.reissue_request(request_id)
        if request is None or not may(user, "reissue", request.branch_code):
            require(user, "reissue")
            raise PolicyNotFound(f"there is no reissue request {request_id} at your branches")
        return request

    def reissued_copy(self, user: User, request_id: int, *, purpose: str) -> tuple[ReissueRequestRow, bytes]:
        """The released reissue's marked copy, for the clerk to print; recorded."""
        request = self.index.reissue_request(request_id)
        if request is None:
            raise PolicyNotFound(f"there is no reissue request {request_id}")
        require(user, "reissue", request.branch_code)
        if request.status != "released" or request.version is None:
            raise ReissueRefused(
                f"request {request_id} is {request.status}: the copy is released once a supervisor approves"
            )
        filed = next(r for r in self.index.reissues(request.policy_no) if r.version == request.version)
        data = self.archive.store.get(filed.copy_key, sha256=filed.copy_sha256)
        self.index.append_event(
            LedgerEvent(
                user.name,
                "copy.read",
                request.policy_no,
                {
                    "user": user.name,
                    "version": request.version,
                    "kind": "reissue",
                    "copy": "reissue",
                    "sha256": filed.copy_sha256,
                    "purpose": purpose,
                    "via": "desk",
                },
            )
        )
        return request, data

    # --- the public: verification ----------------------------------------------------------------------

    def verify(self, code: str) -> VerifiedDocument:
        return verify_code(self.settings, code, index=self.index)

    def check_upload(self, data: bytes) -> UploadCheck:
        """Whether ``data`` is byte for byte a PDF this centre issued, and what its signatures prove."""
        if len(data) > MAX_UPLOAD:
            raise UsageError(f"a file to check is at most {MAX_UPLOAD // (1024 * 1024)} MB")
        digest = hashlib.sha256(data).hexdigest()
        issued = self.index.copy_by_sha256(digest)
        document = None
        if issued is not None:
            versions = self.index.versions(issued[0])
            chosen = next((v for v in versions if v.version == issued[1]), None)
            if chosen is not None and chosen.verify_code:
                document = verify_code(self.settings, chosen.verify_code, index=self.index)
        try:
            signatures, unreadable = check_signatures(data, roots=self._roots), None
        except IssuanceError as e:
            signatures, unreadable = [], e.message
        return UploadCheck(digest, len(data), issued, document, signatures, unreadable)

    # --- helpers ------------------------------------------------------------------------------------------

    def _policy(self, user: User, action: str, policy_no: str) -> Any:
        require(user, action)
        number = (policy_no or "").strip().upper()
        row = self.index.policy_row(number) if 0 < len(number) <= 32 else None
        if row is None:
            raise PolicyNotFound(f"policy {number[:32]} is not in the archive")
        require(user, action, row.branch_code)
        return row

    def _version(self, policy_no: str, version: int) -> Any:
        chosen = next((v for v in self.index.versions(policy_no) if v.version == version), None)
        if chosen is None:
            raise PolicyNotFound(f"policy {policy_no} has no version {version}")
        return chosen


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _thumbnails(pdf: bytes, *, folder: Path) -> list[bytes]:
    """Every page of ``pdf`` as a small PNG, in one pdftoppm pass holding one page at a time."""
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        path = Path(tmp) / "copy.pdf"
        path.write_bytes(pdf)
        return [
            thumbnail_png(page.image(), width=THUMBNAIL_WIDTH)
            for page in poppler.stream_pages(path, dpi=THUMBNAIL_DPI)
        ]
