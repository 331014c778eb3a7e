"""The product registry (``templates/products.toml``): which templates, clauses and images a product uses.

A template's version is the SHA-256 of its file, so a business user's edit in Word is a new version by
itself; every rendered document records the versions it used.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import get_args

from core.errors import TemplateError
from core.records import EndorsementType, Policy

DEFAULT_TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


def file_version(path: Path) -> str:
    """Content hash of a template file: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Clause:
    code: str
    title: str
    version: str
    path: Path

    @cached_property
    def content_hash(self) -> str:
        return file_version(self.path)


@dataclass(frozen=True)
class Product:
    code: str
    name: str
    schedule: Path
    clause_codes: tuple[str, ...]
    requires: tuple[str, ...]
    sections: tuple[str, ...]
    required_images: tuple[str, ...]


@dataclass(frozen=True)
class ProductRegistry:
    folder: Path
    company: str
    company_en: str
    hotline: str
    endorsement_template: Path
    endorsement_title: str
    products: dict[str, Product]
    clauses: dict[str, Clause]

    def clause_codes(self, product_code: str) -> tuple[str, ...]:
        """Every clause code that exists for ``product_code`` (none for a product not registered)."""
        product = self.products.get(product_code)
        return product.clause_codes if product is not None else ()

    # 批单 template per endorsement type (``[endorsement.types]``); a type not listed uses the default
    endorsement_templates: dict[str, Path] = field(default_factory=dict)

    def endorsement_template_for(self, endorsement_type: str) -> Path:
        """The 批单 template an endorsement of this type is printed on."""
        return self.endorsement_templates.get(endorsement_type, self.endorsement_template)

    def template_version(self, path: Path) -> str:
        return _cached_version(path, path.stat().st_mtime_ns, path.stat().st_size)


_versions: dict[tuple[Path, int, int], str] = {}


def _cached_version(path: Path, mtime: int, size: int) -> str:
    key = (path, mtime, size)
    if key not in _versions:
        _versions[key] = file_version(path)
    return _versions[key]


def load_registry(folder: Path = DEFAULT_TEMPLATES_DIR) -> ProductRegistry:
    """Read and check ``products.toml``: every named template and clause file must exist."""
    toml_path = folder / "products.toml"
    try:
        data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise TemplateError(f"product registry not found: {toml_path}") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise TemplateError(f"product registry {toml_path} is not valid TOML: {e}") from e

    def existing(rel: str, what: str) -> Path:
        path = (folder / rel).resolve()
        if not path.is_file():
            raise TemplateError(f"{what}: template file {rel} is missing", hint=f"looked in {folder}")
        return path

    try:
        clauses = {
            code: Clause(
                code=code,
                title=c["title"],
                version=str(c.get("version", "")),
                path=existing(c["file"], f"clause {code}"),
            )
            for code, c in data.get("clauses", {}).items()
        }
        products = {}
        for code, p in data.get("products", {}).items():
            unknown = [c for c in p.get("clauses", []) if c not in clauses]
            if unknown:
                raise TemplateError(f"product {code} lists clauses with no [clauses] entry: {unknown}")
            products[code] = Product(
                code=code,
                name=p["name"],
                schedule=existing(p["schedule"], f"product {code}"),
                clause_codes=tuple(p.get("clauses", [])),
                requires=tuple(p.get("requires", [])),
                sections=tuple(p.get("sections", [])),
                required_images=tuple(p.get("required_images", [])),
            )
        endorsement = data["endorsement"]
        types = endorsement.get("types", {})
        if unknown := sorted(set(types) - set(get_args(EndorsementType))):
            raise TemplateError(f"[endorsement.types] names unknown endorsement types: {unknown}")
        return ProductRegistry(
            folder=folder,
            company=data["company"],
            company_en=data.get("company_en", ""),
            hotline=data.get("hotline", ""),
            endorsement_template=existing(endorsement["template"], "endorsement"),
            endorsement_title=endorsement.get("title", "批单"),
            products=products,
            clauses=clauses,
            endorsement_templates={kind: existing(rel, f"{kind} endorsement") for kind, rel in types.items()},
        )
    except KeyError as e:
        raise TemplateError(f"product registry {toml_path} lacks the key {e}") from e


def required_images(policy: Policy, product: Product) -> tuple[str, ...]:
    """The image kinds this policy must have: an organisation shows its business licence, not an ID card."""
    kinds = list(product.required_images)
    if policy.applicant.party_type == "organization" and {"id_front", "id_back"} & set(kinds):
        kinds = [k for k in kinds if k not in ("id_front", "id_back")] + ["business_license"]
    return tuple(kinds)
