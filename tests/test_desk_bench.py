"""The desk benchmark's synthetic policies (bench/desk_bench.py) are rows the real filing path could have
written, and the index finds them as a clerk looks for them; the name search goes through indexes.

The sample batch is filed by the real ``issuance run`` (and one policy reissued) into SQLite and into a
real PostgreSQL, then 100 policies are cloned from it by the benchmark's own loader (COPY on PostgreSQL).
Nothing here is timed.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, NamedTuple

import pytest
from sqlalchemy import event, inspect, select

from archive.index import Index
from archive.index import schema as s
from bench.desk_bench import (
    HMAC_KEY,
    Catalogue,
    Pins,
    file_sample,
    load,
    measure_desk,
    policy_page,
    read_shapes,
    settings_for,
    synthetic,
)
from core.config import Settings
from core.privacy import mask_id

N = 100


class Loaded(NamedTuple):
    index: Index
    catalogue: Catalogue
    filed: list[str]
    settings: Settings


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def loaded(request, tmp_path_factory) -> Any:
    """An index holding the filed sample and ``N`` synthetic policies cloned from it."""
    folder = tmp_path_factory.mktemp(f"desk-bench-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'index.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_server")()
    filed = file_sample(folder / "base", url, sign=False)
    index = Index.open(url, hmac_key=HMAC_KEY)
    catalogue = Catalogue.of(read_shapes(index, Pins.now(index, filed)))
    load(index, catalogue, N)
    yield Loaded(index, catalogue, filed, settings_for(folder / "base", url))
    index.close()


def test_the_shapes_are_the_filed_sample_with_an_endorsement_and_a_reissue(loaded):
    _index, catalogue, filed, _settings = loaded
    assert len(filed) == 6
    assert catalogue.plain and catalogue.endorsed and catalogue.reissued


def test_every_synthetic_row_has_its_shapes_columns_and_nulls(loaded):
    """Row for row, a clone fills exactly the columns its shape's row fills (the schema's columns)."""
    index, catalogue, _filed, _settings = loaded
    with index.engine.connect() as conn:
        for i in range(N):
            syn = synthetic(i, catalogue)
            shape = catalogue.shapes[syn.shape]
            for name in ("policies", "parties", "documents", "print_serials", "reissues"):
                table = s.metadata.tables[name]
                query = select(table).where(table.c.policy_no == syn.policy_no).order_by(*table.primary_key)
                rows = [dict(r._mapping) for r in conn.execute(query)]
                assert len(rows) == len(shape.rows[name]), (name, syn.policy_no)
                for row, model in zip(rows, shape.rows[name], strict=True):
                    assert set(row) == {c.name for c in table.columns}
                    assert {k for k, v in row.items() if v is None} == {
                        k for k, v in model.items() if v is None
                    }, (name, syn.policy_no)


def test_the_ledger_chain_is_intact_after_the_load(loaded):
    index, _catalogue, _filed, _settings = loaded
    assert index.verify_ledger() == []
    actions = {e.action for e in index.ledger_entries()}
    assert {"batch.started", "policy.archived", "endorsement.archived", "batch.finished"} <= actions


def test_no_synthetic_id_number_is_stored_in_clear(loaded):
    index, catalogue, _filed, _settings = loaded
    clear = {p.id_no for i in range(N) for p in synthetic(i, catalogue).persons}
    assert len(clear) > N
    with index.engine.connect() as conn:
        for table in s.metadata.sorted_tables:
            everything = "\n".join(str(v) for row in conn.execute(table.select()) for v in row)
            assert not any(id_no in everything for id_no in clear), table.name


def test_a_clerk_finds_synthetic_policies_by_plate_name_and_id_number(loaded):
    index, catalogue, _filed, _settings = loaded
    plates = 0
    for i in range(N):
        syn = synthetic(i, catalogue)
        insured = syn.persons[min(1, len(syn.persons) - 1)]
        assert syn.policy_no in {f.policy_no for f in index.find(name=insured.name)}
        assert syn.policy_no in {f.policy_no for f in index.find(id_no=syn.persons[0].id_no)}
        assert [f.policy_no for f in index.find(policy_no=syn.policy_no)] == [syn.policy_no]
        if syn.plate:
            plates += 1
            assert syn.policy_no in {f.policy_no for f in index.find(plate=syn.plate)}
        page = policy_page(index, syn.policy_no)
        assert [v.kind for v in page["versions"]] == list(catalogue.shapes[syn.shape].kinds)
        masked = {(p.name, p.id_masked) for p in page["parties"]}
        assert {(p.name, mask_id(p.id_no)) for p in syn.persons} <= masked
    assert plates > 10


def test_parties_of_a_policy_in_role_order_masked(loaded):
    index, _catalogue, filed, _settings = loaded
    with_beneficiaries = next(p for p in filed if "beneficiary" in {r.role for r in index.parties(p)})
    rows = index.parties(with_beneficiaries)
    assert [(r.role, r.seq) for r in rows] == sorted((r.role, r.seq) for r in rows)
    assert all("*" in r.id_masked for r in rows) and not hasattr(rows[0], "id_no")


def test_parties_have_an_index_on_name(loaded):
    index, _catalogue, _filed, _settings = loaded
    assert "ix_parties_name" in {i["name"] for i in inspect(index.engine).get_indexes("parties")}


def test_a_name_search_reads_policies_through_an_index(loaded):
    """On PostgreSQL, with sequential scans priced out of the plan, the statement ``find(name=...)``
    runs reaches policies only by an index condition: an OR of the insured's name with a subquery on
    parties cannot use one and walks a whole index with a filter instead."""
    index, catalogue, _filed, _settings = loaded
    if index.dialect != "postgresql":
        pytest.skip("the plan is PostgreSQL's")
    statements: list[tuple[str, Any]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):
        statements.append((statement, parameters))

    event.listen(index.engine, "before_cursor_execute", capture)
    try:
        index.find(name=synthetic(3, catalogue).persons[0].name)
    finally:
        event.remove(index.engine, "before_cursor_execute", capture)
    statement, parameters = statements[-1]
    with index.engine.connect() as conn:
        raw = conn.connection.driver_connection
        with raw.cursor() as cur:
            cur.execute("SET enable_seqscan = off")
            cur.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
            plan = cur.fetchone()[0]
    scans = list(_nodes(plan[0]["Plan"]))
    on_policies = [n for n in scans if n.get("Relation Name") == "policies"]
    assert on_policies, json.dumps(plan)
    assert all("Index Cond" in n for n in on_policies), json.dumps(plan, ensure_ascii=False)


def test_the_desk_bench_times_pages_and_a_clerks_find_reissue_pdf(loaded):
    """``--desk``: the desk's pages answer through the signed-in test client with their server time,
    and a branch clerk's find → reissue → PDF goes through a supervisor's approval, then at a branch
    that needs none (PostgreSQL only: two desks start LibreOffice)."""
    index, catalogue, filed, settings = loaded
    if index.dialect != "postgresql":
        pytest.skip("the bench's database; the pages are the same on SQLite")
    motor = next(p for p in filed if index.policy_row(p).plate and len(index.versions(p)) == 1)
    before = {e.seq for e in index.ledger_entries()}
    args = argparse.Namespace(n=N, lookups=10, seed=1, desk_rounds=1)
    report = measure_desk(settings, index, catalogue, motor, args)

    pages = report["pages"]
    assert set(pages) == {"search_policy_no", "search_plate", "search_name", "search_id_no", "policy_page"}
    for v in pages.values():
        assert v["server"]["n"] == v["wall"]["n"] > 0
        assert 0 < v["server"]["p50_ms"] <= v["wall"]["p50_ms"]
    pages_of = index.versions(motor)[0].customer_pages
    assert report["thumbnails"]["pages"] == report["thumbnails"]["cold"]["server"]["n"] == pages_of > 1
    approved, exempt = report["reissue_approved"], report["reissue_no_approval"]
    assert set(approved["first"]["steps_server_ms"]) == {
        "find",
        "policy_page",
        "request",
        "request_page",
        "approve",
        "pdf",
    }
    assert "approve" not in exempt["first"]["steps_server_ms"]
    assert approved["rest_total"] is None and approved["profiled_parts_s"]
    new = [e for e in index.ledger_entries() if e.seq not in before]
    done = [(e.actor, e.action) for e in new if e.subject == motor and e.action.startswith("reissue.")]
    # one timed round and one under cProfile, each kind
    assert done.count(("SUP0101", "reissue.approved")) == 2
    assert done.count(("CLK0102", "reissue.released")) == 2
    assert len(index.reissues(motor)) == 4
    assert sum(e.action == "desk.searched_by_id" for e in new) == 12


def _nodes(node: dict[str, Any]) -> Any:
    yield node
    for child in node.get("Plans", ()):
        yield from _nodes(child)
