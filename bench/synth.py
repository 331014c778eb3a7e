"""Synthetic issuance batches for tests, benchmarks and the bundled sample.

Every value made here is invented: names, ID numbers, phones, plates, VINs and addresses are drawn from a
seeded random generator (addresses lie on 示范路/样本街 and a few invented streets with rare glyphs), and
every image says 样本 SPECIMEN in large letters. ID numbers, USCCs and VINs nevertheless carry correct
check characters, so the records pass the contract's semantic rules (``../shared/contract/README.md``,
beside the repository) as well as its JSON Schema.

What is promised:

- ``make_batch`` is deterministic: the same arguments give a byte-identical ``batch.jsonl`` and images.
- Every record it writes is a valid policy or endorsement; endorsements come after all policies and
  name policies earlier in the same batch.
- Images are drawn once per variant and shared by many records, so 500+ records take seconds.

The check-character helpers are private on purpose: ``core.privacy`` is the validator, and a
generator that shared its code could not catch its bugs.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import functools
import io
import json
import math
import random
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFilter, ImageFont

__all__ = [
    "PRODUCTS",
    "draw_image",
    "flat_columns",
    "flatten",
    "make_batch",
    "unflatten",
    "write_csv",
    "write_xlsx",
]

CST = dt.timezone(dt.timedelta(hours=8))
CENT = Decimal("0.01")

COMPANY = "示范财产保险股份有限公司"

# Mirrors templates/products.toml (clause codes and required image kinds); tests compare the two.
PRODUCTS: dict[str, dict[str, Any]] = {
    "AUTO-COMM": {
        "name": "机动车商业保险",
        "letters": "AC",
        "clauses": ["AUTO-COMM-DAMAGE", "AUTO-COMM-TPL", "AUTO-COMM-SEAT"],
        "required_images": ["id_front", "id_back", "vehicle_license", "exemption_notice"],
    },
    "HOME-PROP": {
        "name": "家庭财产保险",
        "letters": "HP",
        "clauses": ["HOME-PROP-MAIN", "HOME-PROP-THEFT"],
        "required_images": ["id_front", "id_back", "exemption_notice"],
    },
    "PA-ACC": {
        "name": "个人意外伤害保险",
        "letters": "PA",
        "clauses": ["PA-ACC-MAIN", "PA-ACC-MED"],
        "required_images": ["id_front", "id_back", "exemption_notice", "applicant_declaration"],
    },
}
PRODUCT_CYCLE = ("AUTO-COMM", "HOME-PROP", "PA-ACC")

# ---------------------------------------------------------------------------------------------------------
# Check characters (private copies; see module docstring)
# ---------------------------------------------------------------------------------------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"

_USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)  # GB 11714 organization code, positions 9-17 of a USCC

_VIN_VALUES = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_VIN_CHARSET = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"


def _resident_id_check(first17: str) -> str:
    """GB 11643: ISO 7064 MOD 11-2 check character of an 18-character resident ID."""
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def _org_code_check(first8: str) -> str:
    """GB 11714 check character of the organization code embedded in a USCC."""
    total = sum(int(c, 36) * w for c, w in zip(first8, _ORG_WEIGHTS, strict=True))
    c9 = 11 - total % 11
    return {10: "X", 11: "0"}.get(c9, str(c9))


def _uscc_check(first17: str) -> str:
    """GB 32100 check character of a 统一社会信用代码."""
    total = sum(_USCC_CHARSET.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_CHARSET[(31 - total % 31) % 31]


def _vin_check(vin: str) -> str:
    """ISO 3779 / GB 16735 check digit (position 9) of a 17-character VIN; position 9 itself is ignored."""
    total = sum(_VIN_VALUES[c] * w for c, w in zip(vin, _VIN_WEIGHTS, strict=True))
    r = total % 11
    return "X" if r == 10 else str(r)


# ---------------------------------------------------------------------------------------------------------
# Synthetic values
# ---------------------------------------------------------------------------------------------------------

# (division code, branch name, city, district, plate prefix). Division codes are real codes (the
# contract requires the format); everything attached to them is invented.
_BRANCHES = (
    ("110105", "示范财险北京市朝阳支公司", "北京市", "朝阳区", "京A"),
    ("310115", "示范财险上海市浦东新区支公司", "上海市", "浦东新区", "沪B"),
    ("440305", "示范财险深圳市南山支公司", "广东省深圳市", "南山区", "粤B"),
    ("330106", "示范财险杭州市西湖支公司", "浙江省杭州市", "西湖区", "浙A"),
    ("510107", "示范财险成都市武侯支公司", "四川省成都市", "武侯区", "川A"),
    ("420106", "示范财险武汉市武昌支公司", "湖北省武汉市", "武昌区", "鄂A"),
)
_SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎余潘杜戴夏钟汪田任姜范方石姚谭廖邹熊金陆郝孔白崔康毛邱秦江史顾侯邵孟龙万段雷钱汤尹黎易常武乔贺赖龚文"  # noqa: E501
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍建国红梅鑫宇浩然子涵欣怡思远晨曦嘉怡俊杰雨桐梓轩一诺佳琪文博天佑若汐"  # noqa: E501
_STREETS = ("示范路", "样本街", "示范大道", "样本东路", "示范西街", "样本南路")
_ORG_WORDS = ("启明", "远航", "恒信", "嘉禾", "瑞丰", "青松", "博雅", "星河")
_ORG_KINDS = ("贸易有限公司", "科技有限公司", "物流有限公司", "餐饮管理有限公司")
_BRANDS = (
    ("示范牌SF7150A轿车", 5),
    ("样本牌YB6480多用途乘用车", 7),
    ("示范牌SF7200EV纯电动轿车", 5),
    ("样本牌YB6460运动型乘用车", 5),
)
_WMIS = ("LSF", "LYB", "LXS")  # "L" = made in China; the rest is invented
_YEAR_CODES = {2019: "K", 2020: "L", 2021: "M", 2022: "N", 2023: "P", 2024: "R", 2025: "S", 2026: "T"}

_SPECIAL_TERMS = {
    "AUTO-COMM": (
        "本保单仅承保非营业用途，被保险机动车从事网约车等营运活动期间发生的损失，保险人不负责赔偿。",
        "机动车损失保险每次事故绝对免赔额为人民币500元。",
        "指定驾驶人：投保人本人。非指定驾驶人驾驶时发生事故，增加绝对免赔率10%。",
    ),
    "HOME-PROP": (
        "房屋出租期间，室内财产中的现金、首饰、有价证券不在保险责任范围内。",
        "盗窃、抢劫损失须经公安机关立案，并提供报案回执。",
    ),
    "PA-ACC": (
        "被保险人从事潜水、跳伞、攀岩等高风险运动期间发生的意外伤害，不属于保险责任。",
        "意外医疗保险每次事故免赔额人民币100元，赔付比例90%，限社保范围内费用。",
    ),
}


def _money(value: Decimal) -> str:
    return format(value.quantize(CENT), "f")


def _ts(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=CST)


def _plus_years(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, month=3, day=1)


def _person_name(rng: random.Random) -> str:
    return rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2, 2))))


def _resident_id(rng: random.Random, *, region: str, born: dt.date, male: bool) -> str:
    seq = rng.randrange(0, 999)
    if (seq % 2 == 1) != male:
        seq += 1
    first17 = f"{region}{born:%Y%m%d}{seq:03d}"
    return first17 + _resident_id_check(first17)


def _birth_date(rng: random.Random, *, on: dt.date, min_age: int, max_age: int) -> dt.date:
    latest = _plus_years(on, -min_age)
    earliest = _plus_years(on, -max_age)
    return earliest + dt.timedelta(days=rng.randrange((latest - earliest).days))


def _uscc(rng: random.Random, *, region: str) -> str:
    body = "".join(rng.choice(_USCC_CHARSET) for _ in range(8))
    first17 = f"91{region}{body}{_org_code_check(body)}"
    return first17 + _uscc_check(first17)


def _vin(rng: random.Random, *, model_year: int) -> str:
    vds = "".join(rng.choice(_VIN_CHARSET) for _ in range(5))
    plant = rng.choice("ABCDEFGH")
    serial = f"{rng.randrange(1_000_000):06d}"
    draft = f"{rng.choice(_WMIS)}{vds}0{_YEAR_CODES[model_year]}{plant}{serial}"
    return draft[:8] + _vin_check(draft) + draft[9:]


def _plate(rng: random.Random, *, prefix: str, electric: bool) -> str:
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    if electric:  # new-energy plates: 8 characters, D (pure electric) + 5 digits
        return f"{prefix}D{rng.randrange(100000):05d}"
    tail = rng.choice(letters) + "".join(rng.choice(letters + "0123456789") for _ in range(2))
    return f"{prefix}{tail}{rng.randrange(100):02d}"


def _phone(rng: random.Random) -> str:
    # 1380000xxxx: an obviously placeholder block, never a customer's number from real data.
    return f"1380000{rng.randrange(10000):04d}"


def _address(rng: random.Random, branch: tuple[str, ...], *, long: bool = False, street: str = "") -> str:
    _code, _name, city, district, _plate_prefix = branch
    base = (
        f"{city}{district}{street or rng.choice(_STREETS)}{rng.randrange(1, 999)}号"
        f"{rng.randrange(1, 30)}栋{rng.randrange(1, 6)}单元{rng.randrange(1, 33)}{rng.randrange(1, 5):02d}室"
    )
    if long:
        base += "（示范花园小区东区，近样本地铁站B出口，物业服务中心北侧，门牌以现场为准）"
    return base


def _person(
    rng: random.Random, branch: tuple[str, ...], *, on: dt.date, min_age: int = 20, max_age: int = 65
) -> dict[str, str]:
    male = rng.random() < 0.5
    born = _birth_date(rng, on=on, min_age=min_age, max_age=max_age)
    return {
        "name": _person_name(rng),
        "party_type": "person",
        "id_type": "resident_id",
        "id_no": _resident_id(rng, region=branch[0], born=born, male=male),
        "address": _address(rng, branch),
        "phone": _phone(rng),
    }


def _organization(rng: random.Random, branch: tuple[str, ...]) -> dict[str, str]:
    return {
        "name": f"示范{rng.choice(_ORG_WORDS)}{rng.choice(_ORG_KINDS)}",
        "party_type": "organization",
        "id_type": "uscc",
        "id_no": _uscc(rng, region=branch[0]),
        "address": _address(rng, branch),
        "phone": _phone(rng),
    }


def _coverage(code: str, name: str, sum_insured: Decimal, premium: Decimal, **extra: str) -> dict[str, str]:
    return {
        "code": code,
        "name": name,
        "sum_insured": _money(sum_insured),
        "premium": _money(premium),
        **extra,
    }


def _rate(amount: Decimal, rate: str, rng: random.Random) -> Decimal:
    jitter = Decimal(rng.randrange(90, 111)) / 100
    return (amount * Decimal(rate) * jitter).quantize(CENT)


# ---------------------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------------------


def _auto_comm(rng: random.Random, record: dict[str, Any], *, i: int, branch: tuple[str, ...]) -> None:
    start = dt.date.fromisoformat(record["period"]["start"][:10])
    organization = i % 5 == 3
    party = _organization(rng, branch) if organization else _person(rng, branch, on=start)
    record["applicant"] = party
    record["insured"] = dict(party)
    brand, seats = rng.choice(_BRANDS)
    registered = start - dt.timedelta(days=rng.randrange(30, 6 * 365))
    price = Decimal(rng.randrange(600, 3500) * 100)
    coverages = [
        _coverage("AC-DAMAGE", "机动车损失保险", price, _rate(price, "0.012", rng) + 300, deductible="无"),
        _coverage(
            "AC-TPL",
            "机动车第三者责任保险",
            Decimal(rng.choice((1, 2, 3)) * 1_000_000),
            _rate(Decimal(100_000), "0.011", rng),
        ),
    ]
    clauses = ["AUTO-COMM-DAMAGE", "AUTO-COMM-TPL"]
    if i % 7 != 4:  # most motor policies add seat cover; the rest show a policy with fewer clauses
        coverages.append(
            _coverage(
                "AC-SEAT-DRV",
                "机动车车上人员责任保险（司机）",
                Decimal(10_000),
                _rate(Decimal(10_000), "0.004", rng),
            )
        )
        coverages.append(
            _coverage(
                "AC-SEAT-PSG",
                f"机动车车上人员责任保险（乘客{seats - 1}座）",
                Decimal(10_000 * (seats - 1)),
                _rate(Decimal(10_000 * (seats - 1)), "0.0026", rng),
            )
        )
        clauses.append("AUTO-COMM-SEAT")
    record["coverages"] = coverages
    record["clauses"] = clauses
    record["vehicle"] = {
        "plate": _plate(rng, prefix=branch[4], electric="EV" in brand),
        "vin": _vin(rng, model_year=min(max(registered.year, 2019), 2026)),
        "engine_no": "".join(rng.choice("0123456789ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(9)),
        "brand_model": brand,
        "registered_on": registered.isoformat(),
        "usage": "非营业企业" if organization else "家庭自用",
        "seats": seats,
    }


def _home_prop(rng: random.Random, record: dict[str, Any], *, i: int, branch: tuple[str, ...]) -> None:
    start = dt.date.fromisoformat(record["period"]["start"][:10])
    person = _person(rng, branch, on=start)
    record["applicant"] = person
    record["insured"] = dict(person)
    building = Decimal(rng.randrange(30, 300) * 10_000)
    contents = Decimal(rng.randrange(5, 30) * 10_000)
    theft = Decimal(rng.choice((10_000, 20_000, 30_000)))
    record["coverages"] = [
        _coverage("HP-BUILDING", "房屋主体", building, _rate(building, "0.0004", rng)),
        _coverage("HP-CONTENTS", "室内财产", contents, _rate(contents, "0.0015", rng)),
        _coverage(
            "HP-THEFT", "附加盗窃、抢劫保险", theft, _rate(theft, "0.006", rng), deductible="每次事故300元"
        ),
    ]
    record["clauses"] = ["HOME-PROP-MAIN", "HOME-PROP-THEFT"]
    record["property"] = {
        "address": person["address"] if rng.random() < 0.7 else _address(rng, branch),
        "construction": rng.choice(("钢筋混凝土结构", "砖混结构", "钢结构")),
        "occupancy": rng.choice(("自住", "自住", "出租")),
    }


_SHARES = {1: ("100.00",), 2: ("60.00", "40.00"), 3: ("50.00", "30.00", "20.00")}
_RELATIONS = ("配偶", "子女", "父母")


def _pa_acc(rng: random.Random, record: dict[str, Any], *, i: int, branch: tuple[str, ...]) -> None:
    start = dt.date.fromisoformat(record["period"]["start"][:10])
    applicant = _person(rng, branch, on=start, min_age=30, max_age=65)
    record["applicant"] = applicant
    record["insured"] = (
        dict(applicant) if rng.random() < 0.6 else _person(rng, branch, on=start, min_age=18, max_age=30)
    )
    death = Decimal(rng.randrange(10, 100) * 10_000)
    coverages = [_coverage("PA-DEATH-DIS", "意外身故、残疾保险金", death, _rate(death, "0.0012", rng))]
    clauses = ["PA-ACC-MAIN"]
    if i % 5 != 2:
        medical = Decimal(rng.choice((10_000, 20_000, 50_000)))
        coverages.append(
            _coverage(
                "PA-MED",
                "附加意外伤害医疗保险金",
                medical,
                _rate(medical, "0.01", rng),
                deductible="每次事故100元",
            )
        )
        clauses.append("PA-ACC-MED")
    record["coverages"] = coverages
    record["clauses"] = clauses
    if (i // 3) % 2 == 0:  # about half name beneficiaries; the rest are 法定
        count = rng.choice((1, 2, 2, 3))
        record["beneficiaries"] = [
            {
                "name": _person_name(rng),
                "id_type": "resident_id",
                "id_no": _resident_id(
                    rng,
                    region=branch[0],
                    born=_birth_date(rng, on=start, min_age=1, max_age=80),
                    male=rng.random() < 0.5,
                ),
                "relation": rng.choice(_RELATIONS),
                "share_percent": share,
            }
            for share in _SHARES[count]
        ]
        _beneficiary_addresses(record, branch=branch)


# Street names with characters outside the BMP (CJK Extension B), as real place names have them; each
# is drawn by the embedded CJK font (tests/test_rare_glyphs.py).
_RARE_STREETS = ("𠮷祥巷", "𡃁子湾路", "𤆍塘街", "𣎴石村")


def _beneficiary_addresses(record: dict[str, Any], *, branch: tuple[str, ...]) -> None:
    """Contract v1.1: some beneficiaries with an address (the insured's; a long one; one on a street with
    a rare glyph; a plain one), others without. Drawn from a generator of their own, seeded by the
    record, so that the main stream, and every other value of the batch, stays as it was."""
    rng = random.Random(f"{record['record_id']}:beneficiaries")
    for b in record["beneficiaries"]:
        shape = rng.randrange(5)
        if shape == 0:
            continue
        if shape == 1:
            b["address"] = record["insured"]["address"]  # a spouse or child who lives with the insured
        elif shape == 2:
            b["address"] = _address(rng, branch, long=True)
        elif shape == 3:
            b["address"] = _address(rng, branch, street=rng.choice(_RARE_STREETS))
        else:
            b["address"] = _address(rng, branch)


_FILLERS = {"AUTO-COMM": _auto_comm, "HOME-PROP": _home_prop, "PA-ACC": _pa_acc}


# Which document of a record a number names: the digit that keeps the three apart in all-digit numbers.
_DOCUMENT_DIGIT = {"P": "1", "T": "2", "E": "3"}


def document_number(kind: str, i: int, *, seed: int, product: str, branch: str, day: dt.date) -> str:
    """The ``i``-th policy (``P``), proposal (``T``) or endorsement (``E``) number of a batch.

    Real numbers come in several shapes and the pipeline must take each as it is (contract README,
    "Document numbers"), so the shape cycles with ``i``: 4 letters + 18 digits (PICC's commercial motor
    policies, ``PDAA…``), 20 digits, 18 digits, and a shorter letters-date-serial form. Unique per
    (seed mod 1000, kind, i) for i below ten million.
    """
    letters = PRODUCTS[product]["letters"]
    digit = _DOCUMENT_DIGIT[kind]
    product_digit = str(PRODUCT_CYCLE.index(product) + 1)
    serial = f"{seed % 1000:03d}{i + 1:07d}"
    shape = i % 4
    if shape == 0:
        return f"{kind}D{letters}{day:%y}{branch}{serial}"  # 4 letters + 2 + 6 + 10 = 18 digits
    if shape == 1:
        return f"{day:%y}{branch}{digit}{product_digit}{serial}"  # 20 digits
    if shape == 2:
        return f"{day:%y}{branch[:4]}{digit}{product_digit}{serial}"  # 18 digits
    return f"{kind}{letters}{day:%Y%m%d}{seed % 1000:03d}{i + 1:06d}"


def _policy(
    rng: random.Random,
    *,
    i: int,
    seed: int,
    product: str,
    image_kinds: Sequence[str],
    variants: int,
    use_image: Callable[[str, str, int], str],
) -> dict[str, Any]:
    branch = _BRANCHES[rng.randrange(len(_BRANCHES))]
    issued_day = dt.date(2026, 1, 5) + dt.timedelta(days=rng.randrange(330))
    start = issued_day + dt.timedelta(days=rng.randrange(1, 31))
    approved = dt.datetime.combine(issued_day, dt.time(9), tzinfo=CST) + dt.timedelta(
        minutes=rng.randrange(8 * 60), seconds=rng.randrange(60)
    )
    record: dict[str, Any] = {
        "kind": "policy",
        "record_id": f"UW-{seed}-{i + 1:06d}",
        "policy_no": document_number("P", i, seed=seed, product=product, branch=branch[0], day=issued_day),
        "proposal_no": document_number("T", i, seed=seed, product=product, branch=branch[0], day=issued_day),
    }
    if i % 2 == 0:
        record["print_serial"] = f"{issued_day:%Y}{branch[0]}{rng.randrange(10**8):08d}"
    record |= {
        "product_code": product,
        "branch": {"code": branch[0], "name": branch[1]},
        "period": {"start": _ts(_midnight(start)), "end": _ts(_midnight(_plus_years(start, 1)))},
    }
    _FILLERS[product](rng, record, i=i, branch=branch)
    total = sum((Decimal(c["premium"]) for c in record["coverages"]), Decimal(0))
    record["total_premium"] = _money(total)
    record["currency"] = "CNY"
    if i % 4 == 0:
        record["special_terms"] = [rng.choice(_SPECIAL_TERMS[product])]
    record["underwriting"] = {"approved_by": f"UW{rng.randrange(1, 40):03d}", "approved_at": _ts(approved)}
    record["issued_by"] = f"CLK{rng.randrange(1, 200):04d}"
    record["issued_at"] = _ts(approved + dt.timedelta(minutes=rng.randrange(5, 90)))
    # Re-order so the JSON reads like the contract's table (applicant before coverages, etc.).
    order = [
        "kind", "record_id", "policy_no", "proposal_no", "print_serial", "product_code", "branch",
        "applicant", "insured", "beneficiaries", "period", "coverages", "total_premium", "currency",
        "special_terms", "clauses", "vehicle", "property", "underwriting", "issued_by", "issued_at",
    ]  # fmt: skip
    record = {k: record[k] for k in order if k in record}
    record["images"] = [
        {"kind": k, "path": use_image(k, product, rng.randrange(variants))} for k in image_kinds
    ]
    return record


def _pick_image_kinds(rng: random.Random, product: str, count: int) -> list[str]:
    required = PRODUCTS[product]["required_images"]
    chosen = rng.sample(required, min(count, len(required)))
    return sorted(chosen, key=required.index)


def _endorsement(
    rng: random.Random,
    *,
    j: int,
    seed: int,
    policy: dict[str, Any],
    state: dict[str, str],
    not_before: dt.datetime,
    use_image: Callable[[str, str, int], str],
) -> tuple[dict[str, Any], dt.datetime]:
    """One endorsement on ``policy``; ``state`` is the policy's flat view as already endorsed."""
    product = policy["product_code"]
    start = dt.datetime.fromisoformat(policy["period"]["start"])
    end = dt.datetime.fromisoformat(policy["period"]["end"])
    latest = (end - dt.timedelta(days=1)).date()
    earliest = min(max((start + dt.timedelta(days=1)).date(), not_before.date()), latest)
    effective = _midnight(earliest + dt.timedelta(days=rng.randrange((latest - earliest).days + 1)))
    total = Decimal(policy["total_premium"])
    refund = j % 2 == 0
    delta = (total * Decimal(rng.randrange(3, 15)) / 100).quantize(CENT)
    delta = -delta if refund else delta
    images: list[dict[str, str]] = []
    branch = next(b for b in _BRANCHES if b[0] == policy["branch"]["code"])
    if product == "AUTO-COMM" and j % 3 != 2:
        old_plate = state["vehicle.plate"]
        new_plate = _plate(rng, prefix=branch[4], electric=len(old_plate) == 8)
        changes = [{"field": "vehicle.plate", "label": "号牌号码", "old": old_plate, "new": new_plate}]
        images.append({"kind": "vehicle_license", "path": use_image("vehicle_license", product, j)})
        reason = "被保险机动车号牌号码变更"
    elif product == "HOME-PROP" and j % 3 != 2:
        old = state["property.occupancy"]
        new = "出租" if old == "自住" else "自住"
        changes = [{"field": "property.occupancy", "label": "房屋使用性质", "old": old, "new": new}]
        reason = "保险标的使用性质变更"
    elif product == "PA-ACC" and j % 3 != 2:
        field = "coverages.0.sum_insured"
        old = state[field]
        step = Decimal(rng.randrange(1, 10) * 10_000)
        new = Decimal(old) - step if refund and Decimal(old) > step else Decimal(old) + step
        delta = abs(delta) if new > Decimal(old) else -abs(delta)
        changes = [
            {"field": field, "label": f"{state['coverages.0.name']}保险金额", "old": old, "new": _money(new)}
        ]
        reason = "保险金额调整"
    else:
        old = state["applicant.phone"]
        new = _phone(rng)
        changes = [{"field": "applicant.phone", "label": "投保人联系电话", "old": old, "new": new}]
        delta = Decimal(0)
        reason = "投保人联系电话变更"
    for change in changes:
        state[change["field"]] = change["new"]
    wording = "；".join(f"{c['label']}由“{c['old']}”变更为“{c['new']}”" for c in changes)
    if delta < 0:
        money = f"退还保险费人民币{_money(-delta)}元。"
    elif delta > 0:
        money = f"加收保险费人民币{_money(delta)}元。"
    else:
        money = "保险费不变。"
    approved = effective - dt.timedelta(days=1) + dt.timedelta(hours=10, minutes=rng.randrange(360))
    approved = max(approved, not_before + dt.timedelta(minutes=30))
    if effective < approved:  # never backdated (倒签单, contract README): from the next midnight, or at once
        effective = min(
            _midnight(approved.date() + dt.timedelta(days=1)), max(approved, end - dt.timedelta(hours=1))
        )
    text = (
        f"经投保人申请，因{reason}，本公司同意自{effective.year}年{effective.month}月{effective.day}日零时起，{wording}。"
        f"{money}其他保险条件不变。"
    )
    branch = policy["branch"]["code"]
    record: dict[str, Any] = {
        "kind": "endorsement",
        "record_id": f"UW-{seed}-E{j + 1:06d}",
        "endorsement_no": document_number("E", j, seed=seed, product=product, branch=branch, day=effective),
        "policy_no": policy["policy_no"],
        "effective_at": _ts(effective),
        "changes": changes,
        "premium_delta": _money(delta),
        "text": text,
        "underwriting": {"approved_by": f"UW{rng.randrange(1, 40):03d}", "approved_at": _ts(approved)},
        "issued_by": f"CLK{rng.randrange(1, 200):04d}",
        "issued_at": _ts(approved + dt.timedelta(minutes=rng.randrange(5, 60))),
    }
    if images:
        record["images"] = images
    return record, effective


