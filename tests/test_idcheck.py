"""Tests for core.privacy.

Expected check characters are computed here from the published algorithms, written differently from the
implementation (weights derived as powers, transliteration derived from the alphabet), so a transcription
slip in either place shows up as a disagreement.
"""

from __future__ import annotations

import random
import re
from datetime import date

import pytest

from core.privacy import (
    mask_address,
    mask_id,
    mask_phone,
    resident_id_check_char,
    resident_id_problem,
    scrub,
    uscc_check_char,
    uscc_problem,
    vin_check_char,
    vin_problem,
)

TODAY = date(2026, 6, 1)

# --- independent reference algorithms ------------------------------------------------------------------


def ref_resident_id_check(first17: str) -> str:
    """ISO 7064 MOD 11-2: weight of the i-th character from the right (check char is i=1) is 2^(i-1) mod 11;
    the check value makes the total weighted sum congruent to 1 mod 11."""
    total = sum(int(ch) * pow(2, 17 - index, 11) for index, ch in enumerate(first17))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def ref_uscc_check(first17: str) -> str:
    """GB 32100-2015: weights are 3^i mod 31; check value 31 - (sum mod 31), 31 written as 0."""
    total = sum(USCC_ALPHABET.index(ch) * pow(3, index, 31) for index, ch in enumerate(first17))
    value = 31 - total % 31
    return USCC_ALPHABET[0 if value == 31 else value]


def ref_vin_value(ch: str) -> int:
    """ISO 3779 transliteration: A-H 1-8, J-N 1-5, P 7, R 9, S-Z 2-9; i.e. the alphabet laid out in
    rows of nine starting A=1, J=1, S=2."""
    if ch.isdigit():
        return int(ch)
    offset = ord(ch) - ord("A")
    if ch <= "I":
        return offset + 1
    if ch <= "R":
        return offset - 9 + 1
    return offset - 18 + 2


REF_VIN_WEIGHTS = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2]
VIN_ALPHABET = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"


def ref_vin_check(vin: str) -> str:
    remainder = sum(ref_vin_value(ch) * w for ch, w in zip(vin, REF_VIN_WEIGHTS, strict=True)) % 11
    return "X" if remainder == 10 else str(remainder)


def synthetic_resident_id(first17: str) -> str:
    return first17 + ref_resident_id_check(first17)


def test_reference_algorithms_reproduce_published_examples() -> None:
    """The references themselves are right: the standards' worked examples come out valid."""
    assert ref_resident_id_check("11010519491231002") == "X"
    assert ref_uscc_check("91350100M000100Y4") == "3"
    assert ref_vin_check("1M8GDM9AXKP042788") == "X"
    assert [ref_vin_value(ch) for ch in "ABCDEFGHJKLMNPRSTUVWXYZ"] == [
        *[1, 2, 3, 4, 5, 6, 7, 8],
        *[1, 2, 3, 4, 5, 7, 9],
        *[2, 3, 4, 5, 6, 7, 8, 9],
    ]


# --- resident ID ----------------------------------------------------------------------------------------


def test_resident_id_published_example_is_valid() -> None:
    assert resident_id_problem("11010519491231002X", today=TODAY) is None


@pytest.mark.parametrize("first17", ["44030119900307123", "32010219840229001", "65010120000101000"])
def test_resident_id_synthetic_numbers_are_valid(first17: str) -> None:
    assert resident_id_problem(synthetic_resident_id(first17), today=TODAY) is None


def test_resident_id_check_char_agrees_with_reference() -> None:
    rng = random.Random(11643)
    seen = set()
    for _ in range(3000):
        first17 = "".join(rng.choice("0123456789") for _ in range(17))
        check = resident_id_check_char(first17)
        assert check == ref_resident_id_check(first17)
        seen.add(check)
    assert seen == set("0123456789X")


