"""``issuance serve``: the desk (web pages for clerks, supervisors, auditors, operators, admins and the
public verification page) on a WSGI server (waitress). CLI-layer code: it parses and starts; the pages
are ``desk``'s, the rules the use cases'."""

from __future__ import annotations

import argparse
import logging
import threading
from pathlib import Path

from cli.common import settings_from
from core.errors import EXIT_OK


def add_commands(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="the desk: web pages for clerks, auditors, operators and the public")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.add_argument("--threads", type=int, default=8, help="requests served at once (default 8)")
    serve.add_argument(
        "--behind-proxy",
        action="store_true",
        help="behind a reverse proxy (nginx) that sets X-Forwarded-Proto/-For/-Host: HTTPS is seen, "
        "cookies are Secure",
    )
    serve.add_argument("--config", type=Path, help="configuration file (default: ./issuance.toml)")
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    # waitress and the desk (Flask, the use cases) are loaded only by this command
    import waitress

    from desk.app import create_app

    settings = settings_from(args)
    app = create_app(settings, proxied=args.behind_proxy)
    threading.Thread(target=app.extensions["desk"].warm_up, name="warm-up", daemon=True).start()
    logging.getLogger("desk").setLevel(logging.INFO)
    print(f"desk on http://{args.host}:{args.port}/ (Ctrl-C stops it)", flush=True)
    try:
        waitress.serve(
            app,
            host=args.host,
            port=args.port,
            threads=args.threads,
            ident="issuance-desk",
            # waitress drops X-Forwarded-* unless told otherwise; behind the proxy the app's ProxyFix reads
            # them (one hop), elsewhere a client could claim HTTPS or another address with them
            clear_untrusted_proxy_headers=not args.behind_proxy,
        )
    finally:
        app.extensions["desk"].close()
    return EXIT_OK
