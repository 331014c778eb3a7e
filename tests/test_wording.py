"""Tests for core.wording.

The capitals are checked two ways: every fixed example, and 20,000 seeded random amounts (biased towards
zeros, where the rules are) parsed back by a strict little parser written here. The parser refuses
malformed text on its own terms and checks where 零 and 整 must and must not appear, so a wrong
rendering fails even when its numeric value happens to come out right.
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from core.wording import (
    amount_capitals,
    amount_figures,
    chinese_date,
    chinese_datetime,
    period_wording,
)

CST = timezone(timedelta(hours=8))

# --- figures --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("1000000", "1,000,000.00"),
        ("-12.5", "-12.50"),
        ("0", "0.00"),
        ("-0", "0.00"),
        ("-0.00", "0.00"),
        ("999.99", "999.99"),
        ("1234.5", "1,234.50"),
        ("12.500", "12.50"),  # trailing zeros are not extra precision
        ("1E+3", "1,000.00"),
        ("999999999999.99", "999,999,999,999.99"),
    ],
)
def test_amount_figures(value: str, text: str) -> None:
    assert amount_figures(Decimal(value)) == text


@pytest.mark.parametrize("value", ["12.345", "0.001", "NaN", "Infinity"])
def test_amount_figures_never_rounds(value: str) -> None:
    with pytest.raises(ValueError):
        amount_figures(Decimal(value))


def test_amount_figures_refuses_float() -> None:
    with pytest.raises(TypeError):
        amount_figures(12.5)  # type: ignore[arg-type]


# --- capitals: fixed examples ---------------------------------------------------------------------------

FIXED_CAPITALS = [
    ("16.00", "人民币壹拾陆元整"),
    ("1680.32", "人民币壹仟陆佰捌拾元零叁角贰分"),
    ("107000.53", "人民币壹拾万柒仟元零伍角叁分"),
    ("325.04", "人民币叁佰贰拾伍元零肆分"),
    ("0.05", "人民币伍分"),
    ("0.50", "人民币伍角"),
    ("0", "人民币零元整"),
    ("10.00", "人民币壹拾元整"),
    # The brief listed 人民币壹拾万零壹拾元伍角 here, which contradicts its own rule "元位 zero with 角
    # present: write 零" (1680.32, 107000.53). The PBoC allows either form; one rule is applied throughout.
    ("100010.50", "人民币壹拾万零壹拾元零伍角"),
    ("1000000.00", "人民币壹佰万元整"),
    ("3456.78", "人民币叁仟肆佰伍拾陆元柒角捌分"),
    ("1409.50", "人民币壹仟肆佰零玖元伍角"),
    ("6007.14", "人民币陆仟零柒元壹角肆分"),
    ("1004.05", "人民币壹仟零肆元零伍分"),
    ("100000000", "人民币壹亿元整"),
    ("100010000", "人民币壹亿零壹万元整"),
    ("100000001", "人民币壹亿零壹元整"),
    ("20000.00", "人民币贰万元整"),
    ("110.00", "人民币壹佰壹拾元整"),
    # Further cases around the 万 and 亿 boundaries.
    ("105000", "人民币壹拾万伍仟元整"),
    ("100500", "人民币壹拾万零伍佰元整"),
    ("1070000", "人民币壹佰零柒万元整"),
    ("100007000", "人民币壹亿零柒仟元整"),
    ("170000000", "人民币壹亿柒仟万元整"),
    ("0.55", "人民币伍角伍分"),
    ("10.05", "人民币壹拾元零伍分"),
    ("1.00", "人民币壹元整"),
    ("999999999999.99", "人民币玖仟玖佰玖拾玖亿玖仟玖佰玖拾玖万玖仟玖佰玖拾玖元玖角玖分"),
]


@pytest.mark.parametrize(("value", "text"), FIXED_CAPITALS)
def test_amount_capitals_fixed_examples(value: str, text: str) -> None:
    assert amount_capitals(Decimal(value)) == text
    assert parse_capitals(text) == Decimal(value)


@pytest.mark.parametrize("value", ["-0.01", "-16", "1.001", "1000000000000", "NaN", "-Infinity"])
def test_amount_capitals_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        amount_capitals(Decimal(value))


def test_amount_capitals_refuses_float() -> None:
    with pytest.raises(TypeError):
        amount_capitals(16.0)  # type: ignore[arg-type]


def test_amount_capitals_negative_zero_is_zero() -> None:
    assert amount_capitals(Decimal("-0.00")) == "人民币零元整"


# --- capitals: an independent strict parser -------------------------------------------------------------

DIGIT_VALUES = {ch: value for value, ch in enumerate("零壹贰叁肆伍陆柒捌玖")}
PLACE_OF_UNIT = {"拾": 1, "佰": 2, "仟": 3}
GROUP_OF_UNIT = {"万": 1, "亿": 2}


class Malformed(AssertionError):
    pass


def parse_capitals(text: str) -> Decimal:
    """Parse 人民币… back into a Decimal, refusing anything the rules do not allow.

    Checked besides the value: the 人民币 prefix; 整 exactly when there are no 角/分; every digit 1-9
    followed by its unit (so tens are 壹拾, never bare 拾); places strictly descending; one 零 exactly
    where the zero rules want it and nowhere else.
    """
    if not text.startswith("人民币"):
        raise Malformed("missing 人民币")
    body = text.removeprefix("人民币")
    if body == "零元整":
        return Decimal(0)
    whole = body.endswith("整")
    body = body.removesuffix("整")
    if body.count("元") > 1:
        raise Malformed("more than one 元")
    integer_text, _, fraction_text = body.rpartition("元")
    if "元" not in body:
        integer_text, fraction_text = "", body
    if whole and (fraction_text or not body.endswith("元")):
        raise Malformed("整 may only follow 元")
    if not whole and not fraction_text:
        raise Malformed("an amount ending at 元 needs 整")

    yuan = parse_integer(integer_text) if integer_text else 0
    if "元" in body and yuan == 0:
        raise Malformed("元 without an integer part")
    jiao, fen = parse_fraction(fraction_text, yuan=yuan)
    return Decimal(yuan) + Decimal(jiao) / 10 + Decimal(fen) / 100


def parse_integer(text: str) -> int:
    # Each entry: (digit, absolute decimal position, whether a 零 stood right before it).
    digits: list[tuple[int, int, bool]] = []
    section: list[tuple[int, int, bool]] = []
    zero_before = False
    last_group = 3
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "零":
            if zero_before or not (digits or section):
                raise Malformed("零 doubled or leading")
            zero_before = True
            i += 1
        elif ch in DIGIT_VALUES:
            nxt = text[i + 1] if i + 1 < len(text) else ""
            place = PLACE_OF_UNIT.get(nxt, 0)
            if section and place >= section[-1][1]:
                raise Malformed("places not descending within a group")
            section.append((DIGIT_VALUES[ch], place, zero_before))
            zero_before = False
            i += 2 if nxt in PLACE_OF_UNIT else 1
        elif ch in GROUP_OF_UNIT:
            group = GROUP_OF_UNIT[ch]
            if not section or zero_before or group >= last_group:
                raise Malformed("万/亿 misplaced")
            digits.extend((d, p + 4 * group, z) for d, p, z in section)
            section, last_group = [], group
            i += 1
        else:
            raise Malformed(f"unexpected {ch!r}")
    if zero_before:
        raise Malformed("trailing 零")
    digits.extend(section)

    for (_, higher, _), (_, lower, zero) in itertools.pairwise(digits):
        if lower >= higher:
            raise Malformed("positions not descending")
        # A gap of zeros needs one 零, except when the zeros all sit at the bottom of the higher group
        # and the lower digit opens the next group down: 107000 is 壹拾万柒仟.
        gap = higher - lower > 1
        absorbed = lower % 4 == 3 and higher // 4 == lower // 4 + 1
        if zero != (gap and not absorbed):
            raise Malformed("零 missing or superfluous")
    if digits and digits[0][2]:
        raise Malformed("leading 零")
    if digits and digits[-1][1] != 0 and text[-1] not in "拾佰仟万亿":
        raise Malformed("unit missing")
    return sum(d * 10**p for d, p, _ in digits)


def nonzero_digit(ch: str) -> int:
    value = DIGIT_VALUES.get(ch, 0)
    if value == 0:
        raise Malformed(f"expected a digit 壹-玖, got {ch!r}")
    return value


def parse_fraction(text: str, *, yuan: int) -> tuple[int, int]:
    zero = text.startswith("零")
    rest = text.removeprefix("零")
    jiao = fen = 0
    if len(rest) >= 2 and rest[1] == "角":
        jiao = nonzero_digit(rest[0])
        rest = rest[2:]
    if len(rest) == 2 and rest[1] == "分":
        fen = nonzero_digit(rest[0])
        rest = ""
    if rest or (text and jiao == fen == 0):
        raise Malformed(f"bad fraction {text!r}")
    # 零 after 元: when the 元 digit is 0 and 角 follows, or when 角 is 0 and 分 follows; never under 1 yuan.
    expected_zero = yuan > 0 and ((jiao > 0 and yuan % 10 == 0) or (jiao == 0 and fen > 0))
    if zero != expected_zero:
        raise Malformed("零 after 元 missing or superfluous")
    return jiao, fen


@pytest.mark.parametrize(
    "bad",
    [
        "人民币壹仟零零壹元整",
        "人民币壹仟壹元整",  # missing 零
        "人民币拾陆元整",  # tens without 壹
        "人民币壹拾万零柒仟元整",  # superfluous 零 at the 万 position
        "人民币壹亿柒仟元整",  # 零 needed across an empty 万 group
        "人民币壹仟陆佰捌拾元叁角贰分",  # 元位 zero with 角: 零 required (the rule applied here)
        "人民币叁佰贰拾伍元肆分",
        "人民币零伍分",
        "人民币壹元零角伍分",
        "人民币壹元伍角零分",
        "人民币壹拾元伍角整",
        "人民币壹拾元",
        "壹拾元整",
    ],
)
def test_parser_rejects_malformed_capitals(bad: str) -> None:
    """The parser is strict enough that the property test below could fail."""
    with pytest.raises(Malformed):
        parse_capitals(bad)


def random_amount(rng: random.Random) -> Decimal:
    width = rng.choice([0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 12, 12])
    zero_share = rng.choice([0.2, 0.5, 0.8])
    integer = "".join("0" if rng.random() < zero_share else rng.choice("123456789") for _ in range(width))
    jiao = "0" if rng.random() < 0.5 else rng.choice("123456789")
    fen = "0" if rng.random() < 0.5 else rng.choice("123456789")
    value = Decimal(f"{integer or '0'}.{jiao}{fen}")
    # Vary the exponent the Decimal arrives with ("12.50", "12.5", "1.2E+1"): the value is what counts.
    return value.normalize() if rng.random() < 0.3 else value


def test_amount_capitals_parse_back_property() -> None:
    rng = random.Random(20261201)
    for _ in range(20_000):
        value = random_amount(rng)
        text = amount_capitals(value)
        try:
            parsed = parse_capitals(text)
        except Malformed as e:
            raise AssertionError(f"{value} -> {text}: {e}") from e
        assert parsed == value, f"{value} -> {text} -> {parsed}"


# --- dates and times ------------------------------------------------------------------------------------


def test_chinese_date() -> None:
    assert chinese_date(date(2026, 12, 1)) == "2026年12月1日"
    assert chinese_date(date(2027, 1, 9)) == "2027年1月9日"
    assert chinese_date(datetime(2026, 12, 1, 23, 59, tzinfo=CST)) == "2026年12月1日"


def test_chinese_date_converts_to_china_time() -> None:
    assert chinese_date(datetime(2026, 11, 30, 16, 0, tzinfo=UTC)) == "2026年12月1日"
    assert chinese_date(datetime(2026, 11, 30, 15, 59, tzinfo=UTC)) == "2026年11月30日"
    new_york = timezone(timedelta(hours=-5))
    assert chinese_date(datetime(2026, 11, 30, 11, 0, tzinfo=new_york)) == "2026年12月1日"


def test_chinese_date_refuses_naive_datetime() -> None:
    with pytest.raises(ValueError):
        chinese_date(datetime(2026, 12, 1))


@pytest.mark.parametrize(
    ("dt", "text"),
    [
        (datetime(2026, 12, 1, 0, 0, tzinfo=CST), "2026年12月1日零时"),
        (datetime(2026, 12, 1, 15, 0, tzinfo=CST), "2026年12月1日15时"),
        (datetime(2026, 12, 1, 15, 30, tzinfo=CST), "2026年12月1日15时30分"),
        (datetime(2026, 12, 1, 0, 5, tzinfo=CST), "2026年12月1日零时5分"),
        (datetime(2026, 12, 1, 9, 0, 0, 500, tzinfo=CST), "2026年12月1日9时"),
        (datetime(2026, 12, 1, 9, 0, 7, tzinfo=CST), "2026年12月1日9时0分7秒"),
        (datetime(2026, 11, 30, 16, 0, tzinfo=UTC), "2026年12月1日零时"),
        (datetime(2026, 12, 1, 7, 30, tzinfo=UTC), "2026年12月1日15时30分"),
    ],
)
def test_chinese_datetime(dt: datetime, text: str) -> None:
    assert chinese_datetime(dt) == text


def test_chinese_datetime_refuses_naive() -> None:
    with pytest.raises(ValueError):
        chinese_datetime(datetime(2026, 12, 1, 15, 0))


@pytest.mark.parametrize(
    ("start", "end", "text"),
    [
        (
            datetime(2026, 12, 1, tzinfo=CST),
            datetime(2027, 12, 1, tzinfo=CST),
            "自2026年12月1日零时起至2027年11月30日二十四时止",
        ),
        (
            datetime(2026, 12, 1, 15, tzinfo=CST),
            datetime(2027, 12, 1, 15, tzinfo=CST),
            "自2026年12月1日15时起至2027年12月1日15时止",
        ),
        (
            datetime(2026, 11, 30, 16, tzinfo=UTC),
            datetime(2027, 11, 30, 16, tzinfo=UTC),
            "自2026年12月1日零时起至2027年11月30日二十四时止",
        ),
        (
            datetime(2026, 1, 1, tzinfo=CST),
            datetime(2027, 1, 1, tzinfo=CST),
            "自2026年1月1日零时起至2026年12月31日二十四时止",
        ),
        (
            datetime(2027, 3, 1, tzinfo=CST),
            datetime(2028, 3, 1, tzinfo=CST),
            "自2027年3月1日零时起至2028年2月29日二十四时止",
        ),
        (
            datetime(2026, 12, 1, 15, 30, tzinfo=CST),
            datetime(2026, 12, 2, 0, 30, tzinfo=CST),
            "自2026年12月1日15时30分起至2026年12月2日零时30分止",
        ),
        (  # one day's cover
            datetime(2026, 12, 1, tzinfo=CST),
            datetime(2026, 12, 2, tzinfo=CST),
            "自2026年12月1日零时起至2026年12月1日二十四时止",
        ),
    ],
)
def test_period_wording(start: datetime, end: datetime, text: str) -> None:
    assert period_wording(start, end) == text


def test_period_wording_end_midnight_in_utc_is_not_china_midnight() -> None:
    # 2027-12-01T00:00Z is 08:00 in China: an ordinary time, not 二十四时.
    start = datetime(2026, 12, 1, 8, tzinfo=CST)
    end = datetime(2027, 12, 1, tzinfo=UTC)
    assert period_wording(start, end) == "自2026年12月1日8时起至2027年12月1日8时止"


def test_period_wording_refuses_naive_datetimes() -> None:
    aware = datetime(2026, 12, 1, tzinfo=CST)
    with pytest.raises(ValueError):
        period_wording(datetime(2026, 12, 1), aware + timedelta(days=365))
    with pytest.raises(ValueError):
        period_wording(aware, datetime(2027, 12, 1))


@pytest.mark.parametrize("days", [0, -1])
def test_period_wording_refuses_end_not_after_start(days: int) -> None:
    start = datetime(2026, 12, 1, tzinfo=CST)
    with pytest.raises(ValueError):
        period_wording(start, start + timedelta(days=days))