@pytest.mark.parametrize("bad", ["1101051949123100", "110105194912310021", "A1010519491231002", "１１０"])
def test_resident_id_check_char_refuses_bad_input(bad: str) -> None:
    with pytest.raises(ValueError):
        resident_id_check_char(bad)


def test_resident_id_length() -> None:
    assert resident_id_problem("11010519491231002", today=TODAY) == "must be 18 characters, got 17"
    assert resident_id_problem("11010519491231002X0", today=TODAY) == "must be 18 characters, got 19"
    assert resident_id_problem("", today=TODAY) == "must be 18 characters, got 0"


def test_resident_id_whitespace_is_refused_not_stripped() -> None:
    assert resident_id_problem(" 11010519491231002X", today=TODAY) == "has leading or trailing whitespace"


def test_resident_id_first_17_must_be_ascii_digits() -> None:
    assert resident_id_problem("1101051949123100AX", today=TODAY) == "the first 17 characters must be digits"
    # Full-width digits pass str.isdigit() but are not an ID number.
    fullwidth = "１１０１０５１９４９１２３１００２X"
    assert resident_id_problem(fullwidth, today=TODAY) == "the first 17 characters must be digits"


def test_resident_id_lowercase_x_is_refused() -> None:
    problem = resident_id_problem("11010519491231002x", today=TODAY)
    assert problem is not None
    assert "uppercase X" in problem


def test_resident_id_last_char_must_be_digit_or_x() -> None:
    assert resident_id_problem("11010519491231002Y", today=TODAY) == "last character must be a digit or X"


def test_resident_id_wrong_check_digit() -> None:
    assert resident_id_problem("110105194912310021", today=TODAY) == "check digit is wrong"
    # Swapping two digits is the typing error the check is there to catch.
    assert resident_id_problem("11010519491231020X", today=TODAY) == "check digit is wrong"


@pytest.mark.parametrize(
    ("birth", "expected"),
    [
        ("19490230", "embedded birth date is not a real date"),
        ("19491301", "embedded birth date is not a real date"),
        ("19490000", "embedded birth date is not a real date"),
        ("19000229", "embedded birth date is not a real date"),  # 1900 was not a leap year
        ("18991231", "embedded birth date is before 1900"),
        ("20260602", "embedded birth date is in the future"),
        ("19000101", None),
        ("20000229", None),
        ("20260601", None),  # born today
    ],
)
def test_resident_id_birth_date(birth: str, expected: str | None) -> None:
    id_no = synthetic_resident_id("110105" + birth + "002")
    assert resident_id_problem(id_no, today=TODAY) == expected


def test_resident_id_future_birth_date_with_default_today() -> None:
    assert resident_id_problem(synthetic_resident_id("11010529990101002")) == (
        "embedded birth date is in the future"
    )
    assert resident_id_problem("11010519491231002X") is None


@pytest.mark.parametrize(
    "id_no",
    [
        "110105194912310021",
        "11010519491231002x",
        "11010519491231002",
        "11010519491231002Y",
        synthetic_resident_id("11010519490230002"),
        synthetic_resident_id("11010518991231002"),
        synthetic_resident_id("11010520991231002"),
    ],
)
def test_resident_id_message_never_repeats_number_or_birth_date(id_no: str) -> None:
    problem = resident_id_problem(id_no, today=TODAY)
    assert problem is not None
    assert id_no not in problem
    assert id_no[6:14] not in problem
    assert id_no[6:10] not in problem  # not even the birth year
    assert not re.search(r"\d{5,}", problem)  # "1900", the rule itself, may appear


# --- USCC -----------------------------------------------------------------------------------------------


def test_uscc_known_example_is_valid() -> None:
    assert uscc_problem("91350100M000100Y43") is None
    assert uscc_check_char("91350100M000100Y4") == "3"


