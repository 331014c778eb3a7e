"""Rendering records into .docx from the business's Word templates (docxtpl).

Record values are data, never template code. Every string from a record reaches the template as escaped
markup (``Text``): Jinja's autoescape covers ``&``, ``<`` and quotes, and ``Text`` also neutralises the
``{_{`` family that docxtpl turns back into ``{{`` after rendering, so ``A&B <公司> {{x}}`` prints exactly
as written. Newlines in free text become line breaks (docxtpl does that for all text).
"""

from __future__ import annotations

import io
import threading
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from docxtpl import DocxTemplate
from jinja2 import Environment
from jinja2 import TemplateError as JinjaTemplateError
from markupsafe import Markup, escape

from core.errors import TemplateError
from core.products import Product, ProductRegistry
from core.records import Endorsement, Party, Policy
from core.wording import (
    ENDORSEMENT_TYPE_LABELS,
    ID_TYPE_LABELS,
    amount_capitals,
    amount_figures,
    chinese_date,
    chinese_datetime,
    period_wording,
)
from pipeline.scratch import create_private

CHINA = ZoneInfo("Asia/Shanghai")


def text(value: Any) -> Markup:
    """A record value as template-safe markup: escaped, and with docxtpl's tag markers defused.

    ``_`` becomes the character reference ``&#95;``: the XML parser reads it back as ``_``, but
    docxtpl's post-render ``{_{`` → ``{{`` replacement no longer sees it.
    """
    if value is None:
        return Markup("")
    return Markup(str(escape(str(value))).replace("_", "&#95;"))


def _party(party: Party) -> dict[str, Markup]:
    return {
        "name": text(party.name),
        "type_label": text("个人" if party.party_type == "person" else "单位"),
        "id_type_label": text(ID_TYPE_LABELS[party.id_type]),
        "id_no": text(party.id_no),
        "address": text(party.address or "—"),
        "phone": text(party.phone or "—"),
    }


def _percent(value: Decimal) -> str:
    return f"{value.normalize():f}"


def issue_moment(issued_at: datetime | None, now: datetime | None = None) -> datetime:
    """When a document is issued: the record's ``issued_at``, else now (China time)."""
    return issued_at or now or datetime.now(CHINA)


def policy_context(
    policy: Policy, *, registry: ProductRegistry, now: datetime | None = None
) -> dict[str, Any]:
    """Everything the schedule templates may print, already formatted the Chinese way."""
    product = registry.products[policy.product_code]
    vehicle = policy.vehicle
    prop = policy.property
    return {
        "company": text(registry.company),
        "company_en": text(registry.company_en),
        "hotline": text(registry.hotline),
        "product_name": text(product.name),
        "product_code": text(product.code),
        "policy_no": text(policy.policy_no),
        "proposal_no": text(policy.proposal_no),
        "print_serial": text(policy.print_serial or "—"),
        "branch_name": text(policy.branch.name),
        "branch_code": text(policy.branch.code),
        "applicant": _party(policy.applicant),
        "insured": _party(policy.insured),
        "beneficiaries": [
            {
                "name": text(b.name),
                "id_type_label": text(ID_TYPE_LABELS[b.id_type]),
                "id_no": text(b.id_no),
                "relation": text(b.relation),
                "share": text(_percent(b.share_percent)),
                "address": text(b.address),  # contract v1.1: "" (no address row) when not given
            }
            for b in policy.beneficiaries
        ],
        "period_text": text(period_wording(policy.period.start, policy.period.end)),
        "coverages": [
            {
                "code": text(c.code),
                "name": text(c.name),
                "sum_insured": text(amount_figures(c.sum_insured)),
                "premium": text(amount_figures(c.premium)),
                "deductible": text(c.deductible or "—"),
            }
            for c in policy.coverages
        ],
        "total_premium": text(amount_figures(policy.total_premium)),
        "total_premium_capitals": text(amount_capitals(policy.total_premium)),
        "special_terms": [text(t) for t in policy.special_terms if t.strip()],
        "clauses": [
            {
                "code": text(code),
                "title": text(registry.clauses[code].title),
                "version": text(registry.clauses[code].version),
            }
            for code in policy.clauses
        ],
        "vehicle": {
            "plate": text(vehicle.plate),
            "vin": text(vehicle.vin),
            "engine_no": text(vehicle.engine_no),
            "brand_model": text(vehicle.brand_model),
            "registered_on": text(chinese_date(vehicle.registered_on)),
            "usage": text(vehicle.usage),
            "seats": text(f"{vehicle.seats}座" if vehicle.seats else "—"),
        }
        if vehicle
        else {},
        "property": {
            "address": text(prop.address),
            "construction": text(prop.construction or "—"),
            "occupancy": text(prop.occupancy or "—"),
        }
        if prop
        else {},
        "issued_by": text(policy.issued_by),
        "approved_by": text(policy.underwriting.approved_by),
        "approved_at": text(chinese_datetime(policy.underwriting.approved_at)),
        "issue_date": text(chinese_date(issue_moment(policy.issued_at, now))),
    }


