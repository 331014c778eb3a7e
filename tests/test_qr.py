"""The verification QR code (issue 23, item 4): codes, the QR drawn on page 1 of every policy and
endorsement (real LibreOffice, read back with zbarimg, clear of every word poppler finds), the index
column and its migration (SQLite and PostgreSQL), and ``issuance verify --code``."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pikepdf
import pytest
import segno
from PIL import Image
from sqlalchemy import text

from archive.index import Index, LedgerEvent, ReissueFacts
from archive.store import LocalStore
from bench.synth import make_batch
from core.config import DEFAULT_PUBLIC_URL, load_settings
from core.errors import ConfigError, UnknownVerificationCode
from core.manifest import StoredObject
from core.privacy import mask_name
from core.verification import CODE_BITS, normalise_code, verification_code, verification_url
from stamps.qr import QR_SIZE_MM, QrEncoder, corner_box, draw_qr, segno_symbol
from stamps.stamping import pikepdf_frames
from tests.conftest import REPO
from tests.test_index import archive, version
from usecases.verification import verify_code

KEY = b"qr-test-hmac-key-0123456789abcdef"
PUBLIC = "https://verify.example.com.cn"
ISSUANCE = [sys.executable, "-m", "cli.main"]
ID_RE = re.compile(r'"id_no": "([0-9A-Z]{8,18})"')
DPI = 150


@pytest.fixture(scope="session", autouse=True)
def zbarimg() -> None:
    """zbar's reader is part of the test set-up (the Makefile's system packages): missing, fail, not skip."""
    if shutil.which("zbarimg") is None:
        pytest.fail("zbarimg is not installed: run `make test` (it installs Debian's zbar-tools)")


# --- codes ----------------------------------------------------------------------------------------------


def test_codes_are_long_opaque_and_differ_per_version_policy_and_key():
    code = verification_code(KEY, "PDAC264403050070000001", 1)
    assert CODE_BITS >= 80 and len(code) * 5 >= CODE_BITS and re.fullmatch(r"[a-z2-7]{20}", code)
    assert verification_code(KEY, "PDAC264403050070000001", 1) == code  # what the index finds again
    others = {
        verification_code(KEY, "PDAC264403050070000001", 2),
        verification_code(KEY, "PDAC264403050070000002", 1),
        verification_code(b"another-key-0123456789abcdef", "PDAC264403050070000001", 1),
        # the separator keeps "P1" v11 and "P11" v1 apart
        verification_code(KEY, "PDAC26440305007000000", 11),
    }
    assert code not in others and len(others) == 4
    # without the key nothing gives it: not the plain hash of what it covers, nor the index's ID hash
    message = b"verify\x00PDAC264403050070000001\x001"
    keyless = {
        hashlib.sha256(message).hexdigest()[:20],
        hmac.new(b"", message, hashlib.sha256).hexdigest()[:20],
        hmac.new(KEY, b"PDAC264403050070000001", hashlib.sha256).hexdigest()[:20],
    }
    assert code not in keyless
    # 1000 versions, 1000 codes: no collisions in what the index's unique column must hold
    assert len({verification_code(KEY, "P1", n) for n in range(1000)}) == 1000


def test_urls_and_what_may_be_typed_for_a_code():
    code = verification_code(KEY, "P1", 1)
    assert verification_url(PUBLIC + "/", code) == f"{PUBLIC}/verify/{code}"
    assert normalise_code(f"  {code.upper()} ") == code
    assert normalise_code(f"{PUBLIC}/verify/{code}") == code
    assert normalise_code(code[:-1]) is None and normalise_code(code + "a") is None
    assert normalise_code(code[:-1] + "1") is None  # not base32: a misread, not a code


def test_public_url_setting(tmp_path):
    env = {"ISSUANCE_HMAC_KEY": KEY.decode()}
    assert load_settings(env=env, base=tmp_path).public_url == DEFAULT_PUBLIC_URL
    assert load_settings(env={**env, "ISSUANCE_PUBLIC_URL": PUBLIC + "/"}, base=tmp_path).public_url == PUBLIC
    (tmp_path / "issuance.toml").write_text('[desk]\npublic_url = "https://qr.example.org:8443/x"\n')
    assert load_settings(env=env, base=tmp_path).public_url == "https://qr.example.org:8443/x"
    for bad in (
        "ftp://example.org",
        "example.org",
        "https://",
        "http://h:port",
        "https://h/?a=1",
        "https://h/#x",
    ):
        with pytest.raises(ConfigError, match="ISSUANCE_PUBLIC_URL"):
            load_settings(env={**env, "ISSUANCE_PUBLIC_URL": bad}, base=tmp_path)
    (tmp_path / "issuance.toml").write_text('[desk]\npublic_url = "file:///etc"\n')
    with pytest.raises(ConfigError, match=r"\[desk\] public_url"):
        load_settings(env=env, base=tmp_path)


def test_names_are_masked():
    assert [mask_name(n) for n in ("", "李", "张三", "王小明", "欧阳·𠮷祥")] == [
        "",
        "*",
        "张*",
        "王*明",
        "欧***祥",
    ]


# --- the symbol ---------------------------------------------------------------------------------------


def test_the_encoder_makes_segnos_symbol_for_every_url():
    """Symbols made by XOR from one segno symbol per URL length are segno's own, module for module."""
    rng = random.Random(23)
    encoder = QrEncoder()
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    urls = [f"{PUBLIC}/verify/" + "".join(rng.choice(alphabet) for _ in range(20)) for _ in range(150)]
    urls += [
        f"{DEFAULT_PUBLIC_URL}/verify/" + "".join(rng.choice(alphabet) for _ in range(20)) for _ in range(50)
    ]
    urls += [
        "https://a.example/verify/" + "".join(rng.choice(alphabet) for _ in range(k)) for k in range(1, 30)
    ]
    for url in urls:
        made = encoder.symbol(url)
        chosen = segno.make_qr(url.encode(), mode="byte", error="m", boost_error=False)
        assert made.size == len(chosen.matrix)
        first = encoder.symbol(url)  # asked twice, the same
        version, mask = _version_and_mask(made, url)
        assert first == made == segno_symbol(url, version=version, mask=mask), url