def test_uscc_check_char_agrees_with_reference_including_31_as_0() -> None:
    rng = random.Random(32100)
    zero_cases = 0
    for _ in range(5000):
        first17 = "".join(rng.choice(USCC_ALPHABET) for _ in range(17))
        assert uscc_check_char(first17) == ref_uscc_check(first17)
        zero_cases += ref_uscc_check(first17) == "0"
    # Sum mod 31 == 0 gives 31, written 0: make sure that branch was exercised.
    assert zero_cases > 0


def test_uscc_valid_synthetic() -> None:
    first17 = "91110105MA01ABCDE"
    assert uscc_problem(first17 + ref_uscc_check(first17)) is None


def test_uscc_wrong_check_char() -> None:
    assert uscc_problem("91350100M000100Y44") == "check character is wrong"
    assert uscc_problem("91350100M000010Y43") == "check character is wrong"


def test_uscc_length() -> None:
    assert uscc_problem("91350100M000100Y4") == "must be 18 characters, got 17"


def test_uscc_lowercase_refused() -> None:
    assert uscc_problem("91350100m000100Y43") == "letters must be uppercase"


@pytest.mark.parametrize("letter", list("IOSVZ"))
def test_uscc_letters_outside_charset_refused(letter: str) -> None:
    code = "91350100" + letter + "000100Y43"
    problem = uscc_problem(code)
    assert problem is not None
    assert "I, O, S, V and Z" in problem
    assert code not in problem


def test_uscc_check_char_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        uscc_check_char("91350100I000100Y4")
    with pytest.raises(ValueError):
        uscc_check_char("91350100M000100Y")


# --- VIN ------------------------------------------------------------------------------------------------


def test_vin_standard_example_is_valid() -> None:
    assert vin_problem("1M8GDM9AXKP042788") is None
    assert vin_check_char("1M8GDM9AXKP042788") == "X"


def test_vin_check_char_ignores_position_9_and_agrees_with_reference() -> None:
    rng = random.Random(3779)
    seen = set()
    for _ in range(3000):
        vin = "".join(rng.choice(VIN_ALPHABET) for _ in range(17))
        check = vin_check_char(vin)
        assert check == ref_vin_check(vin)
        assert vin_check_char(vin[:8] + "0" + vin[9:]) == check
        seen.add(check)
        assert vin_problem(vin[:8] + check + vin[9:]) is None
    assert seen == set("0123456789X")


def test_vin_wrong_check_digit() -> None:
    assert vin_problem("1M8GDM9A1KP042788") == "check digit (position 9) is wrong"
    assert vin_problem("1M8GDM9AXKP042789") == "check digit (position 9) is wrong"


def test_vin_length() -> None:
    assert vin_problem("1M8GDM9AXKP04278") == "must be 17 characters, got 16"


@pytest.mark.parametrize("letter", list("IOQ"))
def test_vin_forbidden_letters(letter: str) -> None:
    assert vin_problem("1M8GDM9AXKP04278" + letter) == "must not contain the letters I, O or Q"


def test_vin_lowercase_refused() -> None:
    assert vin_problem("1m8gdm9axkp042788") == "letters must be uppercase"


def test_vin_other_characters_refused() -> None:
    assert vin_problem("1M8GDM9AXKP04278-") == "may contain only digits and uppercase letters"


def test_vin_position_9_must_be_digit_or_x() -> None:
    assert vin_problem("1M8GDM9AAKP042788") == "position 9 must be a digit or X"


def test_vin_check_char_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        vin_check_char("1M8GDM9AXKP04278")
    with pytest.raises(ValueError):
        vin_check_char("1M8GDM9AXKP04278O")


# --- masking --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("11010519491231002X", "110***********002X"),
        ("110105491231002", "110********1002"),  # 15: the old first-generation length
        ("12345678901234", "12**********34"),
        ("12345678", "12****78"),
        ("1234567", "1*****7"),
        ("123", "1*3"),
        ("12", "**"),
        ("1", "*"),
        ("", ""),
    ],
)
def test_mask_id(value: str, masked: str) -> None:
    assert mask_id(value) == masked


