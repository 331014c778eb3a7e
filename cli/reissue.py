"""CLI commands for lost-policy reissue (issue 6): issuance reissue, issuance serials.

CLI-layer code: it parses and prints; the use cases (``usecases.reissue``) stay silent and raise. Exit
codes are mapped in ``cli.main.main`` (see ``core.errors``).
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.table import Table

from cli.common import iso_date, settings_from, stdout_console, write_file
from core.errors import EXIT_OK

# Each command imports its use case when it runs: together they take over a second to import
# (docs/performance.md, "Start-up"), which `issuance --help` or `find` should not pay.

CHINA = ZoneInfo("Asia/Shanghai")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``reissue`` and ``serials issue|reconcile|void|report`` to the ``issuance`` parser."""
    reissue = sub.add_parser(
        "reissue",
        help="reissue a lost or damaged policy (补发): marked copy, new version, old serial voided",
        description=(
            "Make the reissued copy (the archived customer copy, SHA-256 verified, with a 补发件 mark on "
            "every page), file it as a new version, void the old print serial and use the new one."
        ),
    )
    reissue.add_argument("policy_no")
    reissue.add_argument("--reason", required=True, choices=("lost", "damaged", "other"))
    reissue.add_argument(
        "--by",
        required=True,
        metavar="USER",
        help="the clerk doing the reissue: a known user with role clerk or supervisor",
    )
    reissue.add_argument(
        "--requester-id-no",
        metavar="ID_NO",
        help="the requester's ID number: kept only as a keyed hash, never stored or logged in clear",
    )
    reissue.add_argument("--new-serial", metavar="SERIAL", help="the pre-printed form the copy is printed on")
    reissue.add_argument("-o", "--out", type=Path, required=True, help="where to write the reissued PDF")
    reissue.set_defaults(handler=_reissue)

    serials = sub.add_parser(
        "serials", help="pre-printed form serials (单证): issue, reconcile, void, report"
    )
    serials_sub = serials.add_subparsers(dest="serials_command", metavar="SERIALS_COMMAND")
    issue = serials_sub.add_parser(
        "issue",
        help="register a range of pre-printed forms as issued to a clerk",
        description="Serials are a prefix and a zero-padded number, e.g. BJ2026-0000123, or digits only.",
    )
    issue.add_argument("first", metavar="FROM")
    issue.add_argument("last", metavar="TO")
    issue.add_argument("--to", required=True, metavar="CLERK_ID", help="the clerk the forms are issued to")
    issue.add_argument("--branch", help="6-digit branch code")
    issue.add_argument("--by", help="who registers them (default: the operator)")
    issue.set_defaults(handler=_serials_issue)

    reconcile = serials_sub.add_parser("reconcile", help="reconcile (核销) used or voided serials")
    reconcile.add_argument("serials", nargs="+", metavar="SERIAL")
    reconcile.add_argument("--by", help="who reconciles them (default: the operator)")
    reconcile.set_defaults(handler=_serials_reconcile)

    void = serials_sub.add_parser(
        "void",
        help="void lost or spoilt blank forms (作废): recorded in the ledger, counted in the report",
        description=(
            "Void blank forms (issued, never used) that were lost or spoilt, all or none. A form a document "
            "was printed on is voided by reissuing its policy instead. A voided serial is refused at filing."
        ),
    )
    void.add_argument("serials", nargs="+", metavar="SERIAL")
    void.add_argument("--reason", required=True, choices=("lost", "spoilt"))
    void.add_argument(
        "--by", required=True, metavar="USER", help="who voids them: a known user with role operator"
    )
    void.set_defaults(handler=_serials_void)

    report = serials_sub.add_parser(
        "report",
        help="counts and the overdue rates (超期未核销率, 超期未回收率) for a period",
        description=(
            "超期未核销率 = overdue / (awaiting + reconciled), over the serials used or voided in "
            "the period; overdue = not reconciled by the end of the period and used or voided more "
            "than --overdue-days before it. 超期未回收率 = overdue unreturned / (usable and issued "
            "out + used), over the forms issued to a clerk in the period, in their state at its end: "
            "used = used by then; usable and issued out = neither used nor voided by then; overdue "
            "unreturned = usable and issued out, and issued more than --overdue-days before the end "
            "of the period. Also listed: blank forms voided as lost or spoilt, and forms used by a "
            "clerk other than the one they were issued to."
        ),
    )
    report.add_argument("--from", dest="start", type=iso_date, help="YYYY-MM-DD, China time, inclusive")
    report.add_argument("--to", dest="end", type=iso_date, help="YYYY-MM-DD, inclusive (default: today)")
    report.add_argument("--overdue-days", type=int, default=30, help="days before a form is overdue (30)")
    report.add_argument("--json", action="store_true", help="one JSON object")
    report.set_defaults(handler=_serials_report)

    for command in (reissue, issue, reconcile, void, report):
        command.add_argument("--config", type=Path, help="configuration file (default: ./issuance.toml)")