def make_batch(
    folder: Path,
    n: int,
    *,
    seed: int = 1,
    images_per_record: int = 3,
    endorsements: int = 0,
    image_format: str = "jpeg",
    image_variants: int = 6,
) -> Path:
    """Write ``folder/batch.jsonl`` with ``n`` policies then ``endorsements`` endorsements; return its path.

    Products cycle AUTO-COMM, HOME-PROP, PA-ACC. Each policy carries ``images_per_record`` images chosen
    from its product's required kinds; images are drawn ``image_variants`` times per kind (per product for
    the signed pages) and shared, written under ``folder/images/``. Same arguments, same bytes.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    if endorsements < 0 or images_per_record < 0 or image_variants < 1:
        raise ValueError("endorsements and images_per_record must be >= 0, image_variants >= 1")
    fmt = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png"}.get(image_format.lower())
    if fmt is None:
        raise ValueError(f"image_format must be 'jpeg' or 'png', not {image_format!r}")
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    suffix = ".jpg" if fmt == "jpeg" else ".png"
    wanted: dict[str, tuple[str, str, int]] = {}

    def use_image(kind: str, product: str, variant: int) -> str:
        per_product = kind in _PER_PRODUCT_KINDS
        # signed pages are drawn per product, so fewer variants of each keep the drawing time down
        variant %= max(image_variants // 2, 1) if per_product else image_variants
        stem = f"{kind}-{product}-{variant + 1}" if per_product else f"{kind}-{variant + 1}"
        rel = f"images/{stem}{suffix}"
        wanted.setdefault(rel, (kind, product, variant))
        return rel

    rng = random.Random(f"issuance-synth:{seed}")
    records: list[dict[str, Any]] = []
    for i in range(n):
        product = PRODUCT_CYCLE[i % len(PRODUCT_CYCLE)]
        kinds = _pick_image_kinds(rng, product, images_per_record)
        records.append(
            _policy(
                rng,
                i=i,
                seed=seed,
                product=product,
                image_kinds=kinds,
                variants=image_variants,
                use_image=use_image,
            )
        )
    states = {p["policy_no"]: flatten(p) for p in records[:n]}
    last: dict[str, dt.datetime] = {}
    for j in range(endorsements):
        policy = records[j % n]
        not_before = last.get(policy["policy_no"], dt.datetime.fromisoformat(policy["issued_at"]))
        endorsement, effective = _endorsement(
            rng,
            j=j,
            seed=seed,
            policy=policy,
            state=states[policy["policy_no"]],
            not_before=not_before,
            use_image=use_image,
        )
        last[policy["policy_no"]] = effective
        records.append(endorsement)

    for rel, (kind, product, variant) in sorted(wanted.items()):
        (folder / rel).write_bytes(_encoded(kind, product, variant, seed, fmt))

    batch = folder / "batch.jsonl"
    with batch.open("w", encoding="utf-8", newline="\n") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return batch


@functools.lru_cache(maxsize=128)
def _encoded(kind: str, product: str, variant: int, seed: int, fmt: str) -> bytes:
    """The file bytes of one image variant, cached so repeated batches in one process draw nothing twice."""
    buffer = io.BytesIO()
    _save(draw_image(kind, product=product, variant=variant, seed=seed), buffer, fmt)
    return buffer.getvalue()


def _save(image: Image.Image, target: Path | io.BytesIO, fmt: str) -> None:
    if fmt == "jpeg":
        image.save(target, "JPEG", quality=80, optimize=True)
    else:
        image.save(target, "PNG")


# ---------------------------------------------------------------------------------------------------------
# Flat files (contract: "Flat files (CSV / XLSX)")
# ---------------------------------------------------------------------------------------------------------

_FIELD_ORDER = (
    "kind", "record_id", "policy_no", "endorsement_no", "proposal_no", "print_serial", "product_code",
    "branch", "applicant", "insured", "beneficiaries", "period", "coverages", "total_premium", "currency",
    "special_terms", "clauses", "vehicle", "property", "effective_at", "changes", "premium_delta", "text",
    "underwriting", "issued_by", "issued_at", "images",
    # nested
    "code", "name", "party_type", "id_type", "id_no", "relation", "share_percent", "address", "phone",
    "start", "end", "sum_insured", "premium", "deductible", "plate", "vin", "engine_no", "brand_model",
    "registered_on", "usage", "seats", "construction", "occupancy", "field", "label", "old", "new",
    "approved_by", "approved_at", "path",
)  # fmt: skip
_FIELD_RANK = {name: rank for rank, name in enumerate(_FIELD_ORDER)}
_INTEGER_COLUMNS = frozenset({"vehicle.seats"})
_PER_PRODUCT_KINDS = frozenset({"exemption_notice", "applicant_declaration"})


def flatten(record: Mapping[str, Any]) -> dict[str, str]:
    """The record as dotted flat columns: ``applicant.name``, ``coverages.0.premium``, ``clauses.0``.

    Absent fields and empty lists produce no column; ``None`` and ``""`` give no column either, because
    the contract reads an empty cell as an absent field.
    """
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)
        elif isinstance(value, list | tuple):
            for index, sub in enumerate(value):
                walk(f"{prefix}.{index}", sub)
        elif value is None or value == "":
            return
        elif isinstance(value, bool):
            out[prefix] = "true" if value else "false"
        else:
            out[prefix] = str(value)

    walk("", record)
    return out


def _column_key(column: str) -> tuple[tuple[int, int, str], ...]:
    parts = []
    for part in column.split("."):
        if part.isdigit():
            parts.append((0, int(part), ""))
        else:
            parts.append((1, _FIELD_RANK.get(part, len(_FIELD_RANK)), part))
    return tuple(parts)


def flat_columns(rows: Iterable[Mapping[str, str]]) -> list[str]:
    """Union of the columns of flat ``rows`` in the contract's field order (indexes numerically)."""
    seen: set[str] = set()
    for row in rows:
        seen.update(row)
    return sorted(seen, key=_column_key)