def test_mask_id_keeps_length_and_hides_birth_date() -> None:
    for n in range(40):
        value = "".join(str(i % 10) for i in range(n))
        assert len(mask_id(value)) == n
    assert "19491231" not in mask_id("11010519491231002X")


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("13812345678", "138****5678"),
        ("62345678", "******78"),
        ("010-62345678", "**********78"),
        ("1381234567", "********67"),  # 10 digits is not a mobile number
        ("12", "**"),
        ("", ""),
    ],
)
def test_mask_phone(value: str, masked: str) -> None:
    assert mask_phone(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("北京市朝阳区建国路88号", "北京市朝阳区****"),
        ("广东省深圳市南山区科技园", "广东省深圳市****"),
        ("上海市浦东新", "上海****"),  # 6 characters: shorter than 7
        ("上海市浦东新区", "上海市浦东新****"),  # exactly 7
        ("  北京市朝阳区建国路88号 ", "北京市朝阳区****"),
        ("", ""),
    ],
)
def test_mask_address(value: str, masked: str) -> None:
    assert mask_address(value) == masked
    assert "88" not in mask_address(value)


# --- scrub ----------------------------------------------------------------------------------------------


def test_scrub_masks_id_in_a_sentence() -> None:
    text = "投保人张三，身份证号11010519491231002X，已核保。"
    assert scrub(text) == "投保人张三，身份证号110***********002X，已核保。"


def test_scrub_masks_ids_regardless_of_check_digit_and_case() -> None:
    assert scrub("id=110105194912310021;") == "id=110***********0021;"
    assert scrub("id 11010519491231002x end") == "id 110***********002x end"
    assert scrub("scan_11010519491231002X.jpg") == "scan_110***********002X.jpg"


def test_scrub_leaves_policy_numbers_and_amounts_alone() -> None:
    text = "保单PAUT2026110100000123保费1,000,000.00元，保额 1000000.00，单号 PAUT2026110100000123。"
    assert scrub(text) == text


def test_scrub_ignores_id_shaped_runs_inside_longer_tokens() -> None:
    for text in [
        "A11010519491231002X",
        "11010519491231002XA",
        "1110105194912310028",
        "PAUT110105194912310028",
        "110105194912310028.50",
        "9.110105194912310028",
        "1,110105194912310028",
    ]:
        assert scrub(text) == text


def test_scrub_masks_valid_uscc_only() -> None:
    assert scrub("信用代码91350100M000100Y43。") == "信用代码913***********0Y43。"
    assert scrub("代码91350100M000100Y44") == "代码91350100M000100Y44"


def test_scrub_ignores_reference_that_passes_uscc_check_but_lacks_division_code() -> None:
    first17 = "PAUT2026110100001"
    reference = first17 + uscc_check_char(first17)
    assert uscc_problem(reference) is None
    assert scrub(f"批单号{reference}") == f"批单号{reference}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("电话13812345678", "电话138****5678"),
        ("tel:19912345678.", "tel:199****5678."),
        ("+8613812345678", "+86138****5678"),
        ("0086 138 1234 5678", "0086 138 **** 5678"),
        ("138-1234-5678", "138-****-5678"),
        ("12812345678", "12812345678"),  # 12x is not a mobile prefix
        ("138123456789", "138123456789"),  # 12 digits
        ("A13812345678", "A13812345678"),
        ("13812345678.00", "13812345678.00"),
        ("13,812,345,678.00", "13,812,345,678.00"),
    ],
)
def test_scrub_mobile_numbers(text: str, expected: str) -> None:
    assert scrub(text) == expected


def test_scrub_is_idempotent_and_keeps_nothing_identifying() -> None:
    text = "张三 11010519491231002X 13812345678 91350100M000100Y43 PAUT2026110100000123 1,000,000.00"
    once = scrub(text)
    assert scrub(once) == once
    for secret in ["19491231", "1234", "M000100"]:
        assert secret not in once
    assert "PAUT2026110100000123" in once
    assert "1,000,000.00" in once
