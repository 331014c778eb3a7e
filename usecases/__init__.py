"""Use cases: a session built from configuration, and what people do with it (run a batch, attach,
reissue, audit, verify). The front-ends (``cli``, later the desk) call these; they hold no rules."""
