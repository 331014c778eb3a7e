"""The ``issuance`` command line. The only place that prints, exits, or maps errors to exit codes.

Results go to stdout (or files), progress bars and logs to stderr. Logs pass through a filter that
masks anything shaped like an ID number or a phone number, whatever the code that logged it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import EXIT_OK, EXIT_REJECTED, IssuanceError, UsageError
from pipeline.idcheck import scrub

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


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _parser() -> argparse.ArgumentParser:
    from pipeline.convert import default_pool_size

    parser = argparse.ArgumentParser(
        prog="issuance",
        description="Issuance-centre document pipeline: approved records in, sealed policy documents out.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    render = sub.add_parser(
        "render",
        help="render the customer's PDFs for a batch (no archive)",
        description="Render policy schedules with their clauses, and endorsements, to PDF.",
    )
    render.add_argument("batch", type=Path, help="batch file: .jsonl, .csv or .xlsx")
    render.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    render.add_argument("--report", type=Path, help="JSON report (default: <out>-report.json beside it)")
    render.add_argument(
        "--workers",
        type=_positive_int,
        default=default_pool_size(),
        help="LibreOffice instances kept warm (default: one per CPU, at most 4)",
    )
    render.add_argument("--templates", type=Path, help="templates folder (default: the bundled one)")
    render.add_argument("--cache", type=Path, default=Path("var/cache"), help="cache for clause PDFs")
    render.add_argument("--timeout", type=float, default=120.0, help="seconds per document conversion")
    render.add_argument("--no-progress", action="store_true", help="no progress bar")
    render.set_defaults(handler=_render)
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
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from pipeline.batch import render_batch
    from pipeline.batchfile import read_batch
    from pipeline.convert import ConverterPool
    from pipeline.documents import DocumentMaker
    from pipeline.products import DEFAULT_TEMPLATES_DIR, load_registry

    batch: Path = args.batch
    out_dir: Path = args.out
    report_path: Path = args.report or out_dir.parent / f"{out_dir.name}-report.json"
    registry = load_registry(args.templates or DEFAULT_TEMPLATES_DIR)
    read_batch(batch)  # refuse an unusable file before starting LibreOffice
    out_dir.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)

    console = Console(stderr=True)
    show = not args.no_progress and console.is_terminal
    with (
        tempfile.TemporaryDirectory(prefix="issuance-") as scratch,
        ConverterPool(
            size=args.workers,
            workdir=Path(scratch),
            timeout=args.timeout,
            soffice=os.environ.get("ISSUANCE_SOFFICE", "soffice"),
        ) as pool,
        Progress(
            TextColumn("[bold]issuing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not show,
        ) as progress,
    ):
        pool.start()
        task = progress.add_task("records", total=_count_lines(batch))
        maker = DocumentMaker(
            registry=registry, converter=pool, cache_dir=args.cache, scratch_dir=Path(scratch)
        )
        report = render_batch(
            batch,
            out_dir=out_dir,
            maker=maker,
            workers=args.workers + 1,  # one more than LibreOffice instances: rendering overlaps conversion
            on_record=lambda _outcome: progress.advance(task),
        )
        stats = pool.stats
    report.extra["conversion"] = {
        "documents": stats.documents,
        "restarts": stats.restarts,
        "clause_conversions": maker.clauses.conversions,
    }
    report.write(report_path)
    counts = report.counts()
    print(
        f"{counts['rendered']} rendered, {counts['rejected']} rejected, {counts['records']} records"
        f" -> {out_dir}  (report: {report_path})"
    )
    return EXIT_REJECTED if counts["rejected"] else EXIT_OK


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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