def unflatten(row: Mapping[str, str]) -> dict[str, Any]:
    """Inverse of ``flatten``: empty cells are dropped, numeric segments become list indexes."""
    root: dict[str, Any] = {}
    for column, value in row.items():
        if value is None or value == "":
            continue
        node = root
        parts = column.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = int(value) if column in _INTEGER_COLUMNS else value

    def listify(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        items = {k: listify(v) for k, v in node.items()}
        if items and all(k.isdigit() for k in items):
            return [items[k] for k in sorted(items, key=int)]
        return items

    return listify(root)


def write_csv(records: Iterable[Mapping[str, Any]], path: Path, *, encoding: str) -> Path:
    """Write ``records`` as a CSV with dotted column names (``utf-8-sig`` gives the BOM)."""
    rows = [flatten(r) for r in records]
    columns = flat_columns(rows)
    path = Path(path)
    with path.open("w", encoding=encoding, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row.get(c, "") for c in columns])
    return path


def write_xlsx(records: Iterable[Mapping[str, Any]], path: Path) -> Path:
    """Write ``records`` as an XLSX sheet; every cell is text (format ``@``), never a number or formula."""
    from openpyxl import Workbook

    rows = [flatten(r) for r in records]
    columns = flat_columns(rows)
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "batch"
    for r, values in enumerate([columns, *([row.get(c, "") for c in columns] for row in rows)], start=1):
        for c, value in enumerate(values, start=1):
            if value == "":
                continue
            cell = sheet.cell(row=r, column=c, value=value)
            cell.data_type = "s"  # openpyxl would turn "=..." into a formula
            cell.number_format = "@"
    fixed = dt.datetime(2026, 1, 1)
    workbook.properties.created = fixed
    workbook.properties.modified = fixed
    workbook.properties.creator = "bench.synth (样本 SPECIMEN)"
    path = Path(path)
    workbook.save(path)
    return path