def _reissue(args: argparse.Namespace) -> int:
    from usecases.reissue import ReissueRequest, reissue_copy

    request = ReissueRequest(
        policy_no=args.policy_no,
        reason=args.reason,
        clerk=args.by,
        requester_id_no=args.requester_id_no,
        new_serial=args.new_serial,
    )
    done = reissue_copy(settings_from(args), request)
    write_file(args.out, done.pdf)  # only after the index commit: a refused reissue writes no file
    serials = []
    if done.old_serial:
        serials.append(f"serial {done.old_serial} voided")
    if done.new_serial:
        serials.append(f"serial {done.new_serial} used")
    print(
        f"{args.out}: {done.policy_no} reissued (第{done.reissue_no}次补发) as version {done.version}, "
        f"{done.pages} pages, sha256 {done.copy.sha256[:16]}…"
        + (f"; {', '.join(serials)}" if serials else "")
    )
    print(f"  from v{done.source_version} (sha256 {done.source_sha256[:16]}… verified); mark: {done.mark}")
    return EXIT_OK


def _serials_issue(args: argparse.Namespace) -> int:
    from usecases.reissue import issue_serials

    issued = issue_serials(
        settings_from(args), first=args.first, last=args.last, to=args.to, by=args.by, branch=args.branch
    )
    note = f" ({issued.adopted} already used by documents, now registered)" if issued.adopted else ""
    print(f"{issued.count} serials {issued.first}..{issued.last} issued to {args.to}{note}")
    return EXIT_OK


def _serials_reconcile(args: argparse.Namespace) -> int:
    from usecases.reissue import reconcile_serials

    done = reconcile_serials(settings_from(args), args.serials, by=args.by)
    print(
        f"{len(done.reconciled)} reconciled" + (f", {len(done.already)} were already" if done.already else "")
    )
    return EXIT_OK


def _serials_void(args: argparse.Namespace) -> int:
    from usecases.reissue import void_serials

    done = void_serials(settings_from(args), args.serials, reason=args.reason, by=args.by)
    print(
        f"{len(done.voided)} voided ({args.reason})"
        + (f", {len(done.already)} were already" if done.already else "")
    )
    return EXIT_OK


OTHER_CLERK_SHOWN = 20  # the text report lists this many forms used by another clerk; --json lists all


