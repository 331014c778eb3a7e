"""How amounts, dates and insurance periods are printed on a Chinese policy.

Amounts are printed twice, in figures and in capitals (大写), the capitals following the rules of the
People's Bank of China 《支付结算办法》 附一《正确填写票据和结算凭证的基本规定》, so the two can be
checked against each other and neither can be altered unnoticed. Dates and times are printed in China time
(UTC+08:00) whatever offset they arrive with. The insurance period's end is exclusive, and is printed the
way policies say it: an end at midnight is the previous day's 二十四时.

Money is ``decimal.Decimal`` and is never rounded here: an amount with more than two decimal places is a
``ValueError``, because printing it would silently change it. Naive datetimes are a ``ValueError`` too.

Standard library only.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

# China has used a fixed UTC+08:00 since 1991; a fixed offset needs no tz database on the host.
CHINA_TIME = timezone(timedelta(hours=8), "UTC+08:00")

_CENT = Decimal("0.01")
# Largest amount the capitals support: 9999亿 and change.
_CAPITALS_LIMIT = Decimal("1000000000000")

_CAPITAL_DIGITS = "零壹贰叁肆伍陆柒捌玖"
_SMALL_UNITS = ("", "拾", "佰", "仟")
_GROUP_UNITS = ("", "万", "亿")


def _checked_amount(value: Decimal) -> Decimal:
    """Return ``value`` quantized to cents, refusing anything that would change by it."""
    if not isinstance(value, Decimal):
        raise TypeError(f"amounts must be Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise ValueError("amount must be a finite number")
    cents = value.quantize(_CENT)
    if cents != value:
        raise ValueError("amount has more than two decimal places")
    # A negative zero would print as "-0.00".
    return abs(cents) if cents == 0 else cents


def amount_figures(value: Decimal) -> str:
    """Return ``value`` in figures with thousands separators and exactly two decimals.

    ``Decimal("1000000")`` -> ``"1,000,000.00"``, ``Decimal("-12.5")`` -> ``"-12.50"``. Raises
    ``ValueError`` for more than two decimal places (never rounds) and ``TypeError`` for non-Decimals.
    """
    return f"{_checked_amount(value):,.2f}"


def amount_capitals(value: Decimal) -> str:
    """Return ``value`` in Chinese capital numerals, prefixed 人民币, per the PBoC rules.

    Promised forms: ``16.00`` -> 人民币壹拾陆元整 (tens always carry 壹); 整 only when there are no
    角 and 分; one 零 for any run of zeros inside the number; a zero 元 digit before a non-zero 角 is
    written 零 (1680.32 -> ...捌拾元零叁角贰分), as is a zero 角 before a non-zero 分 (325.04 ->
    ...伍元零肆分); a zero at the 万 or 亿 position just before a non-zero digit is not (107000.53 ->
    壹拾万柒仟元零伍角叁分); an amount under one yuan starts at 角 or 分 (0.05 -> 人民币伍分);
    0 -> 人民币零元整.

    Raises ``ValueError`` for negative amounts, more than two decimal places, or 1 万亿 and above;
    ``TypeError`` for non-Decimals.
    """
    amount = _checked_amount(value)
    if amount < 0:
        raise ValueError("capitals are written only for amounts of zero or more")
    if amount >= _CAPITALS_LIMIT:
        raise ValueError("capitals are supported only below 1万亿 (up to 9999亿)")

    cents = int(amount * 100)
    yuan, jiao, fen = cents // 100, cents // 10 % 10, cents % 10

    if cents == 0:
        return "人民币零元整"

    parts = ["人民币"]
    if yuan:
        parts.append(_integer_capitals(yuan))
        parts.append("元")
    if jiao == 0 and fen == 0:
        parts.append("整")
        return "".join(parts)

    if jiao:
        # 元位 zero with 角 present: 零 marks that the 元 digit was zero (PBoC example 1680.32).
        if yuan and yuan % 10 == 0:
            parts.append("零")
        parts.append(_CAPITAL_DIGITS[jiao] + "角")
    elif yuan:
        # 角 zero with 分 present: 零 (PBoC example 325.04). Under one yuan the 分 simply stands alone.
        parts.append("零")
    if fen:
        parts.append(_CAPITAL_DIGITS[fen] + "分")
    return "".join(parts)


def _integer_capitals(number: int) -> str:
    """Write a positive integer below 10**12 with 拾佰仟 within groups of four and 万/亿 between them."""
    groups = []
    while number:
        groups.append(number % 10000)
        number //= 10000

    out: list[str] = []
    zero_pending = False
    for group_index in reversed(range(len(groups))):
        group = groups[group_index]
        if group == 0:
            zero_pending = bool(out)
            continue
        for position in (3, 2, 1, 0):
            digit = group // 10**position % 10
            if digit == 0:
                zero_pending = zero_pending or bool(out)
                continue
            if zero_pending:
                out.append("零")
                zero_pending = False
            out.append(_CAPITAL_DIGITS[digit] + _SMALL_UNITS[position])
        out.append(_GROUP_UNITS[group_index])
        # Zeros at the end of a group are absorbed by its 万/亿: 107000 is 壹拾万柒仟, not 壹拾万零柒仟.
        zero_pending = False
    return "".join(out)


def _china_time(dt: datetime) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware (carry an offset such as +08:00)")
    return dt.astimezone(CHINA_TIME)


def chinese_date(d: date | datetime) -> str:
    """Return ``d`` as ``2026年12月1日`` (no leading zeros).

    A datetime is first converted to China time, so ``2026-11-30T16:00Z`` is 2026年12月1日. A naive
    datetime is a ``ValueError``; a plain date is taken as it is.
    """
    if isinstance(d, datetime):
        d = _china_time(d).date()
    return f"{d.year}年{d.month}月{d.day}日"


def _clock(local: datetime) -> str:
    """The time-of-day part: 零时, 15时, 15时30分; seconds only when non-zero, sub-seconds dropped."""
    text = "零时" if local.hour == 0 else f"{local.hour}时"
    if local.minute or local.second:
        text += f"{local.minute}分"
    if local.second:
        text += f"{local.second}秒"
    return text


def chinese_datetime(dt: datetime) -> str:
    """Return ``dt`` in China time as ``2026年12月1日零时``, ``…15时`` or ``…15时30分``.

    Minutes appear only when non-zero (seconds likewise, when non-zero; microseconds are not printed).
    Raises ``ValueError`` for a naive datetime.
    """
    local = _china_time(dt)
    return chinese_date(local.date()) + _clock(local)


def period_wording(start: datetime, end: datetime) -> str:
    """Return the insurance period as printed: ``自2026年12月1日零时起至2027年11月30日二十四时止``.

    Both ends are converted to China time. ``end`` is exclusive, so an end at exactly midnight is printed
    as the previous day's 二十四时 (the contract's ``2027-12-01T00:00:00+08:00`` reads
    2027年11月30日二十四时止); any other end is printed as its own time. Raises ``ValueError`` for naive
    datetimes or when ``end`` is not after ``start``.
    """
    local_start, local_end = _china_time(start), _china_time(end)
    if local_end <= local_start:
        raise ValueError("the period's end must be after its start")
    if local_end.time() == time(0, 0):
        end_text = chinese_date(local_end.date() - timedelta(days=1)) + "二十四时"
    else:
        end_text = chinese_datetime(local_end)
    return f"自{chinese_datetime(local_start)}起至{end_text}止"


__all__ = [
    "CHINA_TIME",
    "amount_capitals",
    "amount_figures",
    "chinese_date",
    "chinese_datetime",
    "period_wording",
]


# The ID types of the record contract as a policy prints them, and as the desk shows them
ID_TYPE_LABELS = {
    "resident_id": "居民身份证",
    "passport": "护照",
    "hk_macao_permit": "港澳居民来往内地通行证",
    "taiwan_permit": "台湾居民来往大陆通行证",
    "uscc": "统一社会信用代码",
    "other": "其他证件",
}

# The endorsement types of the record contract (v1.1 ``type``) as a 批单 prints them
ENDORSEMENT_TYPE_LABELS = {
    "change": "一般批改",
    "surrender": "退保",
    "cancel": "注销",
    "add_clauses": "增加附加险",
    "reinstate": "复效",
}