# ---------------------------------------------------------------------------------------------------------
# Images: synthetic scans, every one marked 样本 SPECIMEN
# ---------------------------------------------------------------------------------------------------------

_FONT_DIR = Path("/usr/share/fonts/opentype/noto")
_SC_INDEX = 2  # face index of the Simplified Chinese ("SC") face in the Noto CJK collections
CARD = (1000, 630)
A4 = (1240, 1754)
INK = (25, 25, 30)
LABEL = (40, 80, 140)
RED = (200, 30, 30)
BLUE_INK = (20, 40, 140)


@functools.lru_cache(maxsize=64)
def _font(size: int, *, serif: bool = False, bold: bool = False) -> ImageFont.FreeTypeFont:
    family = "NotoSerifCJK" if serif else "NotoSansCJK"
    for weight in ("Bold", "Regular") if bold else ("Regular",):
        path = _FONT_DIR / f"{family}-{weight}.ttc"
        if path.exists():
            return ImageFont.truetype(str(path), size, index=_SC_INDEX, layout_engine=ImageFont.Layout.BASIC)
    raise FileNotFoundError(f"Noto CJK font missing under {_FONT_DIR} (apt install fonts-noto-cjk)")


_NO_LINE_START = frozenset("，。、；：？！）》」』”’,.;:?!)")


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    lines: list[str] = []
    line = ""
    for char in text:
        # 避头点: closing punctuation never starts a line, it may hang past the margin instead
        if font.getlength(line + char) > width and line and char not in _NO_LINE_START:
            lines.append(line)
            line = char
        else:
            line += char
    if line:
        lines.append(line)
    return lines