def _version_and_mask(symbol, url: str) -> tuple[int, int]:
    """The version and mask ``symbol`` was made with: the one segno symbol of ``url`` that equals it."""
    version = (symbol.size - 17) // 4
    for mask in range(8):
        if segno_symbol(url, version=version, mask=mask) == symbol:
            return version, mask
    raise AssertionError(f"no mask of version {version} gives the encoder's symbol of {url}")


def test_drawn_symbol_reads_back_with_its_quiet_zone(tmp_path):
    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(595.3, 841.9))
    url = f"{PUBLIC}/verify/{verification_code(KEY, 'P1', 1)}"
    box = draw_qr(pdf, QrEncoder().symbol(url))
    assert box == corner_box(pikepdf_frames(pdf)[0])
    assert 20 <= QR_SIZE_MM <= 25 and abs(box[2] - QR_SIZE_MM * 72 / 25.4) < 1e-6
    path = tmp_path / "qr.pdf"
    pdf.save(path)
    page = _page_png(path, 1, tmp_path)
    assert _decode(page) == [url]
    # vector modules: no image anywhere in the page's resources
    assert "/XObject" not in pikepdf.open(path).pages[0].obj.get("/Resources", {})
    # everything dark lies inside the box (clipped to it, the symbol still reads)
    assert _ink_box(page) is not None and _inside(_ink_box(page), _pixels(box, 841.9))
    assert _decode(page.crop(_pixels(box, 841.9))) == [url]


# --- on real documents: file a batch, read each page 1 back ---------------------------------------------


@dataclass(frozen=True)
class Filed:
    root: Path
    env: dict[str, str]
    index: Index
    store: LocalStore
    records: list[dict]


def _cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ISSUANCE, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        timeout=900,
    )


