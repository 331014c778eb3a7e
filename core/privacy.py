"""Check characters of the identifiers on a policy, and the masked forms they are shown in.

Three identifiers carry a check character defined by a national standard, so a mistyped number can be
refused before anything is printed or sealed:

- 居民身份证号码, GB 11643-1999 (ISO 7064 MOD 11-2), with the holder's birth date embedded;
- 统一社会信用代码 (USCC), GB 32100-2015;
- 车辆识别代号 (VIN), ISO 3779 / GB 16735, check digit in position 9.

The ``*_problem`` functions return ``None`` for a valid identifier, else one short English sentence for a
rejection reason. The sentence never repeats the identifier or any part of it (an ID number embeds the
holder's birth date), so it can go into reports and logs as it is. The ``*_check_char`` functions compute
the check character from the other characters; the synthetic-data generator uses them.

The ``mask_*`` functions and :func:`scrub` produce display forms that keep too little to identify anyone:
masked values have the same length as the original where that is promised, so a reader can still see
which field was masked.

Pure functions, standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from datetime import date, datetime, timedelta, timezone

# --- resident ID: GB 11643-1999 -------------------------------------------------------------------------

_DIGITS = "0123456789"
_RESIDENT_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
# Indexed by the weighted sum mod 11 (ISO 7064 MOD 11-2 as tabulated in GB 11643).
_RESIDENT_ID_CHECK_CHARS = "10X98765432"

# Birth dates are judged against the calendar in China, where the numbers are issued.
_CHINA_TIME = timezone(timedelta(hours=8))


def _all_ascii_digits(text: str) -> bool:
    # str.isdigit() also accepts full-width and other Unicode digits, which are not valid here.
    return all(ch in _DIGITS for ch in text)


def resident_id_check_char(first17: str) -> str:
    """Return the GB 11643 check character ('0'-'9' or 'X') for the first 17 digits of an ID number.

    Raises ``ValueError`` unless ``first17`` is exactly 17 ASCII digits.
    """
    if len(first17) != 17 or not _all_ascii_digits(first17):
        raise ValueError("a resident ID check character needs exactly 17 digits")
    total = sum(int(ch) * weight for ch, weight in zip(first17, _RESIDENT_ID_WEIGHTS, strict=True))
    return _RESIDENT_ID_CHECK_CHARS[total % 11]


def resident_id_problem(id_no: str, *, today: date | None = None) -> str | None:
    """Return why ``id_no`` is not a valid 18-character resident ID number, or ``None`` if it is valid.

    Checked in this order: length, digits, the last character (a digit or an uppercase ``X``; a lowercase
    ``x`` is refused rather than silently fixed, because the number is printed as received), the embedded
    birth date (positions 7-14, a real calendar date, year 1900 or later, not after ``today``, which
    defaults to today's date in China), then the check character. The message never contains the number
    or its birth date.
    """
    if id_no != id_no.strip():
        return "has leading or trailing whitespace"
    if len(id_no) != 18:
        return f"must be 18 characters, got {len(id_no)}"
    if not _all_ascii_digits(id_no[:17]):
        return "the first 17 characters must be digits"
    last = id_no[17]
    if last == "x":
        return "check character must be an uppercase X, not a lowercase x"
    if last not in _RESIDENT_ID_CHECK_CHARS:
        return "last character must be a digit or X"

    birth_problem = _birth_date_problem(id_no[6:14], today=today)
    if birth_problem is not None:
        return birth_problem

    if resident_id_check_char(id_no[:17]) != last:
        return "check digit is wrong"
    return None


def _birth_date_problem(yyyymmdd: str, *, today: date | None) -> str | None:
    try:
        born = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        return "embedded birth date is not a real date"
    if born.year < 1900:
        return "embedded birth date is before 1900"
    if today is None:
        today = datetime.now(_CHINA_TIME).date()
    if born > today:
        return "embedded birth date is in the future"
    return None


# --- USCC: GB 32100-2015 --------------------------------------------------------------------------------

# The code never uses I, O, S, V or Z (they are too easily confused with 1, 0, 5, U and 2).
_USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUES = {ch: value for value, ch in enumerate(_USCC_CHARSET)}
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def uscc_check_char(first17: str) -> str:
    """Return the GB 32100 check character for the first 17 characters of a USCC.

    Raises ``ValueError`` unless ``first17`` is 17 characters from the USCC character set
    (digits and uppercase letters other than I, O, S, V, Z).
    """
    if len(first17) != 17 or any(ch not in _USCC_VALUES for ch in first17):
        raise ValueError("a USCC check character needs exactly 17 characters from the USCC character set")
    total = sum(_USCC_VALUES[ch] * weight for ch, weight in zip(first17, _USCC_WEIGHTS, strict=True))
    # GB 32100: check value = 31 - (sum mod 31), and a result of 31 is written as 0.
    return _USCC_CHARSET[(31 - total % 31) % 31]


def uscc_problem(code: str) -> str | None:
    """Return why ``code`` is not a valid 统一社会信用代码, or ``None`` if it is valid.

    Checks length (18), the character set and the GB 32100 check character. The message never repeats
    the code.
    """
    if code != code.strip():
        return "has leading or trailing whitespace"
    if len(code) != 18:
        return f"must be 18 characters, got {len(code)}"
    if any(ch.islower() for ch in code):
        return "letters must be uppercase"
    if any(ch not in _USCC_VALUES for ch in code):
        return "may contain only digits and uppercase letters other than I, O, S, V and Z"
    if uscc_check_char(code[:17]) != code[17]:
        return "check character is wrong"
    return None


# --- VIN: ISO 3779 / GB 16735 ---------------------------------------------------------------------------

_VIN_LETTER_VALUES = {
    **dict.fromkeys("AJ", 1),
    **dict.fromkeys("BKS", 2),
    **dict.fromkeys("CLT", 3),
    **dict.fromkeys("DMU", 4),
    **dict.fromkeys("ENV", 5),
    **dict.fromkeys("FW", 6),
    **dict.fromkeys("GPX", 7),
    **dict.fromkeys("HY", 8),
    **dict.fromkeys("RZ", 9),
}
_VIN_VALUES = {**{d: int(d) for d in _DIGITS}, **_VIN_LETTER_VALUES}
# Position 9 (the check digit itself) has weight 0.
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def vin_check_char(vin17: str) -> str:
    """Return the check digit ('0'-'9' or 'X') that belongs in position 9 of a 17-character VIN.

    Whatever is in position 9 of ``vin17`` is ignored (its weight is 0), so a VIN under construction can
    carry a placeholder there. Raises ``ValueError`` unless every other character is a digit or an
    uppercase letter other than I, O, Q.
    """
    if len(vin17) != 17:
        raise ValueError("a VIN check digit needs exactly 17 characters")
    others = vin17[:8] + vin17[9:]
    if any(ch not in _VIN_VALUES for ch in others):
        raise ValueError("a VIN may contain only digits and uppercase letters other than I, O and Q")
    total = sum(
        _VIN_VALUES[ch] * weight for ch, weight in zip(vin17, _VIN_WEIGHTS, strict=True) if weight != 0
    )
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


def vin_problem(vin: str) -> str | None:
    """Return why ``vin`` is not a valid 17-character VIN, or ``None`` if it is valid.

    Checks length, the character set (no I, O, Q; uppercase only) and the check digit in position 9.
    """
    if vin != vin.strip():
        return "has leading or trailing whitespace"
    if len(vin) != 17:
        return f"must be 17 characters, got {len(vin)}"
    if any(ch.islower() for ch in vin):
        return "letters must be uppercase"
    if any(ch in "IOQ" for ch in vin):
        return "must not contain the letters I, O or Q"
    if any(ch not in _VIN_VALUES for ch in vin):
        return "may contain only digits and uppercase letters"
    if vin[8] not in _DIGITS and vin[8] != "X":
        return "position 9 must be a digit or X"
    if vin_check_char(vin) != vin[8]:
        return "check digit (position 9) is wrong"
    return None


# --- masking --------------------------------------------------------------------------------------------


def mask_id(id_no: str) -> str:
    """Return ``id_no`` with its middle replaced by ``*``, keeping the same length.

    Kept: 15 or more characters, the first 3 and last 4 (``110***********123X``: region and check
    character, never the birth date); 8-14, the first 2 and last 2; 3-7, the first and last; shorter
    strings become all stars.
    """
    n = len(id_no)
    if n >= 15:
        head, tail = 3, 4
    elif n >= 8:
        head, tail = 2, 2
    elif n >= 3:
        head, tail = 1, 1
    else:
        return "*" * n
    return id_no[:head] + "*" * (n - head - tail) + id_no[n - tail :]


def mask_name(name: str) -> str:
    """Return ``name`` with all but its first (and, from three characters on, its last) character
    replaced by ``*``, keeping the length: ``张*``, ``王*明``, as public verification pages show names.
    Whole characters count, so a CJK Extension B character is one, not two."""
    name = name.strip()
    n = len(name)
    if n <= 1:
        return "*" * n
    if n == 2:
        return name[0] + "*"
    return name[0] + "*" * (n - 2) + name[-1]


def mask_phone(phone: str) -> str:
    """Return ``phone`` with most digits replaced by ``*``, keeping the same length.

    An 11-digit mobile number keeps its first 3 and last 4 digits (``138****5678``); anything else keeps
    only its last 2 characters, and a string of 2 or fewer characters becomes all stars.
    """
    n = len(phone)
    if n == 11 and _all_ascii_digits(phone):
        return phone[:3] + "****" + phone[7:]
    if n <= 2:
        return "*" * n
    return "*" * (n - 2) + phone[-2:]


def mask_address(address: str) -> str:
    """Return the start of ``address`` followed by ``****``.

    A Chinese address is written from the province down, so the first 6 characters (province and city)
    are kept and the street and house number are dropped. An address shorter than 7 characters keeps only
    its first 2. Surrounding whitespace is ignored. The result does not preserve the length: how long the
    dropped part was is itself a clue.
    """
    address = address.strip()
    if not address:
        return ""
    keep = 6 if len(address) >= 7 else 2
    return address[:keep] + "****"


# --- scrubbing free text --------------------------------------------------------------------------------

# Python's \b treats Chinese characters as word characters, so "身份证号110…" would have no boundary.
# Boundaries are therefore spelled out: not glued to an ASCII letter or digit, and not part of a decimal
# number (no "digit." / "digit," right before it, no ".digit" right after it).
_BEFORE = r"(?<![0-9A-Za-z])(?<![0-9][.,])"
_AFTER = r"(?![0-9A-Za-z])(?!\.[0-9])"

_EIGHTEEN = re.compile(_BEFORE + r"[0-9A-Za-z]{18}" + _AFTER)
_RESIDENT_ID_SHAPE = re.compile(r"[0-9]{17}[0-9Xx]")
# A USCC's characters 3-8 are the registering authority's 6-digit administrative division code
# (GB 32100 §4); requiring digits there keeps 18-character reference numbers such as policy numbers from
# being taken for a USCC one time in 31.
_USCC_SHAPE = re.compile(r"[0-9A-HJ-NP-RTUWXY]{2}[0-9]{6}[0-9A-HJ-NP-RTUWXY]{10}")
# A mainland mobile number, optionally after +86 / 0086 / 86, optionally grouped 3-4-4 by spaces or
# hyphens. The prefix stays as written; only the subscriber number is masked.
_MOBILE = re.compile(
    _BEFORE + r"(?:(?:\+|00)?86[ -]?)?(?P<number>1[3-9][0-9][ -]?[0-9]{4}[ -]?[0-9]{4})" + _AFTER
)


# First two digits of a resident ID: the province-level division (GB/T 2260), 81-83 for the residence
# permits of Hong Kong, Macao and Taiwan residents, 9 for foreigners' permanent residence cards.
_ID_PROVINCES = frozenset(
    {
        "11",
        "12",
        "13",
        "14",
        "15",
        "21",
        "22",
        "23",
        "31",
        "32",
        "33",
        "34",
        "35",
        "36",
        "37",
        "41",
        "42",
        "43",
        "44",
        "45",
        "46",
        "50",
        "51",
        "52",
        "53",
        "54",
        "61",
        "62",
        "63",
        "64",
        "65",
        "71",
        "81",
        "82",
        "83",
    }
)


def _could_be_resident_id(token: str) -> bool:
    """An ID-shaped run that a person's ID number could be: a real province code and birth date.

    The check digit is not required (a mistyped ID number is still personal data); the province and date
    are, so that document numbers of 18 digits (``2644030502…``, contract README) print as they are.
    """
    if not (token[:2] in _ID_PROVINCES or token[0] == "9"):
        return False
    return _birth_date_problem(token[6:14], today=None) is None


def _mask_eighteen(match: re.Match[str]) -> str:
    token = match.group(0)
    if _RESIDENT_ID_SHAPE.fullmatch(token):
        return mask_id(token) if _could_be_resident_id(token) else token
    if _USCC_SHAPE.fullmatch(token) and uscc_check_char(token[:17]) == token[17]:
        return mask_id(token)
    return token


def _mask_mobile(match: re.Match[str]) -> str:
    whole, number = match.group(0), match.group("number")
    masked: list[str] = []
    digit_index = 0
    for ch in number:
        if ch in _DIGITS:
            masked.append("*" if 3 <= digit_index <= 6 else ch)
            digit_index += 1
        else:
            masked.append(ch)
    start = match.start("number") - match.start(0)
    return whole[:start] + "".join(masked)


def _restore(found: list[str]) -> Callable[[re.Match[str]], str]:
    def restore(m: re.Match[str]) -> str:
        i = int(m.group(1))
        return found[i] if i < len(found) else m.group(0)

    return restore


def scrub(text: str, *, keep: Collection[str | None] = ()) -> str:
    """Return ``text`` with resident ID numbers, valid USCCs and mobile numbers replaced by masked forms.

    Meant as a log filter and for report messages. What counts: a standalone run of 17 digits plus a
    digit or X whose province code and birth date are real (masked as :func:`mask_id`, check digit not
    required); a standalone 18-character code that
    has the USCC shape and passes the GB 32100 check; a standalone mainland mobile number ``1[3-9]`` + 9
    digits (masked as ``138****5678``). Standalone means not glued to other ASCII letters or digits and
    not part of a decimal number, so amounts (``1,000,000.00``) and longer alphanumeric references
    (``PAUT2026110100000123``) pass through unchanged. Chinese text around a number is a boundary.

    ``keep`` names document numbers the caller knows (the record's policy number, say): they are not
    personal data, whatever their shape, and pass through unchanged.
    """
    kept = sorted({k for k in keep if k and len(k) >= 11}, key=len, reverse=True)
    if kept and any(k in text for k in kept):
        # each kept number stands aside behind a placeholder the patterns cannot match, then comes back
        pattern = re.compile("|".join(re.escape(k) for k in kept))
        found: list[str] = []

        def aside(m: re.Match[str]) -> str:
            found.append(m.group(0))
            return f"\ue000{len(found) - 1}\ue001"

        text = _MOBILE.sub(_mask_mobile, _EIGHTEEN.sub(_mask_eighteen, pattern.sub(aside, text)))
        return re.sub("\ue000([0-9]+)\ue001", _restore(found), text)
    text = _EIGHTEEN.sub(_mask_eighteen, text)
    return _MOBILE.sub(_mask_mobile, text)


__all__ = [
    "mask_address",
    "mask_id",
    "mask_name",
    "mask_phone",
    "resident_id_check_char",
    "resident_id_problem",
    "scrub",
    "uscc_check_char",
    "uscc_problem",
    "vin_check_char",
    "vin_problem",
]