def _paragraph(
    draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, font, width: int, *, fill=INK, leading=1.55
) -> int:
    """Draw wrapped ``text``; return the y just below it."""
    x, y = xy
    step = int(font.size * leading)
    for line in _wrap(text, font, width):
        draw.text((x, y), line, font=font, fill=fill)
        y += step
    return y


def _spaced(draw: ImageDraw.ImageDraw, center_x: int, y: int, text: str, font, *, gap: int, fill=INK) -> None:
    widths = [font.getlength(c) for c in text]
    total = sum(widths) + gap * (len(text) - 1)
    x = center_x - total / 2
    for char, w in zip(text, widths, strict=True):
        draw.text((x, y), char, font=font, fill=fill)
        x += w + gap


def _watermark(image: Image.Image, *, rng: random.Random, rows: int) -> Image.Image:
    """Large diagonal 样本 SPECIMEN text plus a stamped box: impossible to mistake for a real document."""
    w, h = image.size
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    font = _font(max(w // 9, 40), bold=True)
    text = "样本 SPECIMEN"
    left, top, right, bottom = font.getbbox(text)
    tile = Image.new("RGBA", (right - left + 20, bottom - top + 20), (0, 0, 0, 0))
    ImageDraw.Draw(tile).text((10 - left, 10 - top), text, font=font, fill=(*RED, 95))
    tile = tile.rotate(28, expand=True, resample=Image.Resampling.BICUBIC)
    for r in range(rows):
        cy = int(h * (r + 0.5) / rows)
        overlay.alpha_composite(tile, (max((w - tile.width) // 2, 0), max(cy - tile.height // 2, 0)))

    # the stamped box, top right, slightly askew as a rubber stamp would be
    big = _font(max(w // 14, 34), bold=True)
    small = _font(max(w // 34, 16), bold=True)
    bw, bh = int(big.getlength("样 本") + 60), int(big.size * 1.35 + small.size * 1.6 + 30)
    stamp = Image.new("RGBA", (bw, bh), (0, 0, 0, 0))
    sd = ImageDraw.Draw(stamp)
    sd.rectangle((2, 2, bw - 3, bh - 3), outline=(*RED, 215), width=6)
    sd.rectangle((12, 12, bw - 13, bh - 13), outline=(*RED, 215), width=2)
    sd.text((bw / 2, 18), "样 本", font=big, fill=(*RED, 215), anchor="mt")
    sd.text((bw / 2, bh - 20), "SPECIMEN", font=small, fill=(*RED, 215), anchor="mb")
    stamp = stamp.rotate(rng.uniform(-14, -6), expand=True, resample=Image.Resampling.BICUBIC)
    overlay.alpha_composite(stamp, (w - stamp.width - int(w * 0.04), int(h * 0.03)))
    return Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")


def _scan(image: Image.Image, *, rng: random.Random, bed=(70, 72, 76)) -> Image.Image:
    """A hint of a phone scan: a slight tilt over a dark background and a soft blur."""
    tilted = image.rotate(rng.uniform(-0.8, 0.8), resample=Image.Resampling.BILINEAR, fillcolor=bed)
    # the blur is also what keeps a text-dense A4 page under ~250 KB at JPEG quality 80
    return tilted.filter(ImageFilter.GaussianBlur(0.9))


def _card_base(rng: random.Random, *, tint: tuple[int, int, int]) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", CARD, (70, 72, 76))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((22, 18, CARD[0] - 22, CARD[1] - 18), radius=36, fill=tint)
    # faint guilloche lines, the security print every card has
    for k in range(9):
        phase = rng.uniform(0, math.tau)
        amp = 18 + 4 * k
        y0 = 60 + 62 * k
        pts = [(x, y0 + amp * math.sin(x / 70 + phase)) for x in range(40, CARD[0] - 40, 8)]
        draw.line(pts, fill=tuple(max(c - 14, 0) for c in tint), width=2)
    return image, draw


def _fake_person(rng: random.Random) -> dict[str, Any]:
    branch = rng.choice(_BRANCHES)
    male = rng.random() < 0.5
    born = _birth_date(rng, on=dt.date(2026, 1, 1), min_age=20, max_age=65)
    return {
        "name": _person_name(rng),
        "male": male,
        "born": born,
        "id_no": _resident_id(rng, region=branch[0], born=born, male=male),
        "address": _address(rng, branch),
        "branch": branch,
    }


def _id_front(rng: random.Random) -> Image.Image:
    person = _fake_person(rng)
    image, draw = _card_base(rng, tint=(232, 238, 244))
    label, value, small = _font(28), _font(36), _font(32)
    draw.text((80, 70), "姓  名", font=label, fill=LABEL)
    draw.text((190, 64), person["name"], font=value, fill=INK)
    draw.text((80, 150), "性  别", font=label, fill=LABEL)
    draw.text((190, 144), "男" if person["male"] else "女", font=value, fill=INK)
    draw.text((300, 150), "民  族", font=label, fill=LABEL)
    draw.text((410, 144), "汉", font=value, fill=INK)
    born = person["born"]
    draw.text((80, 230), "出  生", font=label, fill=LABEL)
    draw.text((190, 224), f"{born.year}  年  {born.month}  月  {born.day}  日", font=value, fill=INK)
    draw.text((80, 310), "住  址", font=label, fill=LABEL)
    _paragraph(draw, (190, 306), person["address"], small, 440, leading=1.35)
    draw.text((80, 500), "公民身份号码", font=label, fill=LABEL)
    draw.text((290, 490), person["id_no"], font=_font(44, bold=True), fill=INK)
    # photo placeholder: a plain silhouette, never a face
    draw.rectangle((680, 80, 920, 390), fill=(214, 220, 228))
    draw.ellipse((745, 130, 855, 250), fill=(160, 168, 180))
    draw.chord((700, 250, 900, 450), 180, 360, fill=(160, 168, 180))
    draw.text((800, 360), "照片 PHOTO", font=_font(22), fill=(110, 116, 128), anchor="mm")
    return _watermark(_scan(image, rng=rng), rng=rng, rows=1)


def _id_back(rng: random.Random) -> Image.Image:
    image, draw = _card_base(rng, tint=(236, 240, 236))
    # a generic star badge stands in for the emblem
    draw.ellipse((80, 60, 240, 220), outline=RED, width=6)
    _star(draw, (160, 140), 58, fill=RED)
    _spaced(draw, 590, 90, "中华人民共和国", _font(48, bold=True), gap=14)
    _spaced(draw, 590, 190, "居民身份证", _font(84, bold=True), gap=22)
    issued = dt.date(2016, 1, 1) + dt.timedelta(days=rng.randrange(3000))
    label, value = _font(28), _font(32)
    draw.text((180, 420), "签发机关", font=label, fill=LABEL)
    draw.text((330, 416), f"示范市公安局样本{rng.choice('东南西北')}分局", font=value, fill=INK)
    draw.text((180, 490), "有效期限", font=label, fill=LABEL)
    until = _plus_years(issued, 20)
    draw.text((330, 486), f"{issued:%Y.%m.%d}-{until:%Y.%m.%d}", font=value, fill=INK)
    return _watermark(_scan(image, rng=rng), rng=rng, rows=1)


def _star(draw: ImageDraw.ImageDraw, center: tuple[int, int], radius: int, *, fill) -> None:
    cx, cy = center
    points = []
    for k in range(10):
        r = radius if k % 2 == 0 else radius * 0.382
        angle = -math.pi / 2 + k * math.pi / 5
        points.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
    draw.polygon(points, fill=fill)


def _table(
    draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], rows: Sequence[Sequence[str]], *, widths
) -> None:
    """A ruled form: rows of alternating label/value cells; ``widths`` are column fractions."""
    x0, y0, x1, y1 = box
    height = (y1 - y0) / len(rows)
    label, value = _font(24), _font(28)
    draw.rectangle(box, outline=(90, 90, 90), width=3)
    for r, cells in enumerate(rows):
        top = y0 + r * height
        if r:
            draw.line((x0, top, x1, top), fill=(120, 120, 120), width=1)
        x = x0
        for c, text in enumerate(cells):
            w = (x1 - x0) * (widths[c] if c < len(widths) else widths[-1])
            if c == len(cells) - 1:
                w = x1 - x
            if c:
                draw.line((x, top, x, top + height), fill=(120, 120, 120), width=1)
            font = label if c % 2 == 0 else value
            draw.text(
                (x + 10, top + height / 2), text, font=font, fill=LABEL if c % 2 == 0 else INK, anchor="lm"
            )
            x += w


def _vehicle_license(rng: random.Random) -> Image.Image:
    person = _fake_person(rng)
    image, draw = _card_base(rng, tint=(240, 236, 222))
    _spaced(draw, CARD[0] // 2, 42, "中华人民共和国机动车行驶证", _font(40, bold=True), gap=6)
    brand, _seats = rng.choice(_BRANDS)
    registered = dt.date(2019, 1, 1) + dt.timedelta(days=rng.randrange(2500))
    plate = _plate(rng, prefix=person["branch"][4], electric="EV" in brand)
    vin = _vin(rng, model_year=min(max(registered.year, 2019), 2026))
    rows = [
        ("号牌号码", plate, "车辆类型", "小型轿车"),
        ("所有人", person["name"]),
        ("住址", person["address"][:24]),
        ("使用性质", "非营运", "品牌型号", brand[:10]),
        ("车辆识别代号", vin),
        ("发动机号码", "".join(rng.choice("0123456789ABCDEFGHJK") for _ in range(9))),
        ("注册日期", f"{registered:%Y-%m-%d}", "发证日期", f"{registered:%Y-%m-%d}"),
    ]
    _table(draw, (60, 100, CARD[0] - 60, 540), rows, widths=(0.2, 0.3, 0.18, 0.32))
    draw.ellipse((800, 440, 930, 570), outline=RED, width=4)
    _star(draw, (865, 505), 26, fill=RED)
    draw.text((865, 552), "样本专用", font=_font(16), fill=RED, anchor="mm")
    return _watermark(_scan(image, rng=rng), rng=rng, rows=1)


def _driving_license(rng: random.Random) -> Image.Image:
    person = _fake_person(rng)
    image, draw = _card_base(rng, tint=(236, 240, 246))
    _spaced(draw, CARD[0] // 2, 42, "中华人民共和国机动车驾驶证", _font(40, bold=True), gap=6)
    first = person["born"].replace(day=1) + dt.timedelta(days=365 * 20)
    rows = [
        ("证号", person["id_no"]),
        ("姓名", person["name"], "性别", "男" if person["male"] else "女"),
        ("住址", person["address"][:20]),
        ("出生日期", f"{person['born']:%Y-%m-%d}", "国籍", "中国"),
        ("初次领证日期", f"{first:%Y-%m-%d}", "准驾车型", "C1"),
        ("有效期限", f"{first:%Y-%m-%d} 至 长期"),
    ]
    _table(draw, (60, 100, CARD[0] - 60, 540), rows, widths=(0.22, 0.34, 0.16, 0.28))
    return _watermark(_scan(image, rng=rng), rng=rng, rows=1)


def _business_license(rng: random.Random) -> Image.Image:
    size = (1240, 877)
    image = Image.new("RGB", size, (250, 248, 242))
    draw = ImageDraw.Draw(image)
    draw.rectangle((24, 24, size[0] - 24, size[1] - 24), outline=(180, 140, 60), width=10)
    _spaced(draw, size[0] // 2, 60, "营业执照", _font(80, serif=True, bold=True), gap=40)
    org = _organization(rng, rng.choice(_BRANCHES))
    rows = [
        ("统一社会信用代码", org["id_no"]),
        ("名称", org["name"]),
        ("类型", "有限责任公司（自然人投资或控股）"),
        ("法定代表人", _person_name(rng)),
        ("注册资本", f"{rng.randrange(50, 5000)}万元人民币"),
        ("成立日期", f"{dt.date(2005, 1, 1) + dt.timedelta(days=rng.randrange(7000)):%Y年%m月%d日}"),
        ("住所", org["address"][:28]),
        ("经营范围", "示范性经营项目（样本数据，仅供测试）"),
    ]
    _table(draw, (90, 200, size[0] - 90, 700), rows, widths=(0.24, 0.76))
    draw.ellipse((900, 690, 1100, 850), outline=RED, width=5)
    _star(draw, (1000, 760), 34, fill=RED)
    draw.text((1000, 820), "登记机关（样本）", font=_font(18), fill=RED, anchor="mm")
    return _watermark(_scan(image, rng=rng, bed=(250, 248, 242)), rng=rng, rows=1)


_EXCLUSIONS = {
    "AUTO-COMM": (
        "事故发生后，被保险人或驾驶人故意破坏、伪造现场，毁灭证据的；",
        "驾驶人饮酒、吸食或注射毒品、服用国家管制的精神药品或者麻醉药品的；",
        "驾驶人无驾驶证、驾驶证被依法扣留或吊销，或驾驶与驾驶证载明的准驾车型不相符合的机动车的；",
        "被保险机动车被转让、改装、加装或改变使用性质，未及时通知保险人且危险程度显著增加的；",
        "战争、军事冲突、恐怖活动、暴乱、污染（含放射性污染）、核反应、核辐射造成的损失。",
    ),
    "HOME-PROP": (
        "被保险人及其家庭成员、寄居人、雇佣人员的违法、犯罪或故意行为造成的损失；",
        "保险标的本身缺陷、保管不善导致的损毁，以及变质、霉烂、受潮、虫咬、自然磨损；",
        "存放于露天或简易建筑物内部的保险标的由于雨淋造成的损失；",
        "金银、珠宝、首饰、古玩、货币、有价证券、票证、文件、账册、图表、技术资料的损失；",
        "战争、敌对行为、军事行动、武装冲突、罢工、骚乱、暴动造成的损失。",
    ),
    "PA-ACC": (
        "投保人对被保险人的故意杀害、故意伤害；被保险人自致伤害或自杀（自杀时为无民事行为能力人的除外）；",
        "被保险人故意犯罪或者抗拒依法采取的刑事强制措施；",
        "被保险人醉酒，主动吸食或注射毒品；酒后驾驶、无合法有效驾驶证驾驶；",
        "被保险人从事潜水、跳伞、攀岩、蹦极、驾驶滑翔机、探险、武术比赛、摔跤比赛、特技表演等高风险运动；",
        "被保险人妊娠、流产、分娩、疾病、药物过敏、中暑、猝死。",
    ),
}
_CHINESE_ORDINALS = "一二三四五六七八九十"
_DECLARATION = (
    "保险人已通过上述书面形式向本人详细介绍并提供了投保险种所适用的条款，并对其中免除保险人责任的条款"
    "（包括但不限于责任免除、投保人被保险人义务、赔偿处理、附则等），以及本保险合同中付费约定和特别约定的"
    "内容向本人做了明确说明，本人已充分理解并接受上述内容，同意以此作为订立保险合同的依据；自愿投保上述险种。"
)


def _page_base(
    rng: random.Random, *, title: str, subtitle: str
) -> tuple[Image.Image, ImageDraw.ImageDraw, int]:
    image = Image.new("RGB", A4, (250, 249, 245))
    draw = ImageDraw.Draw(image)
    draw.text((110, 90), COMPANY, font=_font(30), fill=(90, 90, 90))
    draw.line((110, 140, A4[0] - 110, 140), fill=(90, 90, 90), width=2)
    _spaced(draw, A4[0] // 2, 185, title, _font(64, serif=True, bold=True), gap=10)
    draw.text((A4[0] // 2, 290), subtitle, font=_font(34, serif=True), fill=INK, anchor="mm")
    return image, draw, 350


def _signature(draw_on: Image.Image, xy: tuple[int, int], name: str, *, rng: random.Random) -> None:
    """A slanted ink name with a flourish: reads as signed by hand without any real handwriting."""
    font = _font(64, serif=True)
    w = int(font.getlength(name)) + 80
    mask = Image.new("L", (w, 110), 0)
    ImageDraw.Draw(mask).text((20, 10), name, font=font, fill=255)
    shear = rng.uniform(0.25, 0.4)
    mask = mask.transform(mask.size, Image.Transform.AFFINE, (1, shear, -shear * 50, 0, 1, 0))
    ink = ImageDraw.Draw(mask)
    pts = [
        (10 + t * (w - 20) / 40, 95 - 10 * math.sin(t / 40 * math.pi * rng.uniform(1.5, 2.5)))
        for t in range(41)
    ]
    ink.line(pts, fill=255, width=3)
    draw_on.paste(BLUE_INK, (xy[0], xy[1], xy[0] + w, xy[1] + 110), mask)


def _handwritten_date(draw: ImageDraw.ImageDraw, xy: tuple[int, int], day: dt.date) -> None:
    draw.text(xy, f"{day.year}年{day.month}月{day.day}日", font=_font(40, serif=True), fill=BLUE_INK)


def _exemption_notice(rng: random.Random, product: str) -> Image.Image:
    name = PRODUCTS[product]["name"]
    image, draw, y = _page_base(rng, title="免责事项说明书", subtitle=f"（{name}）")
    body = _font(30)
    width = A4[0] - 220
    y = _paragraph(
        draw,
        (110, y),
        "尊敬的投保人：为维护您的合法权益，请您仔细阅读所投保险种条款，尤其是以下免除保险人责任的条款"
        "（加粗部分）。保险人依法就下列事项向您作出提示和明确说明：",
        body,
        width,
    )
    y += 16
    bold = _font(30, bold=True)
    for k, item in enumerate(_EXCLUSIONS[product]):
        y = _paragraph(draw, (110, y), f"{_CHINESE_ORDINALS[k]}、{item}", bold, width) + 8
    y += 30
    draw.rectangle((100, y, A4[0] - 100, y + 520), outline=(60, 60, 60), width=3)
    draw.text((130, y + 24), "投保人声明", font=_font(36, bold=True), fill=INK)
    end = _paragraph(draw, (130, y + 90), _DECLARATION, _font(28), A4[0] - 260)
    person = _fake_person(rng)
    draw.text((130, end + 40), "投保人签名（签章）：", font=_font(32), fill=INK)
    _signature(image, (460, end + 10), person["name"], rng=rng)
    signed = dt.date(2026, 1, 5) + dt.timedelta(days=rng.randrange(330))
    draw.text((130, end + 150), "签署日期：", font=_font(32), fill=INK)
    _handwritten_date(draw, (300, end + 140), signed)
    _footer(draw)
    return _watermark(_scan(image, rng=rng), rng=rng, rows=3)


def _applicant_declaration(rng: random.Random, product: str) -> Image.Image:
    name = PRODUCTS[product]["name"]
    image, draw, y = _page_base(rng, title="投保人声明", subtitle=f"（{name}投保单附页）")
    body = _font(30)
    width = A4[0] - 220
    items = (
        "本人已如实告知被保险人的健康状况、职业及保险人询问的其他事项，如有不实告知，保险人有权依法解除合同。",
        "本人已收到并阅读所投保险种的保险条款，保险人已对免除保险人责任的条款作出明确说明。",
        "本人同意保险人在核保、理赔、客户服务范围内使用本人及被保险人提供的信息。",
        "被保险人同意投保人为其投保本保险，并认可保险金额。",
    )
    for item in items:
        draw.rectangle((110, y + 8, 138, y + 36), outline=INK, width=3)
        draw.line((114, y + 22, 123, y + 32, 136, y + 6), fill=BLUE_INK, width=4)
        y = _paragraph(draw, (160, y), item, body, width - 50) + 18
    y += 20
    y = _paragraph(draw, (110, y), _DECLARATION, _font(28), width) + 60
    applicant = _fake_person(rng)
    insured = _fake_person(rng)
    draw.text((110, y + 30), "投保人签名：", font=_font(32), fill=INK)
    _signature(image, (320, y), applicant["name"], rng=rng)
    draw.text((110, y + 170), "被保险人签名：", font=_font(32), fill=INK)
    _signature(image, (350, y + 140), insured["name"], rng=rng)
    draw.text((110, y + 300), "日期：", font=_font(32), fill=INK)
    _handwritten_date(draw, (220, y + 290), dt.date(2026, 1, 5) + dt.timedelta(days=rng.randrange(330)))
    _footer(draw)
    return _watermark(_scan(image, rng=rng), rng=rng, rows=3)


def _other(rng: random.Random) -> Image.Image:
    image, draw, y = _page_base(rng, title="其他材料", subtitle="（补充资料）")
    _paragraph(draw, (110, y), "本页为合成的补充材料样本，不含任何真实个人信息。" * 3, _font(30), A4[0] - 220)
    _footer(draw)
    return _watermark(_scan(image, rng=rng), rng=rng, rows=3)


def _footer(draw: ImageDraw.ImageDraw) -> None:
    draw.text(
        (A4[0] // 2, A4[1] - 80),
        "样本 SPECIMEN · 合成数据，仅供测试 · synthetic data for testing only · 第 1 页 共 1 页",
        font=_font(22),
        fill=(110, 110, 110),
        anchor="mm",
    )


def draw_image(kind: str, *, product: str = "AUTO-COMM", variant: int = 0, seed: int = 1) -> Image.Image:
    """Draw one synthetic scan of image ``kind``; same arguments, same pixels."""
    rng = random.Random(f"issuance-synth-image:{seed}:{kind}:{product}:{variant}")
    if kind == "id_front":
        return _id_front(rng)
    if kind == "id_back":
        return _id_back(rng)
    if kind == "vehicle_license":
        return _vehicle_license(rng)
    if kind == "driving_license":
        return _driving_license(rng)
    if kind == "business_license":
        return _business_license(rng)
    if kind == "exemption_notice":
        return _exemption_notice(rng, product)
    if kind == "applicant_declaration":
        return _applicant_declaration(rng, product)
    if kind == "other":
        return _other(rng)
    raise ValueError(f"unknown image kind {kind!r}")


# ---------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.synth", description="Write a synthetic issuance batch (样本 SPECIMEN data)."
    )
    parser.add_argument("-n", type=int, default=500, help="number of policies (default 500)")
    parser.add_argument(
        "-o", "--out", type=Path, required=True, help="folder to write batch.jsonl and images/ into"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--endorsements", type=int, default=0, help="endorsements appended after the policies"
    )
    parser.add_argument("--images-per-record", type=int, default=3)
    parser.add_argument("--image-format", choices=("jpeg", "png"), default="jpeg")
    args = parser.parse_args(argv)
    try:
        batch = make_batch(
            args.out,
            args.n,
            seed=args.seed,
            images_per_record=args.images_per_record,
            endorsements=args.endorsements,
            image_format=args.image_format,
        )
    except ValueError as e:
        parser.error(str(e))
    print(batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