@pytest.fixture(scope="module")
def filed(tmp_path_factory) -> Filed:
    """One policy of each product and an endorsement, filed by ``issuance run`` with a public URL."""
    root = tmp_path_factory.mktemp("qr-filed")
    batch = make_batch(root / "batch", 3, seed=7, endorsements=1)
    env = {"ISSUANCE_HMAC_KEY": KEY.decode(), "ISSUANCE_PUBLIC_URL": PUBLIC + "/", "ISSUANCE_WORKERS": "1"}
    result = _cli(["run", str(batch), "--no-progress"], root, env)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in batch.read_text(encoding="utf-8").splitlines()]
    index = Index.open(f"sqlite:///{root / 'var' / 'index.sqlite'}", hmac_key=KEY)
    yield Filed(root, env, index, LocalStore(root / "var" / "archive"), records)
    index.close()


def _issued_pages(filed: Filed) -> list[tuple[str, bytes, int, str]]:
    """(what, customer copy, 0-based page of the document's page 1, expected URL) for every policy's
    schedule and every endorsement: an endorsement's page 1 follows the previous version's pages."""
    out = []
    with filed.index.engine.connect() as conn:
        rows = conn.execute(text("SELECT policy_no, version, verify_code FROM documents")).all()
    codes = {(p, v): c for p, v, c in rows}
    for record in filed.records:
        versions = filed.index.versions(record["policy_no"])
        if record["kind"] == "policy":
            v = versions[0]
            page, what = 0, record["product_code"]
        else:
            v = next(x for x in versions if x.endorsement_no == record["endorsement_no"])
            page, what = versions[v.version - 2].customer_pages, "endorsement"
        assert codes[(v.policy_no, v.version)] == verification_code(KEY, v.policy_no, v.version)
        data = filed.store.get(v.customer_key, sha256=v.customer_sha256)
        out.append((what, data, page, f"{PUBLIC}/verify/{codes[(v.policy_no, v.version)]}"))
    assert sorted(w for w, *_ in out) == ["AUTO-COMM", "HOME-PROP", "PA-ACC", "endorsement"]
    return out


def test_page_1_of_every_policy_and_endorsement_leads_to_its_versions_code(filed, tmp_path):
    for what, data, page, url in _issued_pages(filed):
        path = tmp_path / f"{what}.pdf"
        path.write_bytes(data)
        image = _page_png(path, page + 1, tmp_path)
        assert _decode(image) == [url], what
        # the code is the one in the corner box, whole: read from that box alone
        with pikepdf.open(path) as pdf:
            (frame,) = pikepdf_frames([pdf.pages[page]])
            pages = len(pdf.pages)
        assert _decode(image.crop(_pixels(corner_box(frame), frame.height))) == [url], what
        # only page 1 carries one
        if page + 2 <= pages:
            assert _decode(_page_png(path, page + 2, tmp_path)) == [], what


