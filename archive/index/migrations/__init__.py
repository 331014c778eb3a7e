"""Alembic migrations of the index schema (run by ``archive.index.Index.open``)."""
