"""``issuance stats``: the centre's daily, weekly and monthly figures (issue 25). Parses and prints only;
``usecases.stats`` counts."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.table import Table

from cli.common import iso_date, settings_from, stdout_console
from core.errors import EXIT_OK

GROUPS = ("branch", "product", "clerk", "day")
HEADINGS = {"branch": "机构 Branch", "product": "产品 Product", "clerk": "出单员 Clerk", "day": "日期 Day"}

DESCRIPTION = """\
Counts for the China dates FROM..TO (both included), in total and, with --by, per branch, product,
clerk or day:
  issued       policies issued (their issue versions), dated by the record's issued_at, or the filing
               time when the record had none;
  endorsed     every endorsement version filed, whatever its type: surrendered (退保) and cancelled
               (注销) are the endorsements of those types, and are counted in endorsed too;
  reissued     reissues (补发); rejected: input lines batch runs rejected;
  timely       share of issue and endorsement versions issued within 3 working days of approval
               (China's holidays and working weekends from templates/holidays.toml; an endorsement's
               issue time is its filing time); only versions whose approval time the index holds;
  images       share of the policies issued whose images are complete, and the audit sheet's two
               10-point scores on average (免责事项说明书影像存档情况, 承保档案存档情况);
  unregistered print serials used that were never issued to a clerk."""


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``stats`` to the ``issuance`` parser."""
    stats = sub.add_parser(
        "stats",
        help="issued, endorsed, surrendered, cancelled, reissued, rejected; timeliness; images",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stats.add_argument(
        "--from", dest="start", type=iso_date, required=True, metavar="YYYY-MM-DD", help="first day included"
    )
    stats.add_argument(
        "--to", dest="end", type=iso_date, metavar="YYYY-MM-DD", help="last day included (default: today)"
    )
    stats.add_argument("--by", choices=GROUPS, help="one row per branch, product, clerk or day")
    stats.add_argument(
        "--json", action="store_true", help="one JSON object: the totals' keys, and 'by', a list of groups"
    )
    stats.add_argument("--config", type=Path, help="configuration file (default: ./issuance.toml)")
    stats.set_defaults(handler=_stats)


def _stats(args: argparse.Namespace) -> int:
    from usecases.stats import statistics  # with the use case: `issuance --help` does not open an index

    end = args.end or datetime.now(ZoneInfo("Asia/Shanghai")).date()
    result = statistics(settings_from(args), start=args.start, end=end, by=args.by)
    if args.json:
        print(json.dumps(result.as_json(), ensure_ascii=False))
        return EXIT_OK
    columns = ("签发 Issued", "批改 Endorsed", "退保 Surr.", "注销 Canc.", "补发 Reissued", "拒绝 Rejected")
    more = ("及时率 Timely", "影像齐全 Images", "免责 /10", "档案 /10", "未登记单证 Unreg.")
    heading = HEADINGS[args.by] if args.by else ""
    table = Table(heading, *columns, *more, title=f"{result.start} – {result.end}")
    rows = [(_key(g.key), g.figures) for g in result.groups] + [("合计 Total", result.total)]
    for name, f in rows:
        table.add_row(
            name,
            *(str(n) for n in (f.issued, f.endorsed, f.surrendered, f.cancelled, f.reissued, f.rejected)),
            _share(f.timely_share, f"{f.timely}/{f.timed}"),
            _share(f.images_complete_share, f"{f.images_complete}/{f.issued}"),
            _score(f.exemption_notice_score),
            _score(f.archive_score),
            str(f.unregistered_serials),
        )
    stdout_console().print(table)
    if result.uncovered_years:
        years = ", ".join(map(str, result.uncovered_years))
        print(f"note: {result.calendar} does not list {years}: weekends alone counted as days off")
    if result.unconfirmed_years:
        years = ", ".join(map(str, result.unconfirmed_years))
        print(f"note: {result.calendar} lists {years} as a draft still to be confirmed")
    return EXIT_OK


def _key(key: object) -> str:
    return "–" if key is None else str(key)


def _share(share: float | None, counts: str) -> str:
    return "–" if share is None else f"{share:.1%} ({counts})"


def _score(score: float | None) -> str:
    return "–" if score is None else f"{score:.1f}"
