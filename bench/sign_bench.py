"""What signing costs per document: pyHanko called plainly (the starting point) against ``PdfSigner``
(what is the same for every document prepared once per run, only the digest, time and signature value
made per document), on real customer copies, without and with a timestamp from a loopback TSA; and what
checking a signature costs (``check_signatures``, pyHanko's validator).

Key: a SPECIMEN EC P-256 key (``write_specimen_pkcs12``). Prints the CPU time of this process per
document (``time.process_time``: the TSA runs in a process of its own, ``bench/tsa.py``), the smallest and
the median of ``--repeat`` passes over the copies. Not a test: nothing fails on timing.

    python bench/sign_bench.py [--copies 12] [--repeat 5] [--workdir /tmp/sign-bench] [--no-tsa]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from pyhanko.keys import load_private_key_from_pemder_data
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.timestamps import HTTPTimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.samples import customer_copies  # noqa: E402
from bench.tsa import TsaProcess  # noqa: E402
from stamps.keys import Pkcs12Key, write_specimen_pkcs12  # noqa: E402
from stamps.signing import PdfSigner, check_signatures  # noqa: E402
from stamps.timestamps import Timestamper  # noqa: E402


def pyhanko_plainly(path: Path, password: bytes, tsa_url: str | None) -> Callable[[bytes], bytes]:
    """pyHanko's ``sign_pdf`` called for each document, as its documentation shows it."""
    key, cert, chain = pkcs12.load_key_and_certificates(path.read_bytes(), password)
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signer = signers.SimpleSigner(
        signing_cert=asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)),
        signing_key=load_private_key_from_pemder_data(der, passphrase=None),
        cert_registry=SimpleCertificateStore.from_certs(
            [asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER)) for c in chain or ()]
        ),
    )
    timestamper = HTTPTimeStamper(tsa_url) if tsa_url else None

    def sign(pdf: bytes) -> bytes:
        meta = signers.PdfSignatureMetadata(
            field_name="IssuanceSignature", md_algorithm="sha256", subfilter=fields.SigSeedSubFilter.PADES
        )
        writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
        return signers.sign_pdf(writer, meta, signer=signer, timestamper=timestamper).getvalue()

    return sign


def cpu_ms(sign: Callable[[bytes], bytes], copies: list[bytes], repeat: int) -> tuple[float, float, list]:
    sign(copies[0])  # first use loads lazy parts: not a document's cost
    runs, signed = [], []
    for _ in range(repeat):
        began = time.process_time()
        signed = [sign(pdf) for pdf in copies]
        runs.append(1000 * (time.process_time() - began) / len(copies))
    return min(runs), statistics.median(runs), signed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--no-tsa", action="store_true", help="leave out the runs with a timestamp")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sign-bench-"))
    copies = customer_copies(workdir, n=args.copies)
    root = write_specimen_pkcs12(workdir / "signer.p12", b"bench")
    sizes = sorted(len(pdf) for pdf in copies)
    print(
        f"machine: {platform.machine()}, Python {platform.python_version()}; {len(copies)} customer copies "
        f"of {sizes[0] // 1024}–{sizes[-1] // 1024} KB; {args.repeat} passes; CPU ms per document"
    )
    key = Pkcs12Key.open(workdir / "signer.p12", b"bench")
    tsa = None
    if not args.no_tsa:
        tsa = TsaProcess()  # a TSA in a process of its own
    try:
        for url in [None] + ([tsa.url] if tsa else []):
            label = "with a loopback TSA's timestamp" if url else "no timestamp"
            best, median, _ = cpu_ms(
                pyhanko_plainly(workdir / "signer.p12", b"bench", url), copies, args.repeat
            )
            print(f"pyHanko plainly, {label}: {best:.2f} (median {median:.2f})")
            signer = PdfSigner(key, timestamper=Timestamper(url) if url else None)
            best, median, signed = cpu_ms(signer.sign, copies, args.repeat)
            print(f"PdfSigner, {label}: {best:.2f} (median {median:.2f})")
        roots = [root] + ([tsa.root_der] if tsa else [])
        began = time.process_time()
        for pdf in signed:
            (check,) = check_signatures(pdf, roots=roots)
            assert check.ok, check.problems
        print(f"check (pyHanko's validator): {1000 * (time.process_time() - began) / len(signed):.1f}")
    finally:
        if tsa is not None:
            tokens, cpu = tsa.stop()
            print(
                f"the TSA (its own process): {tokens} tokens, {1000 * cpu / max(tokens, 1):.2f} ms CPU each"
            )


if __name__ == "__main__":
    main()
