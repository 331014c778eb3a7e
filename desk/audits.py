"""The auditors' pages (issue 24): the recorded audits and a form to draw a lot, an audit's plan and
sample, each sampled policy with its archive copy's pages beside the checks, manual findings, the
sign-off, and the reports to download. Every rule is in ``usecases.desk_audits``; these views parse the
form and render the answer. An audit runs in a background thread; its page refreshes itself (a meta
refresh: the CSP allows no script) until the ledger records it."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, g, redirect, request, url_for

from core.errors import AuditNotFound, UsageError
from usecases.desk import Desk
from usecases.desk_audits import (
    AQLS,
    CHECKS,
    LEVELS,
    PROPERTIES,
    REPORT_TYPES,
    SEVERITIES,
    SIGNOFF,
    DeskAudits,
    lot_request,
)

VERDICT_TEXT = {"accept": "接收 accept", "reject": "拒收 reject"}
STATE_TEXT = {
    "drawing": "抽样中 drawing the sample",
    "checking": "检查中 checking",
    "failed": "失败 failed",
    "done": "完成 done",
}
LOT_FIELDS = ("batch_id", "issued_from", "issued_to", "branch", "product", "level", "aql", "size", "seed")


def register(app: Flask, route: Any, page: Any, desk: Desk) -> None:
    """Add the auditors' routes to ``app`` with the app's route guard and page renderer."""
    audits_ = app.extensions["desk_audits"] = DeskAudits(desk)
    texts = {
        "verdict_text": VERDICT_TEXT,
        "severities": SEVERITIES,
        "properties": PROPERTIES,
        "checks": CHECKS,
    }

    @route("/audits", "audit")
    def audits() -> Any:
        user = g.session.user
        own = [b for b in user.branches if len(b) == 6]
        return page(
            "audits.html",
            recorded=audits_.audits(user),
            levels=LEVELS,
            aqls=AQLS,
            branch=own[0] if len(own) == 1 else "",
            **texts,
        )

    @route("/audits", "audit", methods=["POST"])
    def audit_draw() -> Any:
        form = request.form
        fields = {name: form.get(name, "") for name in LOT_FIELDS}
        audit_id = audits_.start(g.session.user, lot_request(**fields, stratify=form.get("stratify", "")))
        return redirect(url_for("audit_page", audit_id=audit_id), 303)

    @route("/audits/<audit_id>", "audit")
    def audit_page(audit_id: str) -> Any:
        user = g.session.user
        job = audits_.job(user, audit_id)
        if job is not None and job.state != "done":
            return page("audit_running.html", job=job, state_text=STATE_TEXT)
        try:
            view = audits_.audit(user, audit_id)
        except AuditNotFound:
            if job is None:
                raise
            # the thread is done and the event is being written: one more refresh
            return page("audit_running.html", job=job, state_text=STATE_TEXT)
        return page("audit.html", a=view, **texts)

    @route("/audits/<audit_id>/policies/<policy_no>", "audit")
    def audit_sample(audit_id: str, policy_no: str) -> Any:
        sample = audits_.sample(g.session.user, audit_id, policy_no)
        return page("audit_policy.html", s=sample, a=sample.audit, p=sample.policy, **texts)

    @route("/audits/<audit_id>/policies/<policy_no>/pages/<int:page_no>.png", "audit")
    def audit_page_image(audit_id: str, policy_no: str, page_no: int) -> Any:
        png = audits_.page_image(g.session.user, audit_id, policy_no, page_no)
        return Response(png, mimetype="image/png", headers={"Cache-Control": "private, max-age=300"})

    @route("/audits/<audit_id>/policies/<policy_no>/findings", "audit", methods=["POST"])
    def audit_finding(audit_id: str, policy_no: str) -> Any:
        form = request.form
        page_text = form.get("page", "").strip()
        if page_text and not page_text.isdigit():
            raise UsageError("the page is a number")
        prop, _, check = form.get("check", "").partition(":")
        entry = audits_.add_finding(
            g.session.user,
            audit_id,
            policy_no,
            prop=prop,
            check=check or None,
            severity=form.get("severity", ""),
            text=form.get("text", ""),
            page=int(page_text) if page_text else None,
        )
        target = url_for("audit_sample", audit_id=audit_id, policy_no=entry.detail["policy_no"])
        return redirect(target + "#findings", 303)

    @route("/audits/<audit_id>/sign-off", "audit", methods=["POST"])
    def audit_sign_off(audit_id: str) -> Any:
        audits_.sign_off(
            g.session.user,
            audit_id,
            decision=request.form.get("decision", ""),
            comment=request.form.get("comment", ""),
        )
        return redirect(url_for("audit_page", audit_id=audit_id) + "#sign-off", 303)

    @route("/audits/<audit_id>/report.<fmt>", "audit")
    def audit_report(audit_id: str, fmt: str) -> Any:
        if fmt not in REPORT_TYPES:
            raise AuditNotFound(f"a report is html, json or csv, not {fmt[:8]}")
        _key, data = audits_.report(g.session.user, audit_id, fmt)
        return _download(data, REPORT_TYPES[fmt], f"{audit_id}-report.{fmt}")

    @route("/audits/<audit_id>/signed/report.<fmt>", "audit")
    def audit_signed_report(audit_id: str, fmt: str) -> Any:
        if fmt not in REPORT_TYPES:
            raise AuditNotFound(f"a report is html, json or csv, not {fmt[:8]}")
        _key, data = audits_.report(g.session.user, audit_id, fmt, signed=True)
        return _download(data, REPORT_TYPES[fmt], f"{audit_id}-signed-report.{fmt}")

    @route("/audits/<audit_id>/signoff.json", "audit")
    def audit_signoff_file(audit_id: str) -> Any:
        _key, data = audits_.report(g.session.user, audit_id, SIGNOFF)
        return _download(data, "application/json", f"{audit_id}-signoff.json")


def _download(data: bytes, mimetype: str, filename: str) -> Response:
    """An archived file to save, never shown in the desk's origin: the HTML report carries its own
    inline styles and embedded images, which the desk's CSP would block (and should)."""
    return Response(
        data,
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )
