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
- Signed off on the desk (``archive.audit.signoff``), an audit's reports are written again as a new
  version under ``audits/{audit_id}/signed-{time}/`` with the auditors' manual findings, counted as defects of
  their policies, and the sign-off; the reports written when the audit ran stay as they were (the store
  is immutable). Rebuilt from the archived JSON, the signed HTML has no page thumbnails: the first
  report has them.
- Any sample size in bounded memory: an audit keeps its policies' results in ``SpooledResults`` (a
  temporary file, read back one policy at a time), and ``write_reports`` writes each report as it
  goes; only one report's bytes are held at once, to archive it.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
import pickle
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, overload

from archive.audit.checks import CHECKS, PROPERTIES, CheckResult, PolicyResult, ScoreItem
from archive.audit.sampling import ACCEPT, SELECTION_RULE, LotCriteria, Sample, SamplingPlan
from archive.audit.signoff import SEVERITIES, ManualFinding, SignOff, judged
from core.wording import CHINA_TIME

REPORT_FORMAT = "issuance-audit/1"
FORMATS = ("html", "json", "csv")


def report_key(audit_id: str, fmt: str) -> str:
    """Where the archived copy of a report lives: ``audits/{audit_id}/report.{fmt}``."""
    return f"audits/{audit_id}/report.{fmt}"


class SpooledResults(Sequence[PolicyResult]):
    """Policy results kept in a temporary file as they come and read back one at a time, so that an
    audit holds one policy's evidence and thumbnails at a time whatever its sample size. The file is
    private to the process (unlinked at once, mode 0600) and goes with this object."""

    def __init__(self, results: Iterable[PolicyResult] = ()) -> None:
        self._file = tempfile.TemporaryFile(prefix="audit-results-")  # noqa: SIM115 (lives with self)
        self._spans: list[tuple[int, int]] = []
        self._lock = threading.Lock()
        for result in results:
            self.append(result)

    def append(self, result: PolicyResult) -> None:
        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            offset = self._file.seek(0, os.SEEK_END)
            self._file.write(data)
            self._spans.append((offset, len(data)))

    def __len__(self) -> int:
        return len(self._spans)

    @overload
    def __getitem__(self, index: int) -> PolicyResult: ...

    @overload
    def __getitem__(self, index: slice) -> list[PolicyResult]: ...

    def __getitem__(self, index: int | slice) -> PolicyResult | list[PolicyResult]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        offset, size = self._spans[index]
        with self._lock:
            self._file.seek(offset)
            data = self._file.read(size)
        return pickle.loads(data)  # our own file, written just above

    def __iter__(self) -> Iterator[PolicyResult]:
        for i in range(len(self)):
            yield self[i]

    def close(self) -> None:
        self._file.close()


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
    results: Sequence[PolicyResult]  # a tuple, or SpooledResults
    findings: tuple[LotFinding, ...] = ()
    redraw_of: str | None = None
    report_keys: dict[str, str] = field(default_factory=dict)
    manual: tuple[ManualFinding, ...] = ()  # the auditors' findings, once signed off on the desk
    sign_off: SignOff | None = None

    @property
    def defects(self) -> int:
        """Defective policies in the sample (a policy with any failed check or any manual finding
        counts once)."""
        if not self.manual:
            return sum(1 for r in self.results if r.defective)
        failed = (r.policy_no for r in self.results if r.defective)
        return len(judged(self.plan, failed_checks=failed, findings=self.manual)[0])

    @property
    def verdict(self) -> str:
        return self.plan.verdict(self.defects)


def report_from_json(data: dict[str, Any]) -> AuditReport:
    """The report an archived ``report.json`` holds, read back (without page thumbnails, which only the
    HTML embeds); ``KeyError`` or ``ValueError`` when it is not one."""
    plan = SamplingPlan(**{name: data["plan"][name] for name in SamplingPlan.__dataclass_fields__})
    results = tuple(
        PolicyResult(
            policy_no=p["policy_no"],
            branch_code=p["branch_code"],
            product_code=p["product_code"],
            versions=int(p["versions"]),
            checks=tuple(
                CheckResult(c["name"], bool(c["passed"]), tuple(c["evidence"]))
                for c in p["checks"]
                if c["name"] in CHECKS
            ),
            scores=tuple(
                ScoreItem(s["item"], int(s["points"]), int(s["max"]), s["evidence"]) for s in p["scores"]
            ),
        )
        for p in data["policies"]
    )
    return AuditReport(
        audit_id=data["audit_id"],
        auditor=data["auditor"],
        created_at=datetime.fromisoformat(data["created_at"]),
        criteria=LotCriteria.from_json(data.get("criteria") or {}),
        plan=plan,
        sample=Sample(
            policy_nos=tuple(data["sample"]),
            seed=int(data["seed"]),
            stratify=data.get("stratify"),
            allocation=data.get("allocation"),
        ),
        lot_sha256=data["lot_sha256"],
        results=results,
        findings=tuple(
            LotFinding(f["level"], f["check"], f["message"]) for f in data.get("lot_findings") or ()
        ),
        redraw_of=data.get("redraw_of"),
        report_keys=dict(data.get("reports") or {}),
    )


# --- JSON -----------------------------------------------------------------------------------------------


def report_json(report: AuditReport, *, policies: bool = True) -> dict[str, Any]:
    """The report as JSON data (see the module docstring for the names at the top level); without
    ``policies``, the ``policies`` list is left empty (``write_json`` writes it one by one)."""
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
        "policies": [r.as_json() for r in report.results] if policies else [],
        "lot_findings": [f.as_json() for f in report.findings],
        "manual_findings": [f.as_json() for f in report.manual],
        "sign_off": _sign_off_json(report.sign_off),
        "defects": report.defects,
        "verdict": report.verdict,
        "reports": dict(report.report_keys),
    }


def _sign_off_json(sign_off: SignOff | None) -> dict[str, Any] | None:
    if sign_off is None:
        return None
    return {
        "auditor": sign_off.auditor,
        "at": sign_off.at.isoformat(),
        "decision": sign_off.decision,
        "verdict": sign_off.verdict,
        "defects": sign_off.defects,
        "comment": sign_off.comment,
    }


def json_bytes(report: AuditReport) -> bytes:
    out = io.BytesIO()
    write_json(report, out)
    return out.getvalue()


def write_json(report: AuditReport, out: IO[bytes]) -> None:
    """``report_json`` as ``json.dumps(…, indent=2)`` writes it, one policy at a time."""
    data = report_json(report, policies=False)
    marker = "\u0000policies\u0000"
    data["policies"] = marker
    head, tail = json.dumps(data, ensure_ascii=False, indent=2).split(json.dumps(marker), 1)
    out.write(head.encode("utf-8"))
    if not len(report.results):
        out.write(b"[]")
    else:
        out.write(b"[")
        for i, result in enumerate(report.results):
            text = json.dumps(result.as_json(), ensure_ascii=False, indent=2).replace("\n", "\n    ")
            out.write((("," if i else "") + "\n    " + text).encode("utf-8"))
        out.write(b"\n  ]")
    out.write(tail.encode("utf-8") + b"\n")


# --- CSV ------------------------------------------------------------------------------------------------


def csv_bytes(report: AuditReport) -> bytes:
    """One row per sampled policy, one column per check; UTF-8 with BOM."""
    out = io.BytesIO()
    write_csv(report, out)
    return out.getvalue()


def write_csv(report: AuditReport, stream: IO[bytes]) -> None:
    """``csv_bytes``, written a row at a time."""
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="", write_through=True)
    text.write("\ufeff")
    writer = csv.writer(text, lineterminator="\r\n")
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
            "manual_findings",
        ]
    )
    for r in report.results:
        manual = [f for f in report.manual if f.policy_no == r.policy_no]
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
                "yes" if r.defective or manual else "no",
                r.score,
                r.max_score,
                *(("pass" if by_name[name].passed else "FAIL") if name in by_name else "" for name in CHECKS),
                " | ".join(problems),
                " | ".join(f"{f.prop} {f.severity}: {f.text}" for f in manual),
            ]
        )
    text.flush()
    text.detach()  # the stream stays open for the caller


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


