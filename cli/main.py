"""The ``issuance`` command line. The only place that prints, exits, or maps errors to exit codes.

Results go to stdout (or files), progress bars and logs to stderr. Logs pass through a filter that
masks anything shaped like an ID number or a phone number, whatever the code that logged it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from rich.table import Table

from cli import audit as cli_audit
from cli import reissue as cli_reissue
from cli import serve as cli_serve
from cli import signer as cli_signer
from cli import stats as cli_stats
from cli import users as cli_users
from cli import watch as cli_watch
from cli.common import iso_date, positive_int, progress_bar, settings_from, stdout_console, write_file
from cli.reissue import serial_lines
from core.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_COMPONENT,
    EXIT_OK,
    EXIT_REJECTED,
    IssuanceError,
    RunAborted,
    UsageError,
)
from core.privacy import scrub

# Each command imports its use case when it runs: together they take over a second to import
# (docs/performance.md, "Start-up"), which `issuance --help` or `find` should not pay.

if TYPE_CHECKING:
    from usecases.run import BatchReport

logger = logging.getLogger("issuance")


class _ScrubPersonalData(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


def _configure_logging(verbose: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ScrubPersonalData())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)


def _parser() -> argparse.ArgumentParser:
    from usecases.session import default_pool_size

    parser = argparse.ArgumentParser(
        prog="issuance",
        description="Issuance-centre document pipeline: approved records in, sealed policy documents out.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    render = sub.add_parser(
        "render",
        help="render previews of the customer's PDFs for a batch (no archive)",
        description=(
            "Render previews of policy schedules with their clauses, and endorsements, to PDF: marked"
            " 预览 PREVIEW — 非正式保单 on every page, a SPECIMEN seal, no signature, no QR code."
        ),
    )
    render.add_argument("batch", type=Path, help="batch file: .jsonl, .csv or .xlsx")
    render.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    render.add_argument("--report", type=Path, help="JSON report (default: <out>-report.json beside it)")
    render.add_argument(
        "--workers",
        type=positive_int,
        default=default_pool_size(),
        help="LibreOffice instances kept warm (default: one per CPU, at most 4)",
    )
    render.add_argument("--templates", type=Path, help="templates folder (default: the bundled one)")
    render.add_argument("--cache", type=Path, default=Path("var/cache"), help="cache for clause PDFs")
    render.add_argument("--timeout", type=float, default=120.0, help="seconds per document conversion")
    render.add_argument("--no-progress", action="store_true", help="no progress bar")
    render.set_defaults(handler=_render)

    run = sub.add_parser(
        "run",
        help="issue, seal and file a batch into the archive (store + index + ledger)",
        description="validate → render → seal → bundle → store → index → ledger, for every record of BATCH.",
    )
    run.add_argument("batch", type=Path, help="batch file: .jsonl, .csv or .xlsx")
    run.add_argument("--report", type=Path, help="JSON report (default: var/reports/<batch id>.json)")
    run.add_argument("--workers", type=positive_int, help="LibreOffice instances (default: one per CPU)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument(
        "--cluster",
        metavar="tcp://HOST:PORT",
        help="file the records on the Dask cluster behind this scheduler (S3 store and database index)",
    )
    run.set_defaults(handler=_run)

    find = sub.add_parser("find", help="find archived policies (no clear ID numbers are shown)")
    find.add_argument("--policy-no")
    find.add_argument("--id-no", help="an ID number: hashed before the lookup, never stored or logged")
    find.add_argument("--plate")
    find.add_argument("--name", help="applicant, insured or beneficiary name (exact)")
    find.add_argument("--branch", help="6-digit branch code")
    find.add_argument("--serial", help="print serial (单证流水号)")
    find.add_argument(
        "--address", help="a property's address (exact): hashed before the lookup, never stored or logged"
    )
    find.add_argument("--issued-from", type=iso_date, help="YYYY-MM-DD, China time, inclusive")
    find.add_argument("--issued-to", type=iso_date, help="YYYY-MM-DD, China time, inclusive")
    find.add_argument("--json", action="store_true", help="one JSON object per line")
    find.add_argument("--limit", type=positive_int, default=200)
    find.set_defaults(handler=_find)

    get = sub.add_parser(
        "get",
        help="write an archived document to a file (SHA-256 verified first; the read is recorded)",
        description=(
            "Write a version's customer copy (or the archive copy, with its images) to a file, after its"
            " SHA-256 checks out. Every read is a copy.read event in the ledger naming the user, the"
            " version, the copy and the purpose. The customer copy is read by a clerk, supervisor or"
            " auditor, the archive copy by an auditor."
        ),
    )
    get.add_argument("policy_no")
    get.add_argument("--copy", choices=("customer", "archive"), default="customer")
    get.add_argument("--version", type=positive_int, help="version number (default: the newest)")
    get.add_argument("-o", "--out", type=Path, required=True)
    get.add_argument("--by", metavar="USER", help="who reads the copy, a known user (default: the operator)")
    get.add_argument(
        "--purpose",
        required=True,
        help="why, recorded in the ledger (e.g. a case reference); never an ID or phone number",
    )
    get.set_defaults(handler=_get)

    attach = sub.add_parser("attach", help="file late underwriting images as a supplement version")
    attach.add_argument("policy_no")
    attach.add_argument("kind", help="id_front, id_back, vehicle_license, exemption_notice, …")
    attach.add_argument("files", type=Path, nargs="+")
    attach.add_argument("--label", help="required for kind 'other'")
    attach.add_argument(
        "--by",
        metavar="USER",
        help="who files them: a known user with role clerk or operator, recorded (default: the operator)",
    )
    attach.set_defaults(handler=_attach)

    seals = sub.add_parser("seals", help="the seals that documents are stamped with")
    seals_sub = seals.add_subparsers(dest="seals_command", metavar="SEALS_COMMAND")
    seals_list = seals_sub.add_parser("list", help="list the registered seals and which documents they sign")
    seals_list.set_defaults(handler=_seals_list)
    seals_draw = seals_sub.add_parser("draw", help="draw a seal to a PNG, as it will be stamped")
    seals_draw.add_argument("seal_id")
    seals_draw.add_argument("-o", "--out", type=Path, required=True)
    seals_draw.add_argument("--dpi", type=positive_int, default=600)
    seals_draw.set_defaults(handler=_seals_draw)

    for command in (render, run, find, get, attach):
        command.add_argument("--config", type=Path, help="configuration file (default: ./issuance.toml)")

    # command families with modules of their own (each adds its subparsers and handlers)

    for family in (cli_watch, cli_reissue, cli_audit, cli_signer, cli_users, cli_serve, cli_stats):
        family.add_commands(sub)
    return parser


def _count_lines(batch: Path) -> int | None:
    if batch.suffix.lower() != ".jsonl":
        return None
    try:
        with batch.open("rb") as fh:
            return sum(1 for line in fh if line.strip())
    except OSError:
        return None


def _render(args: argparse.Namespace) -> int:

    from usecases.render import render_previews

    out_dir: Path = args.out
    report_path: Path = args.report or out_dir.parent / f"{out_dir.name}-report.json"
    with progress_bar("issuing", hidden=args.no_progress) as progress:
        task = progress.add_task("records", total=_count_lines(args.batch))
        report = render_previews(
            args.batch,
            out_dir=out_dir,
            templates_dir=args.templates,
            cache_dir=args.cache,
            timeout=args.timeout,
            workers=args.workers,
            on_record=lambda _outcome: progress.advance(task),
        )
    report.write(report_path)
    counts = report.counts()
    print(
        f"{counts['rendered']} previews rendered (预览, not issued policies), {counts['rejected']} rejected,"
        f" {counts['records']} records -> {out_dir}  (report: {report_path})"
    )
    return EXIT_REJECTED if counts["rejected"] else EXIT_OK


def _run(args: argparse.Namespace) -> int:

    from usecases.run import batch_filer
    from usecases.session import check_batch

    settings = settings_from(args)
    check_batch(args.batch)  # refuse an unusable file before starting anything
    with (
        batch_filer(settings, workers=args.workers, cluster=args.cluster) as file_batch,
        progress_bar("filing", hidden=args.no_progress) as progress,
    ):
        task = progress.add_task("records", total=_count_lines(args.batch))
        try:
            report = file_batch(args.batch, on_record=lambda _o: progress.advance(task))
        except RunAborted as e:  # the report says what became of every line; then exit as the cause says
            _write_run_report(e.report, args.report, settings.var_dir / "reports")
            raise
    counts = _write_run_report(report, args.report, settings.var_dir / "reports")
    if counts.get("not_attempted"):  # a component failed them one by one (the TSA): a re-run files them
        return EXIT_COMPONENT
    return EXIT_REJECTED if counts["rejected"] else EXIT_OK


def _write_run_report(report: BatchReport, path: Path | None, folder: Path) -> dict[str, int]:
    """Write ``report`` to ``path`` (default: ``folder``/<batch id>.json) and print its counts."""
    path = path or folder / f"{report.extra['batch_id']}.json"
    try:
        report.write(path)
    finally:
        report.close()
    counts = report.counts()
    line = (
        f"{counts['archived']} archived, {counts['already_archived']} already archived, "
        f"{counts['rejected']} rejected"
    )
    if "not_attempted" in counts:
        why = "the run stopped" if report.extra.get("aborted") else "a component failed them; run again"
        line += f", {counts['not_attempted']} not attempted ({why})"
    print(f"{line}, {counts['records']} records  (report: {path})")
    return counts


def _find(args: argparse.Namespace) -> int:

    from core.lifecycle import status_words
    from usecases.lookup import find_policies

    china = ZoneInfo("Asia/Shanghai")
    result = find_policies(
        settings_from(args),
        policy_no=args.policy_no,
        id_no=args.id_no,
        plate=args.plate,
        name=args.name,
        branch=args.branch,
        serial=args.serial,
        issued_from=args.issued_from,
        issued_to=args.issued_to,
        address=args.address,
        limit=args.limit,
    )
    found, registered = result.policies, result.serial
    if args.json:
        for summary in found:
            print(json.dumps(summary.as_json(), ensure_ascii=False))
        if registered is not None:
            print(json.dumps({"serial": registered.as_json()}, ensure_ascii=False))
        return EXIT_OK

    columns = ("保险单号", "产品", "机构", "被保险人", "证件号", "号牌", "保险期间", "状态", "版本", "影像")
    table = Table(*columns)
    for p in found:
        start = p.period_start.astimezone(china).date()
        end = (p.period_end.astimezone(china) - timedelta(microseconds=1)).date()  # the end is exclusive
        images = "齐全" if p.complete else "缺 " + ",".join(p.missing_images)
        table.add_row(
            p.policy_no,
            p.product_code,
            p.branch_code,
            p.insured_name,
            p.id_masked,
            p.plate or "",
            f"{start}–{end}",
            status_words(p.status) + (f" ({p.status_by})" if p.status_by else ""),
            str(p.versions),
            images,
        )
    stdout_console().print(table)
    print(f"{len(found)} found")
    if args.serial:
        print(
            "\n".join(serial_lines(registered)) if registered else f"单证 {args.serial}: not in the registry"
        )
    return EXIT_OK


def _get(args: argparse.Namespace) -> int:
    from usecases.lookup import read_copy

    settings = settings_from(args)
    read = read_copy(
        settings,
        args.policy_no,
        version=args.version,
        copy=args.copy,
        by=args.by or settings.operator,
        purpose=args.purpose,
    )
    chosen, data, digest = read.version, read.data, read.sha256
    write_file(args.out, data)
    print(
        f"{args.out}: {args.policy_no} v{chosen.version} ({chosen.kind}), {args.copy} copy, "
        f"{len(data):,} bytes, sha256 {digest[:16]}… verified"
    )
    return EXIT_OK


def _attach(args: argparse.Namespace) -> int:
    from usecases.attach import attach_images

    filed = attach_images(
        settings_from(args), args.policy_no, kind=args.kind, files=args.files, by=args.by, label=args.label
    )
    state = "complete" if not filed.missing_images else "still missing " + ", ".join(filed.missing_images)
    print(f"{args.policy_no}: filed as version {filed.version} (supplement); images {state}")
    return EXIT_OK


def _seals_list(args: argparse.Namespace) -> int:

    from usecases.lookup import seal_registry as load_seal_registry

    registry = load_seal_registry()
    table = Table("seal", "version", "owner", "purpose", "mm", "signs", "branches")
    for seal in registry.current:
        branches = ", ".join(b or "all (company-wide)" for b in seal.branches)
        row = (seal.id, str(seal.version), seal.owner, seal.purpose, f"{seal.diameter_mm:g}")
        table.add_row(*row, ", ".join(seal.documents), branches)
    stdout_console().print(table)
    return EXIT_OK


def _seals_draw(args: argparse.Namespace) -> int:
    from usecases.lookup import seal_registry as load_seal_registry

    seal = load_seal_registry().get(args.seal_id)
    image = seal.image(dpi=args.dpi)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out, dpi=(args.dpi, args.dpi))
    print(
        f"{args.out}: seal {seal.id} v{seal.version}, {seal.diameter_mm:g} mm at {args.dpi} dpi "
        f"({image.width}×{image.height} px)"
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return UsageError.exit_code
    try:
        return args.handler(args)
    except IssuanceError as e:
        if args.verbose:
            logger.exception("failed")
        print(f"issuance: error: {scrub(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("issuance: interrupted", file=sys.stderr)
        return 130


def console_main() -> None:
    """The ``issuance`` command (and ``python -m cli.main``): ``main``, then the process ends at once.

    By the time ``main`` returns, everything it opened is closed and written (archive, index, report,
    LibreOffice). What Python would still do is take its heap apart object by object, time nobody needs
    to wait (docs/performance.md, "The end of a run"). Standard output, standard error and the log are
    flushed first.

    A reader of standard output gone away (``issuance find | head``): a command it cut short ends with
    141, quietly; one that had finished keeps its exit code, only the rest of its output is lost.
    """
    try:
        code = main()
    except BrokenPipeError:  # whoever read standard output stopped reading (``issuance find | head``)
        code = EXIT_BROKEN_PIPE
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream: nothing reaches it
            stream.flush()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    console_main()