def test_the_qr_code_covers_no_word_of_any_template(filed, tmp_path):
    """No word poppler finds on page 1 of any product's schedule or of the endorsement overlaps the QR
    code's square (quiet zone included), and the square lies on the page."""
    for what, data, page, _url in _issued_pages(filed):
        path = tmp_path / f"{what}.pdf"
        path.write_bytes(data)
        with pikepdf.open(path) as pdf:
            (frame,) = pikepdf_frames([pdf.pages[page]])
        x, y, side = corner_box(frame)
        assert x >= 0 and y >= 0 and x + side <= frame.width and y + side <= frame.height
        top, bottom = frame.height - (y + side), frame.height - y  # poppler measures from the top
        layout = subprocess.run(
            ["pdftotext", "-bbox", "-f", str(page + 1), "-l", str(page + 1), str(path), "-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        words = re.findall(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">', layout)
        assert len(words) > 50, what  # the page's text was read
        for x0, y0, x1, y1 in ((float(v) for v in w) for w in words):
            overlaps = x0 < x + side and x1 > x and y0 < bottom and y1 > top
            assert not overlaps, f"{what}: a word at {x0:.0f},{y0:.0f}–{x1:.0f},{y1:.0f} is under the QR code"


def test_previews_carry_no_qr_code(filed, tmp_path):
    batch = filed.root / "batch" / "batch.jsonl"
    result = _cli(
        ["render", str(batch), "-o", str(tmp_path / "out"), "--no-progress", "--workers", "1"], tmp_path, {}
    )
    assert result.returncode == 0, result.stderr
    previews = sorted((tmp_path / "out").rglob("*.pdf"))
    assert len(previews) == 4
    for n, preview in enumerate(previews):
        shutil.copy(preview, tmp_path / f"preview-{n}.pdf")
        assert _decode(_page_png(tmp_path / f"preview-{n}.pdf", 1, tmp_path)) == [], preview


def test_verify_code_answers_from_the_index_without_id_numbers(filed):
    ids = set(ID_RE.findall("\n".join(json.dumps(r, ensure_ascii=False) for r in filed.records)))
    assert ids
    endorsement = next(r for r in filed.records if r["kind"] == "endorsement")
    policy = next(r for r in filed.records if r["policy_no"] == endorsement["policy_no"])
    first = verification_code(KEY, policy["policy_no"], 1)
    answer = _cli(["verify", "--code", f"{PUBLIC}/verify/{first}", "--json"], filed.root, filed.env)
    assert answer.returncode == 0, answer.stderr
    found = json.loads(answer.stdout)
    assert found["verified"] and found["policy_no"] == policy["policy_no"] and found["version"] == 1
    assert (found["kind"], found["is_current"], found["current_version"]) == ("issue", False, 2)
    assert found["product_name"] == "机动车商业保险" and found["branch_code"] == policy["branch"]["code"]
    assert found["insured"] == mask_name(policy["insured"]["name"]) != policy["insured"]["name"]
    assert found["period_start"].startswith(policy["period"]["start"][:10])
    table = _cli(["verify", "--code", verification_code(KEY, policy["policy_no"], 2)], filed.root, filed.env)
    assert table.returncode == 0, table.stderr
    assert endorsement["endorsement_no"] in table.stdout and "current version" in table.stdout
    for out in (answer.stdout, table.stdout, answer.stderr, table.stderr):
        assert not any(i in out for i in ids)
        assert policy["insured"]["name"] not in out and policy["applicant"]["name"] not in out

    unknown = _cli(
        ["verify", "--code", verification_code(b"not-the-centres-key-0123456789", "P", 1)],
        filed.root,
        filed.env,
    )
    assert unknown.returncode == UnknownVerificationCode.exit_code == 2
    assert "no document issued by this centre" in unknown.stderr and unknown.stdout == ""
    garbled = _cli(["verify", "--code", "0OIl"], filed.root, filed.env)
    assert garbled.returncode == 2 and "not a verification code" in garbled.stderr
    both = _cli(["verify", policy["policy_no"], "--code", first], filed.root, filed.env)
    neither = _cli(["verify"], filed.root, filed.env)
    assert both.returncode == neither.returncode == 2 and "either a policy number or --code" in both.stderr


# --- the index: every writer path, the migration, SQLite and PostgreSQL --------------------------------


@pytest.fixture
def index(index_url):
    ix = Index.open(index_url, hmac_key=KEY)
    yield ix
    ix.close()


def test_every_version_row_gets_its_code_and_codes_find_their_version(index, index_url, tmp_path):
    archive(index, "PQR0001")
    for n, kind in ((2, "endorsement"), (3, "supplement")):
        index.archive_version(
            version=version("PQR0001", n, kind),
            record=None,
            event=LedgerEvent("t", f"policy.{kind}", "PQR0001"),
        )
    reissued_at = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    index.archive_reissue(
        version=version("PQR0001", 4, "reissue"),
        reissue=ReissueFacts(
            policy_no="PQR0001",
            version=4,
            reissue_no=1,
            reason="lost",
            clerk="CLK1",
            reissued_at=reissued_at,
            requester_id_hmac=None,
            source_version=3,
            source_sha256="a" * 64,
            copy=StoredObject("110105/2026/12/PQR0001/v4-reissue/copy.pdf", "e" * 64, 10, 3),
            old_serial="S0001",
            new_serial=None,
        ),
        event=LedgerEvent("t", "policy.reissued", "PQR0001"),
        old_form_used=(1, reissued_at - timedelta(days=2)),
        void_reason="reissue",
    )
    for n, kind in enumerate(("issue", "endorsement", "supplement", "reissue"), start=1):
        found = index.version_by_code(verification_code(KEY, "PQR0001", n).upper())
        assert found is not None and (found.policy_no, found.version, found.kind) == ("PQR0001", n, kind)
        assert found.current_version == 4 and found.period_start.tzinfo is not None
    assert index.version_by_code(verification_code(KEY, "PQR0001", 5)) is None
    assert index.version_by_code("not a code") is None
    # unique: a second row with the same code is refused by the database itself
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"), index.engine.begin() as conn:
        conn.execute(
            text("UPDATE documents SET verify_code = :c WHERE version = 2"),
            {"c": verification_code(KEY, "PQR0001", 1)},
        )

    # through the use case: status, the voided serial, names masked
    settings = load_settings(
        env={"ISSUANCE_HMAC_KEY": KEY.decode(), "ISSUANCE_INDEX": index_url}, base=tmp_path
    )
    answer = verify_code(settings, verification_code(KEY, "PQR0001", 1), now=datetime(2027, 1, 1, tzinfo=UTC))
    assert (answer.status, answer.is_current, answer.reissues) == ("in_force", False, 1)
    assert [(v.serial, v.reissue_version) for v in answer.voided_serials] == [("S0001", 4)]
    assert (answer.applicant, answer.insured) == ("样*甲", "样*乙")
    assert "11010519491231002X" not in json.dumps(answer.as_json(), ensure_ascii=False)
    later = verify_code(settings, verification_code(KEY, "PQR0001", 4), now=datetime(2028, 1, 1, tzinfo=UTC))
    assert (later.status, later.is_current) == ("expired", True)
    with pytest.raises(UnknownVerificationCode):
        verify_code(settings, verification_code(KEY, "PQR0001", 9))


def test_the_migration_adds_the_column_and_backfills_with_the_key(index, index_url):
    """An index from before 0004: its versions get their codes when a command opens it with the key; the
    migration run without the key (Alembic on its own) leaves them NULL."""
    from alembic import command
    from alembic.config import Config

    from archive.index import MIGRATIONS

    archive(index, "PQR0002")
    index.archive_version(
        version=version("PQR0002", 2, "endorsement"), record=None, event=LedgerEvent("t", "e", "PQR0002")
    )

    def set_back() -> None:
        with index.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE documents SET verify_code = NULL")
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0003'")

    set_back()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with index.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")  # no key handed over
    assert index.version_by_code(verification_code(KEY, "PQR0002", 1)) is None
    with index.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM documents WHERE verify_code IS NULL").scalar() == 2

    set_back()
    again = Index.open(index_url, hmac_key=KEY)
    try:
        for n in (1, 2):
            found = again.version_by_code(verification_code(KEY, "PQR0002", n))
            assert found is not None and found.version == n
    finally:
        again.close()


# --- helpers --------------------------------------------------------------------------------------------


def _page_png(pdf: Path, page: int, folder: Path) -> Image.Image:
    out = folder / f"{pdf.stem}-p{page}"
    subprocess.run(
        [
            "pdftoppm",
            "-r",
            str(DPI),
            "-f",
            str(page),
            "-l",
            str(page),
            "-singlefile",
            "-png",
            str(pdf),
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    with Image.open(f"{out}.png") as image:
        return image.convert("L")


def _decode(image: Image.Image) -> list[str]:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    result = subprocess.run(["zbarimg", "--raw", "-q", "-"], input=buf.getvalue(), capture_output=True)
    assert result.returncode in (0, 4), result.stderr  # 4: no symbol found
    return result.stdout.decode().splitlines()


def _pixels(box: tuple[float, float, float], page_height: float) -> tuple[int, int, int, int]:
    """A box (x, y from the bottom, side; pt) as a crop box of the page's PNG (left, top, right, bottom)."""
    x, y, side = box
    scale = DPI / 72
    return (
        round(x * scale),
        round((page_height - y - side) * scale),
        round((x + side) * scale),
        round((page_height - y) * scale),
    )


def _ink_box(image: Image.Image) -> tuple[int, int, int, int] | None:
    return image.point(lambda v: 255 if v < 128 else 0).getbbox()


def _inside(inner: tuple[int, int, int, int], outer: tuple[int, int, int, int]) -> bool:
    (il, it, ir, ib), (ol, ot, or_, ob) = inner, outer
    return il >= ol - 1 and it >= ot - 1 and ir <= or_ + 1 and ib <= ob + 1
