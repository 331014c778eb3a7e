"""The audit's report, in three forms: HTML for the auditor, JSON for machines, CSV for a spreadsheet.

What is promised:

- All three say the same: the lot (criteria, size N, the lot's digest), the plan (level, AQL, code
  letter, n, Ac/Re, 100% or fixed), the seed and the selection rule, each sampled policy with every
  check's result and evidence and its score, the lot-level findings, the defects and the verdict.
- The JSON (``issuance-audit/1``) names at its top level ``lot_size``, ``code_letter``, ``sample_size``,
  ``ac``, ``re``, ``seed``, ``policies`` (per-policy results) and ``verdict``; ``issuance audit --redraw``
  can read the criteria and the seed back from it.
- The HTML is one self-contained file: styles inline, page thumbnails embedded as ``data:`` PNGs (small
  palette PNGs of the pages the checks looked at), so the copy archived under
  ``audits/{audit_id}/report.html`` shows everything without files beside it. Every text is escaped.
- The CSV has one row per sampled policy and one column per check (``pass``/``FAIL``), written as UTF-8
  with a byte-order mark so spreadsheet programs read the Chinese right.
- Nothing here holds an ID number or a phone number: evidence is scrubbed where the checks make it.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from archive.audit.checks import CHECKS, PROPERTIES, PolicyResult
from archive.audit.sampling import ACCEPT, SELECTION_RULE, LotCriteria, Sample, SamplingPlan
from pipeline.wording import CHINA_TIME

REPORT_FORMAT = "issuance-audit/1"
FORMATS = ("html", "json", "csv")


def report_key(audit_id: str, fmt: str) -> str:
    """Where the archived copy of a report lives: ``audits/{audit_id}/report.{fmt}``."""
    return f"audits/{audit_id}/report.{fmt}"


@dataclass(frozen=True)
class LotFinding:
    """Something found about the lot as a whole (the ledger chain, gaps in print serials)."""

    level: str  # error | warning
    check: str
    message: str

    def as_json(self) -> dict[str, str]:
        return {"level": self.level, "check": self.check, "message": self.message}


@dataclass(frozen=True)
class AuditReport:
    """One audit of one lot: what was drawn, what the checks found, and the verdict."""

    audit_id: str
    auditor: str
    created_at: datetime
    criteria: LotCriteria
    plan: SamplingPlan
    sample: Sample
    lot_sha256: str
    results: tuple[PolicyResult, ...]
    findings: tuple[LotFinding, ...] = ()
    redraw_of: str | None = None
    report_keys: dict[str, str] = field(default_factory=dict)

    @property
    def defects(self) -> int:
        """Defective policies in the sample (a policy with any failed check counts once)."""
        return sum(1 for r in self.results if r.defective)

    @property
    def verdict(self) -> str:
        return self.plan.verdict(self.defects)


# --- JSON -----------------------------------------------------------------------------------------------


def report_json(report: AuditReport) -> dict[str, Any]:
    """The report as JSON data (see the module docstring for the names at the top level)."""
    plan = report.plan
    return {
        "format": REPORT_FORMAT,
        "audit_id": report.audit_id,
        "auditor": report.auditor,
        "created_at": report.created_at.isoformat(),
        "redraw_of": report.redraw_of,
        "criteria": report.criteria.as_json(),
        "lot_size": plan.lot_size,
        "lot_sha256": report.lot_sha256,
        "level": plan.level,
        "aql": plan.aql,
        "code_letter": plan.code_letter,
        "sample_size": plan.sample_size,
        "ac": plan.ac,
        "re": plan.re,
        "plan": plan.as_json(),
        "seed": report.sample.seed,
        "stratify": report.sample.stratify,
        "allocation": report.sample.allocation,
        "selection": SELECTION_RULE,
        "sample": list(report.sample.policy_nos),
        "policies": [r.as_json() for r in report.results],
        "lot_findings": [f.as_json() for f in report.findings],
        "defects": report.defects,
        "verdict": report.verdict,
        "reports": dict(report.report_keys),
    }


def json_bytes(report: AuditReport) -> bytes:
    return json.dumps(report_json(report), ensure_ascii=False, indent=2).encode("utf-8") + b"\n"


# --- CSV ------------------------------------------------------------------------------------------------


def csv_bytes(report: AuditReport) -> bytes:
    """One row per sampled policy, one column per check; UTF-8 with BOM."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(
        [
            "audit_id",
            "policy_no",
            "branch_code",
            "product_code",
            "versions",
            "defective",
            "score",
            "max_score",
            *CHECKS,
            "problems",
        ]
    )
    for r in report.results:
        by_name = {c.name: c for c in r.checks}
        problems = [
            f"{c.name}: {c.evidence[0]}" for c in r.checks if not c.passed and c.evidence
        ]  # the first evidence line of a failed check is what failed it
        writer.writerow(
            [
                report.audit_id,
                r.policy_no,
                r.branch_code,
                r.product_code,
                r.versions,
                "yes" if r.defective else "no",
                r.score,
                r.max_score,
                *(("pass" if by_name[name].passed else "FAIL") if name in by_name else "" for name in CHECKS),
                " | ".join(problems),
            ]
        )
    return ("\ufeff" + out.getvalue()).encode("utf-8")


