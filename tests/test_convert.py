"""DOCX -> PDF on a real, warm LibreOffice: conversion, parallel instances, crashes, hangs, bad input.

Nothing here mocks LibreOffice: failures are injected the way they happen in production (SIGKILL to
soffice.bin, a timeout too short to meet, a file that is not a DOCX).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from docx import Document
from docx.oxml.ns import qn
from pypdf import PdfReader

from core.errors import ComponentUnavailable, ConversionFailed, ConversionTimeout
from pipeline._lobridge import PROFILE_SEED, seed_profile
from pipeline.convert import Converter, ConverterPool, default_pool_size, profile_template_for

pytestmark = pytest.mark.skipif(
    shutil.which("soffice") is None,
    reason="LibreOffice (soffice) is not on PATH: "
    "apt-get install libreoffice-writer-nogui python3-uno fonts-noto-cjk",
)

CJK_FONT = "Noto Serif CJK SC"
CHINESE = "保险单 投保人 𠮷野家"  # 𠮷 (U+20BB7) lies outside the BMP: a classic font/encoding trap


def make_docx(path: Path, *, title: str, pages: int = 1) -> Path:
    """A small policy-like document with Chinese text in an East Asian font; ``pages`` pages long."""
    document = Document()
    document.add_heading(title, level=1)
    for page in range(pages):
        paragraph = document.add_paragraph()
        run = paragraph.add_run(f"{CHINESE} 第{page + 1}页")
        run.font.name = CJK_FONT
        run._element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), CJK_FONT)
        paragraph.add_run(" Sum insured: 100000.00 CNY.")
        if page < pages - 1:
            document.add_page_break()
    document.save(path)
    return path


def pdf_text(path: Path) -> str:
    return "".join(page.extract_text() for page in PdfReader(path).pages)


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie waiting for a reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in {"Z", "X"}


def no_part_files(folder: Path) -> bool:
    return not list(folder.glob(".*.part"))


@pytest.fixture(scope="module")
def converter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Converter]:
    """One warm instance shared by the tests that do not break it on purpose (saves start-ups)."""
    with Converter(workdir=tmp_path_factory.mktemp("lo"), timeout=60) as conv:
        yield conv


def test_chinese_text_survives_conversion(converter: Converter, tmp_path: Path) -> None:
    docx = make_docx(tmp_path / "policy.docx", title="Policy 保险单 P-0001", pages=2)
    pdf = tmp_path / "policy.pdf"

    pages = converter.convert(docx, pdf)

    assert pages == 2
    assert pdf.read_bytes().startswith(b"%PDF-")
    assert len(PdfReader(pdf).pages) == 2
    text = pdf_text(pdf)
    assert "保险单" in text
    assert "𠮷" in text
    assert no_part_files(tmp_path)


def test_random_bytes_are_refused_and_the_next_document_converts(
    converter: Converter, tmp_path: Path
) -> None:
    bad = tmp_path / "x.docx"
    bad.write_bytes(os.urandom(4096))
    before = converter.stats

    with pytest.raises(ConversionFailed) as caught:
        converter.convert(bad, tmp_path / "x.pdf")

    assert not isinstance(caught.value, ConversionTimeout)
    assert "x.docx" in str(caught.value)
    assert str(tmp_path) not in str(caught.value)  # the name, not the folder (which may be personal)
    assert not (tmp_path / "x.pdf").exists()
    assert converter.stats.retries == before.retries + 1  # one retry, not more
    assert converter.stats.restarts == before.restarts  # bad input does not cost a restart

    good = make_docx(tmp_path / "good.docx", title="Good")
    assert converter.convert(good, tmp_path / "good.pdf") == 1
    assert no_part_files(tmp_path)


def test_pdf_a_2b(tmp_path: Path) -> None:
    docx = make_docx(tmp_path / "a.docx", title="PDF/A 保险单")
    with Converter(workdir=tmp_path, pdf_version=2) as conv:
        conv.convert(docx, tmp_path / "a.pdf")
    data = (tmp_path / "a.pdf").read_bytes()
    assert b"pdfaid:part" in data and b"pdfaid:conformance" in data
    assert "保险单" in pdf_text(tmp_path / "a.pdf")


def test_two_converters_run_concurrently_with_own_profiles(tmp_path: Path) -> None:
    docs = [make_docx(tmp_path / f"d{i}.docx", title=f"Doc {i}") for i in range(6)]
    errors: list[BaseException] = []
    with Converter(workdir=tmp_path) as one, Converter(workdir=tmp_path) as two:
        assert one.profile_dir != two.profile_dir
        assert one.soffice_pid != two.soffice_pid

        def work(conv: Converter, mine: list[Path]) -> None:
            try:
                for docx in mine:
                    conv.convert(docx, docx.with_suffix(".pdf"))
            except BaseException as e:
                errors.append(e)

        threads = [
            threading.Thread(target=work, args=(one, docs[0::2])),
            threading.Thread(target=work, args=(two, docs[1::2])),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        profiles = [one.profile_dir, two.profile_dir]
        pids = [one.soffice_pid, two.soffice_pid]

    assert not errors
    assert all(docx.with_suffix(".pdf").read_bytes().startswith(b"%PDF-") for docx in docs)
    assert all(p is not None and not p.exists() for p in profiles)  # close() removes its profile
    assert all(pid is not None and gone(pid) for pid in pids)


def test_libreoffice_skips_its_graphics_self_tests_at_every_start(tmp_path: Path) -> None:
    # Left to itself, headless LibreOffice 7.4 runs GraphicsRenderTests at every start (0.7 s of CPU) and
    # says so in the profile's GraphicsRenderTests.log; the seeded profile tells it not to, also after a
    # restart in the same profile.
    first = make_docx(tmp_path / "first.docx", title="First")
    with Converter(workdir=tmp_path) as conv:
        assert conv.convert(first, tmp_path / "first.pdf") == 1
        profile = conv.profile_dir
        assert profile is not None
        user = profile / "user"
        assert "ooSetupLastVersion" in (user / "registrymodifications.xcu").read_text(encoding="utf-8")
        assert (user / "config").is_dir()  # LibreOffice did make its profile there
        assert not (user / "GraphicsRenderTests.log").exists()
        os.kill(conv.soffice_pid or 0, signal.SIGKILL)
        assert conv.convert(first, tmp_path / "again.pdf") == 1
        assert conv.stats.restarts == 1
        assert not (user / "GraphicsRenderTests.log").exists()


def test_libreoffice_keeps_its_temporary_files_in_the_profile_and_leaves_none(tmp_path: Path) -> None:
    doc = make_docx(tmp_path / "doc.docx", title="Doc")
    with Converter(workdir=tmp_path / "work") as conv:
        conv.convert(doc, tmp_path / "doc.pdf")
        profile, pid = conv.profile_dir, conv.soffice_pid
        assert profile is not None and pid is not None
        assert any((profile / "tmp").iterdir())  # LibreOffice's own lu….tmp folder
    assert not profile.exists() and gone(pid)  # ended at once, and its temporary files with it


def test_a_used_profile_keeps_its_own_settings(tmp_path: Path) -> None:
    settings = tmp_path / "user" / "registrymodifications.xcu"
    seed_profile(tmp_path)
    assert settings.read_text(encoding="utf-8") == PROFILE_SEED
    settings.write_text("<oor:items/>", encoding="utf-8")
    seed_profile(tmp_path)
    assert settings.read_text(encoding="utf-8") == "<oor:items/>"


def test_new_profiles_start_from_the_template_the_first_instance_left(tmp_path: Path) -> None:
    template = profile_template_for(tmp_path / "cache")
    assert template is not None and not template.exists()
    doc = make_docx(tmp_path / "doc.docx", title="Doc")
    with Converter(workdir=tmp_path / "one", profile_template=template) as first:
        first.convert(doc, tmp_path / "one.pdf")
    assert (template / "user" / "registrymodifications.xcu").is_file()  # left by the polite end
    (template / "user" / "from-the-template").write_text("marker")
    with Converter(workdir=tmp_path / "two", profile_template=template) as second:
        assert second.convert(doc, tmp_path / "two.pdf") == 1
        profile = second.profile_dir
        assert profile is not None and (profile / "user" / "from-the-template").is_file()
        assert not (profile / "user" / "GraphicsRenderTests.log").exists()
    assert pdf_text(tmp_path / "two.pdf") == pdf_text(tmp_path / "one.pdf")


def test_a_template_libreoffice_cannot_start_from_is_replaced(tmp_path: Path) -> None:
    template = tmp_path / "template"
    template.mkdir()
    (template / "user").write_text("not a folder")  # the bridge cannot even seed such a profile
    doc = make_docx(tmp_path / "doc.docx", title="Doc")
    with Converter(workdir=tmp_path / "work", profile_template=template) as conv:
        assert conv.convert(doc, tmp_path / "doc.pdf") == 1
        assert conv.stats.starts == 1
    assert (template / "user").is_dir()  # the broken one was removed, the fresh profile left in its place


def test_no_template_where_libreoffice_is_not_found(tmp_path: Path) -> None:
    assert profile_template_for(tmp_path, "no-such-soffice") is None


def test_killed_between_documents_restarts(tmp_path: Path) -> None:
    first = make_docx(tmp_path / "first.docx", title="First")
    second = make_docx(tmp_path / "second.docx", title="Second")
    with Converter(workdir=tmp_path) as conv:
        conv.convert(first, tmp_path / "first.pdf")
        old_pid = conv.soffice_pid
        assert old_pid is not None
        os.kill(old_pid, signal.SIGKILL)

        assert conv.convert(second, tmp_path / "second.pdf") == 1

        assert conv.soffice_pid not in (None, old_pid)
        assert conv.stats.restarts == 1
        assert conv.stats.documents == 2


def test_killed_during_a_batch_still_yields_every_pdf(tmp_path: Path) -> None:
    # Ten pages each so that a conversion takes long enough for the kill to land inside one.
    docs = [make_docx(tmp_path / f"b{i}.docx", title=f"Batch {i}", pages=10) for i in range(8)]
    third_done = threading.Event()
    errors: list[BaseException] = []

    with Converter(workdir=tmp_path, timeout=60) as conv:

        def batch() -> None:
            try:
                for n, docx in enumerate(docs, start=1):
                    conv.convert(docx, docx.with_suffix(".pdf"))
                    if n == 3:
                        third_done.set()
            except BaseException as e:
                errors.append(e)
                third_done.set()

        worker = threading.Thread(target=batch)
        worker.start()
        assert third_done.wait(timeout=60)
        time.sleep(0.05)  # into the 4th document
        pid = conv.soffice_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        worker.join(timeout=120)
        assert not worker.is_alive()
        stats = conv.stats

    assert not errors
    for docx in docs:
        assert len(PdfReader(docx.with_suffix(".pdf")).pages) == 10
    assert stats.documents == 8
    assert stats.restarts == 1
    assert stats.failures == 0
    assert no_part_files(tmp_path)


def test_timeout_then_normal_call_works(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.convert")
    docx = make_docx(tmp_path / "slow.docx", title="Slow")
    with Converter(workdir=tmp_path, timeout=60) as conv:
        with pytest.raises(ConversionTimeout) as caught:
            conv.convert(docx, tmp_path / "slow.pdf", timeout=0.001)
        assert "slow.docx" in str(caught.value)
        assert conv.stats.timeouts == 1
        assert conv.stats.retries == 1

        assert conv.convert(docx, tmp_path / "slow.pdf") == 1
        assert conv.stats.documents == 1
    assert no_part_files(tmp_path)
    # The bridge's stderr reaches our logger, not our stdout.
    assert any(r.getMessage().startswith("lobridge[") for r in caplog.records)


def test_missing_soffice_is_component_unavailable(tmp_path: Path) -> None:
    conv = Converter(workdir=tmp_path, soffice="/nonexistent/soffice")
    with pytest.raises(ComponentUnavailable) as caught:
        conv.start()
    assert "libreoffice-writer-nogui" in str(caught.value)
    assert caught.value.exit_code == 3
    conv.close()


def test_pool_started_without_waiting_converts_once_ready(tmp_path: Path) -> None:
    with ConverterPool(size=2, workdir=tmp_path / "lo") as pool:
        began = time.monotonic()
        pool.start(wait=False)
        assert time.monotonic() - began < 1.0  # LibreOffice takes longer than that to start
        assert pool.convert(make_docx(tmp_path / "a.docx", title="A"), tmp_path / "a.pdf") == 1
        assert len(pool.soffice_pids) == 2  # both were started, not just the one that converted
    assert no_part_files(tmp_path)


def test_pool_started_without_waiting_reports_a_missing_soffice_at_first_use(tmp_path: Path) -> None:
    pool = ConverterPool(size=2, workdir=tmp_path, soffice="/nonexistent/soffice")
    pool.start(wait=False)  # returns: the error belongs to the first conversion
    for _ in range(2):  # and to every later one
        with pytest.raises(ComponentUnavailable, match="libreoffice-writer-nogui"):
            pool.convert(make_docx(tmp_path / "a.docx", title="A"), tmp_path / "a.pdf")
    pool.close()


def test_missing_python_is_component_unavailable(tmp_path: Path) -> None:
    conv = Converter(workdir=tmp_path, python="/nonexistent/python3")
    with pytest.raises(ComponentUnavailable, match="python3-uno"):
        conv.convert(make_docx(tmp_path / "a.docx", title="A"), tmp_path / "a.pdf")
    conv.close()


def test_pool_converts_in_parallel_threads(tmp_path: Path) -> None:
    docs = [make_docx(tmp_path / f"p{i}.docx", title=f"Pool {i}") for i in range(6)]
    errors: list[BaseException] = []
    with ConverterPool(size=2, workdir=tmp_path) as pool:

        def work(mine: list[Path]) -> None:
            try:
                for docx in mine:
                    pool.convert(docx, docx.with_suffix(".pdf"))
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=work, args=(docs[i::3],)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = pool.stats
        assert len(set(pool.soffice_pids)) == 2

    assert not errors
    assert stats.documents == 6
    assert stats.starts == 2
    assert all(docx.with_suffix(".pdf").exists() for docx in docs)
    assert 1 <= default_pool_size() <= 4


def test_libreoffice_does_not_outlive_a_parent_killed_mid_conversion(tmp_path: Path) -> None:
    """kill -9 of the process that owns a converter, while LibreOffice is busy: no orphan is left."""
    import subprocess
    import sys
    import textwrap

    big = tmp_path / "big.docx"
    document = Document()
    for i in range(1500):
        document.add_paragraph(f"第{i}条 保险人按照本合同约定承担保险责任。" * 6)
    document.save(big)
    script = textwrap.dedent(
        f"""
        import sys, threading, time
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from pipeline.convert import Converter
        converter = Converter(workdir=Path({str(tmp_path)!r}))
        converter.start()
        print(converter.soffice_pid, flush=True)
        job = (Path({str(big)!r}), Path({str(tmp_path / "big.pdf")!r}))
        threading.Thread(target=converter.convert, args=job).start()
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    soffice_pid = int(parent.stdout.readline())
    time.sleep(1.5)  # the conversion of ~150 pages is under way
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _alive(soffice_pid):
        time.sleep(0.2)
    assert not _alive(soffice_pid), "LibreOffice outlived its killed parent"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
