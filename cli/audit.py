"""CLI commands for auditor spot checks (issue 7): issuance audit, issuance verify.

CLI-layer code: it prints; the library (``archive.audit``) stays silent and raises. Exit codes: ``audit``
0 when the lot is accepted, 1 when rejected; ``audit --redraw`` 0 when today's draw is the recorded
sample, 1 when it differs; ``audit --orphans`` 1 when it finds an error; ``verify`` 0 when every check
passes, 1 when any fails; ``verify --code`` 0 when the code names an issued document, 2 when no document has
it; 2 for usage, 3 for an unavailable component (``core.errors``).
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from rich.table import Table

from cli.common import iso_date, positive_int, progress_bar, settings_from, stdout_console
from core.errors import EXIT_OK, EXIT_REJECTED, UsageError

# Each command imports its use case when it runs: together they take over a second to import
# (docs/performance.md, "Start-up"), which `issuance --help` or `find` should not pay.

if TYPE_CHECKING:
    from usecases.audit import Draw, LotCriteria, PolicyResult

LEVELS = ("S-1", "S-2", "S-3", "S-4", "I", "II", "III")
AQLS = ("0.65", "1.0", "2.5", "4.0")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``audit`` and ``verify`` to the ``issuance`` parser."""
    audit = sub.add_parser(
        "audit",
        help="spot-check a lot of archived policies (ISO 2859-1 sample, four-property checks, report)",
        description=(
            "Draw a sample from a lot by ISO 2859-1 (normal inspection, single sampling), run every check "
            "on each sampled policy, judge the lot by Ac/Re, write report.{html,json,csv}, archive them "
            "under audits/<id>/ and record the audit in the ledger. With --redraw, draw a recorded "
            "audit's sample again; with --orphans, list objects and index rows that do not match."
        ),
    )
    lot = audit.add_argument_group("the lot (criteria combine; none: the whole archive)")
    lot.add_argument("--batch", metavar="ID", help="policies with a version filed by this batch")
    lot.add_argument("--issued-from", type=iso_date, metavar="YYYY-MM-DD", help="China time, inclusive")
    lot.add_argument("--issued-to", type=iso_date, metavar="YYYY-MM-DD", help="China time, inclusive")
    lot.add_argument("--branch", metavar="CODE", help="6-digit branch code")
    lot.add_argument("--product", metavar="CODE", help="product code, e.g. AUTO-COMM")
    plan = audit.add_argument_group("the plan")
    plan.add_argument("--level", choices=LEVELS, default="II", help="inspection level (default II)")
    plan.add_argument("--aql", choices=AQLS, default="2.5", help="acceptance quality limit (default 2.5)")
    plan.add_argument("--size", type=positive_int, metavar="N", help="a fixed sample size instead")
    plan.add_argument("--seed", type=int, help="the random seed (default: a new one, recorded)")
    plan.add_argument("--stratify", choices=("branch",), help="spread the sample over branches in proportion")
    mode = audit.add_mutually_exclusive_group()
    mode.add_argument("--redraw", metavar="AUDIT_ID", help="draw a recorded audit's sample again")
    mode.add_argument(
        "--orphans", action="store_true", help="objects no index row claims, rows whose objects are missing"
    )
    audit.add_argument("--recheck", action="store_true", help="with --redraw: audit the redrawn sample again")
    audit.add_argument(
        "-o", "--out", type=Path, metavar="DIR", help="report folder (default var/audits/<id>)"
    )
    audit.add_argument(
        "--by",
        metavar="USER",
        help="who audits: a known user with role auditor, recorded in the ledger (default: the operator)",
    )
    audit.add_argument("--json", action="store_true", help="--orphans: one JSON object per finding")
    _check_options(audit)
    audit.set_defaults(handler=_audit)

    verify = sub.add_parser(
        "verify",
        help="run every audit check on one policy (exit 0: all pass, 1: defects), or answer a QR code",
        description=(
            "The four-property checks (真实性, 完整性, 可用性, 安全性) on one archived policy; with --code, "
            "what the verification code of a document's QR code names (电子保单验真), from the index."
        ),
    )
    verify.add_argument("policy_no", nargs="?", help="the policy to check (or --code)")
    verify.add_argument(
        "--code", help="a verification code (or the QR code's whole URL): which issued document it names"
    )
    verify.add_argument("--json", action="store_true", help="the result as one JSON object")
    _check_options(verify)
    verify.set_defaults(handler=_verify)

    for command in (audit, verify):
        command.add_argument("--config", type=Path, help="configuration file (default: ./issuance.toml)")