# --- HTML -----------------------------------------------------------------------------------------------

_CSS = """
body{font-family:"Noto Sans CJK SC","Noto Sans SC","Microsoft YaHei",sans-serif;margin:0;color:#1d2330;
background:#f3f4f7;font-size:14px;line-height:1.45}
main{max-width:1140px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:22px;margin:0 0 2px}h2{font-size:17px;margin:28px 0 10px;border-bottom:2px solid #d9dce3;
padding-bottom:4px}h3{font-size:15px;margin:0}
.sub{color:#5b6273;margin:0 0 18px}
.verdict{display:flex;align-items:center;gap:18px;padding:14px 20px;border-radius:8px;color:#fff;
font-size:16px}
.verdict b{font-size:26px;letter-spacing:2px}.accept{background:#1f7a46}.reject{background:#b3261e}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:16px;margin-top:16px}
.card{background:#fff;border:1px solid #dfe2e8;border-radius:8px;padding:12px 16px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;vertical-align:top}
.kv th{width:42%;color:#5b6273;font-weight:normal}
.list th{background:#eef0f4;font-weight:600;border-bottom:1px solid #d9dce3}
.list td{border-bottom:1px solid #eceef2}.list tr:last-child td{border-bottom:none}
.ok{color:#1f7a46;font-weight:600}.bad{color:#b3261e;font-weight:600}.warn{color:#9a6700;font-weight:600}
.mono{font-family:"DejaVu Sans Mono",monospace;font-size:12.5px}
.policy{background:#fff;border:1px solid #dfe2e8;border-radius:8px;margin:14px 0;padding:12px 16px}
.policy.defective{border-left:6px solid #b3261e}.policy.clean{border-left:6px solid #1f7a46}
.head{display:flex;justify-content:space-between;align-items:baseline;gap:12px;flex-wrap:wrap}
.ev{color:#3d4454;font-size:12.5px}.ev li{margin:0}.ev ul{margin:0;padding-left:16px}
.thumbs{display:flex;flex-wrap:wrap;gap:8px;margin:10px 0}
.thumbs figure{margin:0;text-align:center;font-size:11px;color:#5b6273}
.thumbs img{display:block;border:1px solid #c9cdd6;background:#fff;margin-bottom:2px}
.prop{white-space:nowrap;color:#5b6273}.small{font-size:12px;color:#5b6273}
.problems{margin:8px 0 0;padding:8px 12px 8px 28px;background:#fdecea;border-radius:6px;color:#7a1c16}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _mark(passed: bool) -> str:
    return '<span class="ok">✓ 通过</span>' if passed else '<span class="bad">✗ 不通过</span>'


def _local(moment: datetime) -> str:
    return f"{moment.astimezone(CHINA_TIME):%Y-%m-%d %H:%M:%S} (UTC+8)"


def _plan_rows(report: AuditReport) -> list[tuple[str, str]]:
    plan, sample = report.plan, report.sample
    if plan.fixed_size:
        size = f"{plan.sample_size}（指定样本量 --size；Ac/Re 取样本量不超过它的标准方案 {plan.plan_size}）"
    elif plan.full_inspection:
        size = f"{plan.sample_size}（方案样本量 {plan.plan_size} ≥ 批量：全检 100%）"
    elif plan.plan_size != plan.letter_size:
        size = (
            f"{plan.sample_size}（{plan.code_letter} 字码 {plan.letter_size}，按箭头改用 {plan.plan_size}）"
        )
    else:
        size = str(plan.sample_size)
    rows = [
        ("检验水平 Inspection level", plan.level or "—（指定样本量）"),
        ("AQL", plan.aql),
        ("样本量字码 Code letter", plan.code_letter),
        ("样本量 n", size),
        ("接收数 Ac / 拒收数 Re", f"{plan.ac} / {plan.re}"),
        ("随机种子 Seed", str(sample.seed)),
        ("抽样方法 Selection", "random.Random(seed).sample(按保单号排序的批, n)"),
    ]
    if sample.allocation:
        rows.append(
            (
                "按机构分层 By branch（最大余数法）",
                "，".join(f"{k}: {v}" for k, v in sample.allocation.items()),
            )
        )
    return rows


def _lot_rows(report: AuditReport) -> list[tuple[str, str]]:
    c = report.criteria
    return [
        ("批次 Batch", c.batch_id or "—"),
        (
            "签单日期 Issued",
            f"{c.issued_from or '…'} 至 {c.issued_to or '…'}" if c.issued_from or c.issued_to else "—",
        ),
        ("机构 Branch", c.branch or "—"),
        ("产品 Product", c.product or "—"),
        ("批量 Lot size N", str(report.plan.lot_size)),
        ("批摘要 Lot SHA-256", report.lot_sha256[:32] + "…"),
    ]


def _kv(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def _thumbs(result: PolicyResult) -> str:
    if not result.thumbnails:
        return ""
    figures = []
    for thumb in result.thumbnails:
        data = base64.b64encode(thumb.png).decode("ascii")
        figures.append(
            f'<figure><img alt="{_e(thumb.label)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(thumb.label)}</figcaption></figure>"
        )
    return f'<div class="thumbs">{"".join(figures)}</div>'


def _policy_section(index: int, result: PolicyResult) -> str:
    rows = []
    for c in result.checks:
        evidence = "".join(f"<li>{_e(line)}</li>" for line in c.evidence)
        rows.append(
            f'<tr><td class="prop">{_e(c.aspect)}</td><td>{_e(c.title)}'
            f'<div class="small mono">{_e(c.name)}</div></td><td>{_mark(c.passed)}</td>'
            f'<td class="ev"><ul>{evidence}</ul></td></tr>'
        )
    scores = "；".join(f"{s.item} {s.points}/{s.max_points}分" for s in result.scores)
    failed = "".join(
        f"<li><b>{_e(c.aspect)} · {_e(c.title)}</b>：{_e('；'.join(c.evidence[:3]))}</li>"
        for c in result.checks
        if not c.passed
    )
    problems = f'<ul class="problems">{failed}</ul>' if failed else ""
    state = "defective" if result.defective else "clean"
    verdict = (
        '<span class="bad">不合格 defective</span>' if result.defective else '<span class="ok">合格</span>'
    )
    return (
        f'<section class="policy {state}" id="{_e(result.policy_no)}"><div class="head">'
        f'<h3>{index}. <span class="mono">{_e(result.policy_no)}</span> · {_e(result.product_code)} · '
        f"机构 {_e(result.branch_code)} · {result.versions} 个版本</h3>"
        f"<div>{verdict} · 得分 {result.score}/{result.max_score}（{_e(scores)}）</div></div>"
        f"{problems}{_thumbs(result)}"
        f'<table class="list"><tr><th>四性</th><th>检查项</th><th>结果</th><th>依据 Evidence</th></tr>'
        f"{''.join(rows)}</table></section>"
    )


def _summary(report: AuditReport) -> str:
    head = "".join(f"<th>{_e(p)}</th>" for p in PROPERTIES)
    rows = []
    for i, r in enumerate(report.results, 1):
        cells = []
        for prop in PROPERTIES:
            mine = [c for c in r.checks if c.aspect == prop]
            failed = [c.title for c in mine if not c.passed]
            cells.append(
                '<td class="ok">✓</td>'
                if not failed
                else f'<td class="bad" title="{_e("；".join(failed))}">✗</td>'
            )
        titles = "、".join(c.title for c in r.checks if not c.passed)
        result = (
            f'<span class="bad">不合格</span> <span class="small">{_e(titles)}</span>'
            if r.defective
            else ('<span class="ok">合格</span>')
        )
        rows.append(
            f'<tr><td>{i}</td><td class="mono"><a href="#{_e(r.policy_no)}">{_e(r.policy_no)}</a></td>'
            f"<td>{_e(r.branch_code)}</td><td>{_e(r.product_code)}</td>{''.join(cells)}"
            f"<td>{r.score}/{r.max_score}</td><td>{result}</td></tr>"
        )
    return (
        '<table class="list"><tr><th>#</th><th>保单号 Policy</th><th>机构</th><th>产品</th>'
        f"{head}<th>得分</th><th>结论</th></tr>{''.join(rows)}</table>"
    )


def _findings(report: AuditReport) -> str:
    if not report.findings:
        return '<p class="ok">无批级问题：账本哈希链完整，单证流水号连续。</p>'
    items = "".join(
        f'<tr><td class="{"bad" if f.level == "error" else "warn"}">{_e(f.level)}</td>'
        f'<td class="mono">{_e(f.check)}</td><td>{_e(f.message)}</td></tr>'
        for f in report.findings
    )
    return f'<table class="list"><tr><th>级别</th><th>检查</th><th>说明</th></tr>{items}</table>'


def html_bytes(report: AuditReport) -> bytes:
    """The auditor's report: one self-contained HTML page."""
    plan = report.plan
    accepted = report.verdict == ACCEPT
    banner = (
        f'<div class="verdict {"accept" if accepted else "reject"}">'
        f"<b>{'接收 ACCEPT' if accepted else '拒收 REJECT'}</b>"
        f"<span>样本 {plan.sample_size} 份中不合格 {report.defects} 份；Ac = {plan.ac}，Re = {plan.re}"
        f"（{'≤ Ac，接收该批' if accepted else '≥ Re，拒收该批'}）</span></div>"
    )
    redraw = f"；重抽自 {report.redraw_of}" if report.redraw_of else ""
    # defective policies first: that is what the auditor reads the report for
    numbered = list(enumerate(report.results, 1))
    ordered = [pair for pair in numbered if pair[1].defective] + [
        pair for pair in numbered if not pair[1].defective
    ]
    sections = "".join(_policy_section(i, r) for i, r in ordered)
    keys = "、".join(report.report_keys.values())
    page = f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>档案抽样稽核报告 {_e(report.audit_id)}</title>
