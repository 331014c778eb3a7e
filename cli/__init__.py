"""The ``issuance`` command: argument parsing and the one error → exit-code map; no business rules."""