def _manual_items(findings: Sequence[ManualFinding]) -> str:
    return "".join(
        f"<li><b>人工发现 · {_e(f.prop)} · {_e(SEVERITIES.get(f.severity, f.severity))}</b>：{_e(f.text)}"
        f'{_e(f"（第 {f.page} 页）") if f.page else ""} <span class="small">{_e(f.auditor)}</span></li>'
        for f in findings
    )


def _policy_section(index: int, result: PolicyResult, manual: Sequence[ManualFinding] = ()) -> str:
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
    failed += _manual_items(manual)
    problems = f'<ul class="problems">{failed}</ul>' if failed else ""
    defective = result.defective or bool(manual)
    state = "defective" if defective else "clean"
    verdict = '<span class="bad">不合格 defective</span>' if defective else '<span class="ok">合格</span>'

    return (
        f'<section class="policy {state}" id="{_e(result.policy_no)}"><div class="head">'
        f'<h3>{index}. <span class="mono">{_e(result.policy_no)}</span> · {_e(result.product_code)} · '
        f"机构 {_e(result.branch_code)} · {result.versions} 个版本</h3>"
        f"<div>{verdict} · 得分 {result.score}/{result.max_score}（{_e(scores)}）</div></div>"
        f"{problems}{_thumbs(result)}"
        f'<table class="list"><tr><th>四性</th><th>检查项</th><th>结果</th><th>依据 Evidence</th></tr>'
        f"{''.join(rows)}</table></section>"
    )


def _summary(report: AuditReport) -> Iterator[str]:
    """The summary table, a row at a time."""
    head = "".join(f"<th>{_e(p)}</th>" for p in PROPERTIES)
    yield (
        '<table class="list"><tr><th>#</th><th>保单号 Policy</th><th>机构</th><th>产品</th>'
        f"{head}<th>得分</th><th>结论</th></tr>"
    )
    for i, r in enumerate(report.results, 1):
        manual = [f for f in report.manual if f.policy_no == r.policy_no]
        cells = []
        for prop in PROPERTIES:
            mine = [c for c in r.checks if c.aspect == prop]
            failed = [c.title for c in mine if not c.passed]
            cells.append(
                '<td class="ok">✓</td>'
                if not failed
                else f'<td class="bad" title="{_e("；".join(failed))}">✗</td>'
            )
        titles = "、".join([*(c.title for c in r.checks if not c.passed), *(f.text for f in manual)])
        result = (
            f'<span class="bad">不合格</span> <span class="small">{_e(titles)}</span>'
            if r.defective or manual
            else ('<span class="ok">合格</span>')
        )
        yield (
            f'<tr><td>{i}</td><td class="mono"><a href="#{_e(r.policy_no)}">{_e(r.policy_no)}</a></td>'
            f"<td>{_e(r.branch_code)}</td><td>{_e(r.product_code)}</td>{''.join(cells)}"
            f"<td>{r.score}/{r.max_score}</td><td>{result}</td></tr>"
        )
    yield "</table>"


def _findings(report: AuditReport) -> str:
    if not report.findings:
        return '<p class="ok">无批级问题：账本哈希链完整，单证流水号连续。</p>'
    items = "".join(
        f'<tr><td class="{"bad" if f.level == "error" else "warn"}">{_e(f.level)}</td>'
        f'<td class="mono">{_e(f.check)}</td><td>{_e(f.message)}</td></tr>'
        for f in report.findings
    )
    return f'<table class="list"><tr><th>级别</th><th>检查</th><th>说明</th></tr>{items}</table>'