def _check_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seal-dpi", type=positive_int, default=150, help="resolution seals are found at (default 150)"
    )
    parser.add_argument(
        "--workers", type=positive_int, help="policies checked at once (default: one per CPU)"
    )
    parser.add_argument("--no-thumbnails", action="store_true", help="no page thumbnails in the report")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _criteria(args: argparse.Namespace) -> LotCriteria:
    from usecases.audit import LotCriteria

    if args.issued_from and args.issued_to and args.issued_to < args.issued_from:
        raise UsageError("--issued-to is before --issued-from")
    return LotCriteria(
        batch_id=args.batch,
        issued_from=args.issued_from,
        issued_to=args.issued_to,
        branch=args.branch,
        product=args.product,
    )


def _audit(args: argparse.Namespace) -> int:
    if args.recheck and not args.redraw:
        raise UsageError("--recheck goes with --redraw AUDIT_ID")
    if args.orphans:
        return _orphans(args)
    if args.redraw:
        return _redraw(args)
    from usecases.audit import AuditRequest

    request = AuditRequest(
        criteria=_criteria(args),
        level=args.level,
        aql=args.aql,
        size=args.size,
        seed=args.seed,
        stratify=args.stratify,
    )
    return _run(args, request, redraw_of=None)


def _run(args: argparse.Namespace, request: Any, *, redraw_of: str | None) -> int:

    from usecases.audit import new_audit_id, sampled_audit

    settings = settings_from(args)
    now = datetime.now(UTC)
    audit_id = new_audit_id(now)
    out = args.out or settings.var_dir / "audits" / audit_id
    with progress_bar("checking", hidden=args.no_progress) as progress:
        task = progress.add_task("policies", total=None)

        def drawn(d: Draw) -> None:
            progress.update(task, total=d.plan.sample_size)
            print(_plan_line(d))

        outcome = sampled_audit(
            settings,
            request,
            actor=args.by,
            out_dir=out,
            workers=args.workers or os.cpu_count() or 1,
            on_result=lambda _r: progress.advance(task),
            on_drawn=drawn,
            redraw_of=redraw_of,
            audit_id=audit_id,
            now=now,
            seal_dpi=args.seal_dpi,
            thumbnails=not args.no_thumbnails,
        )
    report = outcome.report
    for result in report.results:
        print(_result_line(result))
    for finding in report.findings:
        print(f"  lot {finding.level}: {finding.check}: {finding.message}")
    verdict = "ACCEPT (接收)" if report.verdict == "accept" else "REJECT (拒收)"
    plan = report.plan
    print(
        f"{report.audit_id}: {report.defects} defective of {plan.sample_size}; Ac {plan.ac} / Re {plan.re} "
        f"-> {verdict}"
    )
    print(f"report: {outcome.files['html']}  (also .json, .csv; archived under audits/{report.audit_id}/)")
    print(f"redraw: issuance audit --redraw {report.audit_id}")
    return EXIT_OK if report.verdict == "accept" else EXIT_REJECTED


def _plan_line(d: Draw) -> str:
    plan, sample = d.plan, d.sample
    how = "fixed size" if plan.fixed_size else f"level {plan.level}"
    whole = ", 100% inspection" if plan.full_inspection else ""
    strata = ""
    if sample.allocation:
        strata = "; by branch " + ", ".join(f"{k}:{v}" for k, v in sample.allocation.items())
    return (
        f"lot N={plan.lot_size}; {how}, AQL {plan.aql} -> letter {plan.code_letter}, n={plan.sample_size}"
        f"{whole}, Ac {plan.ac} / Re {plan.re}; seed {sample.seed}{strata}"
    )


def _result_line(result: PolicyResult) -> str:
    state = "DEFECTIVE" if result.defective else "ok"
    failed = f"  failed: {', '.join(result.failed)}" if result.failed else ""
    score = f"score {result.score}/{result.max_score}"
    return f"  {result.policy_no}  {result.branch_code}  {state:9}  {score}{failed}"


def _redraw(args: argparse.Namespace) -> int:
    from usecases.audit import redraw_audit

    redrawn = redraw_audit(settings_from(args), args.redraw)
    recorded, again = redrawn.recorded, redrawn.again
    r, d = recorded.request, again.drawn
    when = f" on {recorded.at:%Y-%m-%d %H:%M} UTC" if recorded.at else ""
    print(f"{recorded.audit_id}: audited by {recorded.auditor}{when} (read from the {recorded.source})")
    print(
        f"  lot: {r.criteria.describe()}; recorded N={recorded.lot_size}, today N={len(d.lot)}"
        f" ({'the same lot' if again.same_lot else 'the lot has changed since'})"
    )
    print("  " + _plan_line(d))
    for policy_no in d.sample.policy_nos:
        print(f"  {policy_no}")
    if again.same_sample:
        print(f"same sample as recorded: {len(d.sample.policy_nos)} policies")
    else:
        drawn, kept = set(d.sample.policy_nos), set(recorded.sample)
        print(
            f"the sample differs from the one recorded: {len(drawn - kept)} new, {len(kept - drawn)} gone"
            + ("" if again.same_lot else " (the lot changed)")
        )
    if args.recheck:
        return _run(args, recorded.request, redraw_of=recorded.audit_id)
    return EXIT_OK if again.same_sample else EXIT_REJECTED


