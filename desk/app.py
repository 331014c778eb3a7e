"""The desk's web app (Flask, pages rendered on the server, no script): routes, the session cookie, CSRF
tokens, security headers, and the one map from the error tree to HTTP statuses (``STATUS``).

Every route says who may use it (``ROUTES`` lists them for the role matrix test); the use cases check
again (``usecases.desk.require``), the role and the branch of the policy asked for. An ID number is
taken only from a POSTed form, never from a URL; the access log carries no query strings.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask, Response, g, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from core import lifecycle
from core.config import Settings
from core.errors import (
    AuditNotFound,
    ComponentUnavailable,
    IntegrityIncident,
    IssuanceError,
    LoginRefused,
    NotPermitted,
    NotSignedIn,
    ObjectCorrupt,
    ObjectMissing,
    PolicyNotFound,
    PolicyNotReissuable,
    ReissueRefused,
    SerialError,
    UsageError,
)
from core.wording import ENDORSEMENT_TYPE_LABELS, ID_TYPE_LABELS
from desk import admin, audits, operations
from usecases.desk import MAX_UPLOAD, REISSUE_REASONS, Desk, SignedIn, may
from usecases.verification import KIND_TEXT, STATUS_TEXT

logger = logging.getLogger(__name__)
CHINA = ZoneInfo("Asia/Shanghai")
SESSION_COOKIE = "issuance_session"
LOGIN_COOKIE = "issuance_login"  # the sign-in form's CSRF nonce (there is no session yet)

# The one map from the error tree to HTTP statuses: the first class an error is an instance of wins.
STATUS: list[tuple[type[IssuanceError], int, str]] = [
    (NotSignedIn, 401, "请登录 Sign in"),
    (LoginRefused, 401, "登录失败 Sign-in refused"),
    (NotPermitted, 403, "无权限 Not permitted"),
    (PolicyNotFound, 404, "未找到 Not found"),
    (AuditNotFound, 404, "未找到 Not found"),
    (ReissueRefused, 409, "不予办理 Refused"),
    (PolicyNotReissuable, 409, "不予补发 Not reissued"),
    (SerialError, 409, "单证号不可用 Print serial refused"),
    (UsageError, 400, "请求有误 Bad request"),
    (IntegrityIncident, 500, "档案校验失败 Archive integrity incident"),
    (ObjectCorrupt, 500, "档案校验失败 Archive integrity incident"),
    (ObjectMissing, 500, "档案缺失 Archived object missing"),
    (ComponentUnavailable, 503, "服务暂不可用 Unavailable"),
    (IssuanceError, 500, "出错 Error"),
]
ROLE_TEXT = {
    "applicant": "投保人 applicant",
    "insured": "被保险人 insured",
    "beneficiary": "受益人 beneficiary",
}
POLICY_STATUS = {
    "issued": "有效 issued",
    "cancelled": "已注销 cancelled",
    "surrendered": "已退保 surrendered",
}
REQUEST_STATUS = {"pending": "待审批 pending", "refused": "已拒绝 refused", "released": "已放行 released"}
COPY_TEXT = {
    "customer": "客户联 customer copy",
    "archive": "档案联 archive copy",
    "reissue": "补发件 reissue",
}
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

# Who may open each route: "public", "signed-in", or a permission of usecases.desk.PERMISSIONS.
ROUTES: dict[str, str] = {}


def status_of(error: IssuanceError) -> tuple[int, str]:
    for kind, status, title in STATUS:
        if isinstance(error, kind):
            return status, title
    return 500, "出错 Error"


def create_app(settings: Settings, *, desk: Desk | None = None, proxied: bool = False) -> Flask:
    """The desk for ``settings`` (its own ``Desk`` unless one is given). ``proxied``: behind a reverse
    proxy that sets X-Forwarded-For/-Proto/-Host (one hop), so that HTTPS is seen and cookies are Secure."""
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=MAX_UPLOAD + 64 * 1024, TEMPLATES_AUTO_RELOAD=False)
    if proxied:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    app.extensions["desk"] = the_desk = desk or Desk(settings)

    def route(rule: str, who: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register ``rule`` for ``who``: the session is checked, then the permission, before the view."""

        def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
            @wraps(view)
            def guarded(**kwargs: Any) -> Any:
                if who != "public":
                    g.session = the_desk.session(request.cookies.get(SESSION_COOKIE))
                    if request.method == "POST" and not the_desk.csrf_ok(g.session, request.form.get("csrf")):
                        raise NotPermitted("the form has expired or did not come from this desk; try again")
                    if who != "signed-in" and not may(g.session.user, who):
                        raise NotPermitted(f"{g.session.user.name} may not open this page")
                elif request.method == "POST":
                    nonce = request.cookies.get(LOGIN_COOKIE, "")
                    if not nonce or not secrets.compare_digest(
                        the_desk.login_csrf(nonce), request.form.get("csrf", "")
                    ):
                        raise NotPermitted("the form has expired or did not come from this desk; try again")
                return view(**kwargs)

            ROUTES[rule] = who
            app.add_url_rule(rule, view.__name__, guarded, **options)
            return guarded

        return decorate

    def page(template: str, **context: Any) -> str:
        session: SignedIn | None = g.get("session")
        return render_template(
            template,
            me=session.user if session else None,
            csrf=session.csrf if session else "",
            messages=g.get("messages", []),
            **context,
        )

    @app.context_processor
    def helpers() -> dict[str, Any]:
        session: SignedIn | None = g.get("session")
        return {
            "can": lambda action, branch=None: bool(session) and may(session.user, action, branch),
            "reasons": REISSUE_REASONS,
            "role_text": ROLE_TEXT,
            "kind_text": KIND_TEXT,
            "status_text": {**STATUS_TEXT, **POLICY_STATUS, **REQUEST_STATUS},
            "copy_text": COPY_TEXT,
            "id_type_text": ID_TYPE_LABELS,
        }

    app.add_template_filter(lambda d: _china(d, "%Y-%m-%d"), "day")
    app.add_template_filter(lambda d: _china(d, "%Y-%m-%d %H:%M"), "minute")
    # a period ends at midnight, exclusive (the record contract): its last day is the day before
    app.add_template_filter(lambda d: _china(d and d - timedelta(microseconds=1), "%Y-%m-%d"), "lastday")

    def login_page(
        status: int = 200, *, name: str = "", next_url: str = "/", error: str | None = None
    ) -> Response:
        nonce = secrets.token_urlsafe(24)
        g.messages = [("error", error)] if error else []
        response = Response(
            page("login.html", login_csrf=the_desk.login_csrf(nonce), name=name, next=next_url), status
        )
        response.set_cookie(LOGIN_COOKIE, nonce, httponly=True, samesite="Lax", secure=request.is_secure)
        return response

    # --- every request -----------------------------------------------------------------------------------

    @app.before_request
    def started() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers.setdefault("Cache-Control", "no-store")
        elapsed = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        response.headers["Server-Timing"] = f"app;dur={elapsed:.1f}"
        # the path only: a query string may hold a name searched for
        logger.info("%s %s %s %.1f ms", request.method, request.path, response.status_code, elapsed)
        return response

    @app.errorhandler(IssuanceError)
    def refused(error: IssuanceError) -> Any:
        status, title = status_of(error)
        if isinstance(error, NotSignedIn) and request.method == "GET":
            response = login_page(status, next_url=_safe_next(request.full_path), error=error.message)
            response.delete_cookie(SESSION_COOKIE)
            return response
        if status >= 500:
            logger.error("%s %s: %s", request.method, request.path, error.message)
        back = request.referrer if request.referrer and request.referrer.startswith(request.host_url) else "/"
        return page("error.html", title=title, message=error.message, hint=error.hint, back=back), status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Any:
        # an unknown address or method gets the desk's page (styled, with a way back), not werkzeug's
        title = f"{error.code} {error.name}"
        return page("error.html", title=title, message=error.description, hint=None, back="/"), error.code

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_error: HTTPException) -> Any:
        return page(
            "error.html",
            title="文件过大 Too large",
            message=f"at most {MAX_UPLOAD // 2**20} MB",
            hint=None,
            back="/",
        ), 413

    # --- public --------------------------------------------------------------------------------------------

    @route("/healthz", "public")
    def healthz() -> Any:
        the_desk.index.schema_version()  # the database answers
        return {"ok": True}

    @route("/login", "public", methods=["GET", "POST"])
    def login() -> Any:
        next_url = _safe_next(request.values.get("next", "/"))
        if request.method == "GET":
            return login_page(next_url=next_url)
        name = request.form.get("name", "").strip()
        try:
            token, _signed_in = the_desk.sign_in(name, request.form.get("password", ""))
        except LoginRefused as e:
            text = (
                "账户已锁定 15 分钟 This account is locked for 15 minutes after 10 failed sign-ins"
                if e.reason == "locked"
                else "用户名或密码不正确 Name or password not accepted"
            )
            return login_page(401, name=name[:64], next_url=next_url, error=text)
        response = redirect(next_url, 303)
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Lax", secure=request.is_secure)
        response.delete_cookie(LOGIN_COOKIE)
        return response

    @route("/logout", "signed-in", methods=["POST"])
    def logout() -> Any:
        the_desk.sign_out(g.session)
        response = redirect(url_for("login"), 303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @route("/verify/<code>", "public")
    def verify(code: str) -> Any:
        try:
            doc = the_desk.verify(code)
        except PolicyNotFound as e:
            return page("verify.html", doc=None, message=e.message), 404
        return page("verify.html", doc=doc)

    @route("/verify", "public", methods=["GET", "POST"])
    def verify_upload() -> Any:
        check = None
        if request.method == "POST":
            upload = request.files.get("pdf")
            if upload is None:
                raise UsageError("choose a PDF file to check")
            check = the_desk.check_upload(upload.read(MAX_UPLOAD + 1))
        nonce = secrets.token_urlsafe(24)
        response = Response(
            page(
                "verify_upload.html",
                check=check,
                login_csrf=the_desk.login_csrf(nonce),
                max_mb=MAX_UPLOAD // 2**20,
            )
        )
        response.set_cookie(LOGIN_COOKIE, nonce, httponly=True, samesite="Lax", secure=request.is_secure)
        return response

    # --- everyone signed in ----------------------------------------------------------------------------

    @route("/", "signed-in")
    def home() -> Any:
        user = g.session.user
        pending = len(the_desk.pending_requests(user)) if may(user, "approve_reissue") else 0
        return page("home.html", pending=pending)

    # --- clerks and supervisors ------------------------------------------------------------------------

    @route("/policies", "find")
    def policies() -> Any:
        q = request.args.get("q", "")
        found = the_desk.find(g.session.user, q) if q.strip() else []
        return page(
            "policies.html", q=q, found=found, searched=bool(q.strip()), branches=g.session.user.branches
        )

    @route("/policies/by-id", "find", methods=["POST"])
    def policies_by_id() -> Any:
        found = the_desk.find_by_id(g.session.user, request.form.get("id_no", ""))
        return page("policies.html", q="", found=found, searched=True, branches=g.session.user.branches)

    @route("/policies/<policy_no>", "view_policy")
    def policy(policy_no: str) -> Any:
        view = the_desk.policy(g.session.user, policy_no)
        status = POLICY_STATUS.get(view.policy.status, view.policy.status)
        return page(
            "policy.html",
            page=view,
            p=view.policy,
            status_text=status,
            field_text=lifecycle.FIELD_WORDS,
            type_text=ENDORSEMENT_TYPE_LABELS,
        )

    @route("/policies/<policy_no>/v<int:version>/customer.pdf", "view_customer_copy")
    def customer_copy(policy_no: str, version: int) -> Any:
        data = the_desk.copy(g.session.user, policy_no, version, "customer", purpose="view or print")
        return _pdf(data, f"{policy_no.upper()}-v{version}.pdf")

    @route("/policies/<policy_no>/v<int:version>/archive.pdf", "view_archive_copy")
    def archive_copy(policy_no: str, version: int) -> Any:
        data = the_desk.copy(g.session.user, policy_no, version, "archive", purpose="audit reading")
        return _pdf(data, f"{policy_no.upper()}-v{version}-archive.pdf")

    @route("/policies/<policy_no>/v<int:version>/pages/<int:page_no>.png", "view_customer_copy")
    def page_image(policy_no: str, version: int, page_no: int) -> Any:
        png = the_desk.page_thumbnail(g.session.user, policy_no, version, page_no)
        # no-store like every page: a cached image of a customer's page would outlive the sign-out on a
        # shared counter browser (the desk keeps the images in memory, so asking again is cheap)
        return Response(png, mimetype="image/png")

    @route("/policies/<policy_no>/reissue", "reissue", methods=["POST"])
    def reissue(policy_no: str) -> Any:
        form = request.form
        made = the_desk.request_reissue(
            g.session.user,
            policy_no,
            reason=form.get("reason", ""),
            requester_id_no=form.get("requester_id_no", ""),
            new_serial=form.get("new_serial") or None,
        )
        return redirect(url_for("reissue_request", request_id=made.request_id), 303)

    @route("/reissues/<int:request_id>", "reissue")
    def reissue_request(request_id: int) -> Any:
        r = the_desk.reissue_request(g.session.user, request_id)
        return page("request.html", r=r, status_text=REQUEST_STATUS)

    @route("/reissues/<int:request_id>/copy.pdf", "reissue")
    def reissued_copy(request_id: int) -> Any:
        r, data = the_desk.reissued_copy(g.session.user, request_id, purpose="print")
        return _pdf(data, f"{r.policy_no}-reissue-v{r.version}.pdf")

    @route("/reissues", "approve_reissue")
    def reissue_queue() -> Any:
        return page("queue.html", pending=the_desk.pending_requests(g.session.user))

    @route("/reissues/<int:request_id>/decision", "approve_reissue", methods=["POST"])
    def decide(request_id: int) -> Any:
        decision = request.form.get("decision")
        if decision not in ("approve", "refuse"):
            raise UsageError("approve or refuse")
        the_desk.decide(
            g.session.user, request_id, approve=decision == "approve", note=request.form.get("note", "")
        )
        return redirect(url_for("reissue_request", request_id=request_id), 303)

    # --- auditors, operators, admins: their pages are in desk/audits.py, desk/operations.py, desk/admin.py
    for module in (audits, operations, admin):
        module.register(app, route, page, the_desk)
    return app


def _pdf(data: bytes, filename: str) -> Response:
    return Response(
        data,
        mimetype="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{filename}"', "Cache-Control": "no-store"},
    )


def _safe_next(target: str) -> str:
    """Only a path of this desk: never another site (an open redirect), never a query with an ID."""
    target = (target or "/").rstrip("?")
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target[:300]


def _china(value: datetime | None, fmt: str) -> str:
    return value.astimezone(CHINA).strftime(fmt) if value is not None else ""