def endorsement_context(
    endorsement: Endorsement, *, policy: Policy, registry: ProductRegistry, now: datetime | None = None
) -> dict[str, Any]:
    """What the endorsement template prints; the policy supplies names, product and branch."""
    delta = endorsement.premium_delta
    if delta > 0:
        label = "加费"
    elif delta < 0:
        label = "退费"
    else:
        label = "保费变化"
    product: Product = registry.products[policy.product_code]
    # what a surrender or cancellation pays back: the premium taken off, never a negative amount
    refund = -delta if delta < 0 else Decimal(0)
    return {
        "type": text(endorsement.type),
        "type_label": text(ENDORSEMENT_TYPE_LABELS[endorsement.type]),
        "effective_date": text(chinese_datetime(endorsement.effective_at)),
        "policy_start": text(chinese_datetime(policy.period.start)),
        "period_text": text(period_wording(policy.period.start, policy.period.end)),
        "refund": text(amount_figures(refund)),
        "refund_capitals": text(amount_capitals(refund)),
        "clauses_added": [
            {
                "code": text(code),
                "title": text(registry.clauses[code].title),
                "version": text(registry.clauses[code].version),
            }
            for code in endorsement.clauses_added or ()
        ],
        "company": text(registry.company),
        "company_en": text(registry.company_en),
        "hotline": text(registry.hotline),
        "title": text(registry.endorsement_title),
        "endorsement_no": text(endorsement.endorsement_no),
        "policy_no": text(endorsement.policy_no),
        "product_name": text(product.name),
        "applicant_name": text(policy.applicant.name),
        "insured_name": text(policy.insured.name),
        "branch_name": text(policy.branch.name),
        "print_serial": text(endorsement.print_serial or "—"),
        "effective_text": text(f"自{chinese_datetime(endorsement.effective_at)}起"),
        "changes": [
            {"label": text(c.label), "old": text(c.old or "—"), "new": text(c.new or "—")}
            for c in endorsement.changes
        ],
        "premium_delta_label": text(label),
        "premium_delta": text(amount_figures(abs(delta))),
        "premium_delta_capitals": text(amount_capitals(abs(delta))),
        "text": text(endorsement.text),
        "issued_by": text(endorsement.issued_by),
        "approved_by": text(endorsement.underwriting.approved_by),
        "approved_at": text(chinese_datetime(endorsement.underwriting.approved_at)),
        "issue_date": text(chinese_date(issue_moment(endorsement.issued_at, now))),
    }


class TemplateCache:
    """Template bytes read once per run; each render gets a fresh ``DocxTemplate`` (render mutates it)."""

    def __init__(self) -> None:
        self._bytes = {}

    def load(self, path: Path) -> DocxTemplate:
        if path not in self._bytes:
            self._bytes[path] = path.read_bytes()
        return DocxTemplate(io.BytesIO(self._bytes[path]))


class _CompiledOnce(Environment):
    """docxtpl compiles the template's XML on every render; the XML is the same each time, so compile
    it once per distinct source (a few per template: body, headers, footers; docs/performance.md). Jinja
    templates are safe to render from several threads.
    """

    def __init__(self) -> None:
        super().__init__(autoescape=True)
        self._compiled: dict[str, Any] = {}
        self._lock = threading.Lock()

    def from_string(self, source, globals=None, template_class=None):  # type: ignore[override]
        if not isinstance(source, str) or globals or template_class:
            return super().from_string(source, globals, template_class)
        compiled = self._compiled.get(source)
        if compiled is None:
            compiled = super().from_string(source)
            with self._lock:
                if len(self._compiled) > 64:  # templates edited during a long-running watcher
                    self._compiled.clear()
                self._compiled[source] = compiled
        return compiled


_ENV = _CompiledOnce()


def render_docx(*, template: Path, context: dict[str, Any], out: Path, cache: TemplateCache) -> None:
    """Render ``template`` with ``context`` into ``out`` (.docx).

    A template a business user broke (an unclosed tag, an unknown filter) raises ``TemplateError``
    naming the file.
    """
    try:
        doc = cache.load(template)
        doc.render(context, jinja_env=_ENV, autoescape=True)
        with create_private(out) as fh:
            doc.save(fh)
    except JinjaTemplateError as e:
        raise TemplateError(f"template {template.name} is broken: {e}", hint="fix it in Word") from e
