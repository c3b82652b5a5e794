"""A stand-in for data.gov.sg's datastore_search on loopback, for tests that must not leave
this machine. It serves records per month with limit/offset paging like the real API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


@contextmanager
def fake_datagov(records_by_month: dict[str, list[dict]]) -> Iterator[dict]:
    """Serve ``records_by_month``; yields a dict with ``url`` and the ``requests`` seen."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
            seen.append({"query": query, "headers": dict(self.headers)})
            month = json.loads(query.get("filters", "{}")).get("month")
            records = records_by_month.get(month, [])
            offset, limit = int(query.get("offset", 0)), int(query.get("limit", 100))
            page = [
                {"_id": offset + i + 1, **r} for i, r in enumerate(records[offset : offset + limit])
            ]
            body = json.dumps(
                {"success": True, "result": {"records": page, "total": len(records)}}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {
            "url": f"http://127.0.0.1:{server.server_port}/api/action/datastore_search",
            "requests": seen,
        }
    finally:
        server.shutdown()
        server.server_close()