def _serials_report(args: argparse.Namespace) -> int:
    from usecases.reissue import serials_report

    result = serials_report(
        settings_from(args), start=args.start, end=args.end, overdue_days=args.overdue_days
    )
    rate = result.rate
    if args.json:
        body = {
            "from": result.start.isoformat() if result.start else None,
            "to": result.end.isoformat(),
            "overdue_days": result.overdue_days,
            "issued": result.issued,
            "used": result.used,
            "voided": result.voided,
            "unregistered": result.unregistered,
            "reconciled": result.reconciled,
            "awaiting": result.awaiting,
            "overdue": result.overdue,
            "overdue_rate": None if rate is None else float(rate),
            "definition": result.definition,
            "issued_out_usable": result.out_blank,
            "issued_out_used": result.out_used,
            "overdue_unreturned": result.unreturned,
            "unreturned_rate": None if result.return_rate is None else float(result.return_rate),
            "unreturned_definition": result.return_definition,
            "voided_lost": result.voided_lost,
            "voided_spoilt": result.voided_spoilt,
            "other_clerk": [
                {
                    "serial": u.serial,
                    "issued_to": u.issued_to,
                    "used_by": u.used_by,
                    "policy_no": u.policy_no,
                    "version": u.version,
                    "used_at": u.used_at.isoformat() if u.used_at else None,
                }
                for u in result.other_clerk
            ],
        }
        print(json.dumps(body, ensure_ascii=False))
        return EXIT_OK

    period = f"{result.start or 'the beginning'} – {result.end}"
    table = Table("单证", "count", title=f"Print serials, {period}")
    for label, value in (
        ("issued 发放", result.issued),
        ("used 使用", result.used),
        ("  of which unregistered 未登记", result.unregistered),
        ("voided 作废", result.voided),
        ("  of which blank, lost 遗失", result.voided_lost),
        ("  of which blank, spoilt 毁损", result.voided_spoilt),
        ("reconciled 已核销", result.reconciled),
        ("awaiting 待核销", result.awaiting),
        (f"overdue 超期未核销 (> {result.overdue_days} days)", result.overdue),
        ("issued in the period, usable and out 可用已发放", result.out_blank),
        ("issued in the period, used 已使用", result.out_used),
        (f"overdue unreturned 超期未回收 (> {result.overdue_days} days)", result.unreturned),
        ("used by another clerk 非领用人使用", len(result.other_clerk)),
    ):
        table.add_row(label, str(value))
    stdout_console().print(table)
    shown = "n/a (nothing used or voided)" if rate is None else f"{float(rate):.2%}"
    total = result.awaiting + result.reconciled
    print(f"超期未核销率 {shown} ({result.overdue}/{total})")
    back = result.return_rate
    shown = "n/a (no form issued in the period)" if back is None else f"{float(back):.2%}"
    print(f"超期未回收率 {shown} ({result.unreturned}/{result.out_blank + result.out_used})")
    for u in result.other_clerk[:OTHER_CLERK_SHOWN]:
        when = f"{u.used_at.astimezone(CHINA):%Y-%m-%d %H:%M}" if u.used_at else ""
        print(
            f"  {u.serial}: issued to {u.issued_to}, used by {u.used_by} ({u.policy_no} v{u.version}) {when}"
        )
    if len(result.other_clerk) > OTHER_CLERK_SHOWN:
        print(f"  … {len(result.other_clerk) - OTHER_CLERK_SHOWN} more (--json lists all)")
    print(f"as of {result.as_of.astimezone(CHINA):%Y-%m-%d %H:%M} China time. {result.definition}.")
    print(f"{result.return_definition}.")
    return EXIT_OK


def serial_lines(record: object) -> list[str]:
    """A registry row as the lines ``issuance find --serial`` prints under the table."""

    def day(value: datetime | None) -> str:
        return f"{value.astimezone(CHINA):%Y-%m-%d %H:%M}" if value else ""

    r = record
    state = {"issued": "issued 已发放", "used": "used 已使用", "voided": "VOIDED 已作废"}[r.state]
    lines = [f"单证 {r.serial}: {state}" + ("" if r.registered else " (never registered as issued)")]
    if r.issued_at:
        where = f", branch {r.branch_code}" if r.branch_code else ""
        lines.append(f"  issued to {r.issued_to}{where} on {day(r.issued_at)}")
    if r.policy_no:
        by = f" by {r.used_by}" if r.used_by else ""
        lines.append(f"  used by {r.policy_no} v{r.version} on {day(r.used_at)}{by}")
    if r.voided_at and r.policy_no is None:  # a blank form, lost or spoilt (issuance serials void)
        lines.append(f"  voided blank on {day(r.voided_at)} by {r.voided_by}: {r.void_reason}")
    elif r.voided_at:
        which = f"reissue v{r.voided_by_version} of {r.policy_no}" if r.voided_by_version else "no reissue"
        lines.append(f"  voided on {day(r.voided_at)} by {which} (clerk {r.voided_by}): {r.void_reason}")
    reconciled = f"on {day(r.reconciled_at)} by {r.reconciled_by}" if r.reconciled_at else "not yet"
    lines.append(f"  reconciled 核销: {reconciled}")
    return lines