def _orphans(args: argparse.Namespace) -> int:
    from usecases.audit import orphan_findings

    findings = orphan_findings(settings_from(args))
    errors = sum(1 for f in findings if f.level == "error")
    if args.json:
        for finding in findings:
            print(json.dumps(finding.as_json(), ensure_ascii=False))
    else:
        table = Table("level", "kind", "policy", "key", "what")
        for f in findings:
            colour = "red" if f.level == "error" else "yellow"
            table.add_row(f"[{colour}]{f.level}[/]", f.kind, f.policy_no or "", f.key or "", f.message)
        if findings:
            stdout_console().print(table)
        print(f"{errors} error(s), {len(findings) - errors} warning(s)")
    return EXIT_REJECTED if errors else EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    if (args.policy_no is None) == (args.code is None):
        raise UsageError("give either a policy number or --code CODE", hint="issuance verify --help")
    if args.code is not None:
        return _verify_code(args)
    from usecases.audit import verify_policy

    result, ledger = verify_policy(
        settings_from(args),
        args.policy_no.strip().upper(),
        seal_dpi=args.seal_dpi,
        thumbnails=not args.no_thumbnails,
    )
    if args.json:
        print(json.dumps({**result.as_json(), "ledger_problems": ledger}, ensure_ascii=False, indent=2))
        return EXIT_REJECTED if result.defective else EXIT_OK

    table = Table("四性", "check", "", "evidence")
    for c in result.checks:
        mark = "[green]pass[/]" if c.passed else "[red]FAIL[/]"
        table.add_row(c.aspect, f"{c.title}\n{c.name}", mark, "\n".join(c.evidence[:6]))
    stdout_console().print(table)
    for item in result.scores:
        print(f"{item.item}: {item.points}/{item.max_points}分 ({item.evidence})")
    for problem in ledger:
        print(f"ledger (whole chain): {problem}")
    state = "defective: " + ", ".join(result.failed) if result.defective else "every check passes"
    print(f"{result.policy_no}: {state}; score {result.score}/{result.max_score}")
    return EXIT_REJECTED if result.defective else EXIT_OK


def _verify_code(args: argparse.Namespace) -> int:
    from usecases.verification import KIND_TEXT, STATUS_TEXT, verify_code

    found = verify_code(settings_from(args), args.code)
    if args.json:
        print(json.dumps(found.as_json(), ensure_ascii=False, indent=2))
        return EXIT_OK
    china = ZoneInfo("Asia/Shanghai")
    start = found.period_start.astimezone(china)
    end = found.period_end.astimezone(china)  # exclusive: 2027-12-01 00:00 is the end of 11-30
    kind = KIND_TEXT.get(found.kind, found.kind) + (
        f" {found.endorsement_no}" if found.endorsement_no else ""
    )
    current = (
        "yes, the current version"
        if found.is_current
        else f"no, the current version is {found.current_version}"
    )
    table = Table(
        title=f"[green]genuine[/]: a document issued by this centre (code {found.code})", show_header=False
    )
    table.add_column(style="bold")
    table.add_column()
    for label, value in (
        ("保险单号 policy", found.policy_no),
        ("产品 product", f"{found.product_name} ({found.product_code})"),
        ("承保机构 branch", f"{found.branch_name} ({found.branch_code})"),
        ("保险期间 period", f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} (China time, end exclusive)"),
        ("投保人 applicant", found.applicant),
        ("被保险人 insured", found.insured),
        (
            "文件 document",
            f"version {found.version}: {kind}, issued {found.issued_at.astimezone(china):%Y-%m-%d %H:%M}",
        ),
        ("最新版本 current", current),
        ("状态 status", STATUS_TEXT.get(found.status, found.status)),
    ):
        table.add_row(label, value)
    if found.reissues:
        voided = ", ".join(
            f"{v.serial} (voided {v.voided_at.astimezone(china):%Y-%m-%d} by version {v.reissue_version})"
            for v in found.voided_serials
        )
        table.add_row(
            "补发 reissued", f"{found.reissues} time(s)" + (f"; serials voided: {voided}" if voided else "")
        )
    stdout_console().print(table)
    return EXIT_OK