def _signed(report: AuditReport) -> str:
    """The manual findings and the sign-off, when the report was written again at sign-off."""
    s = report.sign_off
    if s is None and not report.manual:
        return ""
    out = ["<h2>人工发现与签核 Manual findings and sign-off</h2>"]
    if report.manual:
        rows = "".join(
            f'<tr><td class="mono">{_e(f.policy_no)}</td><td>{_e(f.prop)}</td>'
            f"<td>{_e(SEVERITIES.get(f.severity, f.severity))}</td><td>{_e(f.text)}</td>"
            f"<td>{_e(f.page or '')}</td><td>{_e(f.auditor)}</td><td>{_e(_local(f.at))}</td></tr>"
            for f in report.manual
        )
        out.append(
            '<table class="list"><tr><th>保单号</th><th>四性</th><th>程度</th><th>发现</th><th>页</th>'
            f"<th>稽核人</th><th>时间</th></tr>{rows}</table>"
            '<p class="small">人工发现计为该保单不合格（与检查不通过合计，每份只计一次）。</p>'
        )
    if s is not None:
        decision = "接收 ACCEPT" if s.decision == ACCEPT else "拒收 REJECT"
        out.append(
            _kv(
                [
                    ("签核决定 Decision", decision),
                    ("签核人 Signed off by", s.auditor),
                    ("时间 At", _local(s.at)),
                    ("意见 Comment", s.comment or "—"),
                ]
            )
        )
    return "".join(out)


def html_bytes(report: AuditReport) -> bytes:
    """The auditor's report: one self-contained HTML page."""
    out = io.BytesIO()
    write_html(report, out)
    return out.getvalue()


def write_html(report: AuditReport, out: IO[bytes]) -> None:
    """``html_bytes``, written a policy at a time."""
    plan = report.plan
    defects = report.defects
    accepted = plan.verdict(defects) == ACCEPT
    banner = (
        f'<div class="verdict {"accept" if accepted else "reject"}">'
        f"<b>{'接收 ACCEPT' if accepted else '拒收 REJECT'}</b>"
        f"<span>样本 {plan.sample_size} 份中不合格 {defects} 份；Ac = {plan.ac}，Re = {plan.re}"
        f"（{'≤ Ac，接收该批' if accepted else '≥ Re，拒收该批'}）</span></div>"
    )
    redraw = f"；重抽自 {report.redraw_of}" if report.redraw_of else ""
    keys = "、".join(report.report_keys.values())
    head = f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>档案抽样稽核报告 {_e(report.audit_id)}</title>
<style>{_CSS}</style></head><body><main>
<h1>电子档案抽样稽核报告 · Archive audit report</h1>
<p class="sub"><span class="mono">{_e(report.audit_id)}</span> · 稽核人 {_e(report.auditor)} ·
{_e(_local(report.created_at))}{_e(redraw)} · 四性检测（DA/T 70-2018）·
GB/T 2828.1 / ISO 2859-1 正常检验一次抽样</p>
{banner}
<div class="grid"><div class="card"><h3>抽样批 Lot</h3>{_kv(_lot_rows(report))}</div>
<div class="card"><h3>抽样方案 Sampling plan</h3>{_kv(_plan_rows(report))}</div></div>
<h2>批级检查 Lot findings</h2>{_findings(report)}{_signed(report)}
<h2>样本一览 Sampled policies ({len(report.results)})</h2>"""
    out.write(head.encode("utf-8"))
    for row in _summary(report):
        out.write(row.encode("utf-8"))
    out.write("\n<h2>逐份检查 Checks per policy（不合格在前 defective first）</h2>".encode())
    # defective policies first: that is what the auditor reads the report for
    for defective in (True, False):
        for i, result in enumerate(report.results, 1):
            manual = [f for f in report.manual if f.policy_no == result.policy_no]
            if (result.defective or bool(manual)) == defective:
                out.write(_policy_section(i, result, manual).encode("utf-8"))
    tail = f"""
<p class="small">复核抽样：<span class="mono">issuance audit --redraw {_e(report.audit_id)}</span>
（同一批、同一种子，抽出同一组保单）。本报告已归档：<span class="mono">{_e(keys)}</span></p>
</main></body></html>
"""
    out.write(tail.encode("utf-8"))


# --- files ----------------------------------------------------------------------------------------------


WRITERS = {"html": write_html, "json": write_json, "csv": write_csv}


def write_reports(report: AuditReport, out_dir: Path) -> dict[str, Path]:
    """Write ``report.{html,json,csv}`` into ``out_dir`` (created if needed), each as it is made, and
    return the paths; a file appears whole or not at all."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for fmt in FORMATS:
        path = out_dir / f"report.{fmt}"
        temp = path.with_name(f".{path.name}.tmp")
        with temp.open("wb") as out:
            WRITERS[fmt](report, out)
        temp.replace(path)
        paths[fmt] = path
    return paths