<style>{_CSS}</style></head><body><main>
<h1>电子档案抽样稽核报告 · Archive audit report</h1>
<p class="sub"><span class="mono">{_e(report.audit_id)}</span> · 稽核人 {_e(report.auditor)} ·
{_e(_local(report.created_at))}{_e(redraw)} · 四性检测（DA/T 70-2018）·
GB/T 2828.1 / ISO 2859-1 正常检验一次抽样</p>
{banner}
<div class="grid"><div class="card"><h3>抽样批 Lot</h3>{_kv(_lot_rows(report))}</div>
<div class="card"><h3>抽样方案 Sampling plan</h3>{_kv(_plan_rows(report))}</div></div>
<h2>批级检查 Lot findings</h2>{_findings(report)}
<h2>样本一览 Sampled policies ({len(report.results)})</h2>{_summary(report)}
<h2>逐份检查 Checks per policy（不合格在前 defective first）</h2>{sections}
<p class="small">复核抽样：<span class="mono">issuance audit --redraw {_e(report.audit_id)}</span>
（同一批、同一种子，抽出同一组保单）。本报告已归档：<span class="mono">{_e(keys)}</span></p>
</main></body></html>
"""
    return page.encode("utf-8")


# --- files ----------------------------------------------------------------------------------------------


def render_all(report: AuditReport) -> dict[str, bytes]:
    """The three reports' bytes, by format."""
    return {"html": html_bytes(report), "json": json_bytes(report), "csv": csv_bytes(report)}


def write_reports(rendered: dict[str, bytes], out_dir: Path) -> dict[str, Path]:
    """Write ``report.{html,json,csv}`` into ``out_dir`` (created if needed); return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for fmt, data in rendered.items():
        path = out_dir / f"report.{fmt}"
        temp = path.with_name(f".{path.name}.tmp")
        temp.write_bytes(data)
        temp.replace(path)
        paths[fmt] = path
    return paths
