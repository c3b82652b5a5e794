"""A stand-in for data.gov.sg on loopback, for tests that must not leave this machine.

It serves each of the five resources (tap_hdb_resale.resources) under its own dataset id and
in its own format: ``datastore_search`` (records per month with limit/offset paging, as the
real API, only from the resource that publishes the month) and the download API
(``initiate-download``, then ``poll-download``, which answers "in progress" once before it
names a CSV link to that resource's export). A resource's records have its columns only (no
``remaining_lease`` before 2015). The CSV is served as data.gov.sg serves it: a byte order
mark, CRLF line ends, and no line break after the last row."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from tap_hdb_resale.resources import by_dataset_id, resource_of


@contextmanager
def fake_datagov(
    records_by_month: dict[str, list[dict]], too_many_first: int = 0
) -> Iterator[dict]:
    """Serve ``records_by_month`` (each month from its resource); yields a dict with ``url``,
    ``download_url`` and the ``requests`` seen."""
    seen: list[dict] = []
    polls: list[int] = []

    def published(month: str, dataset_id: str) -> list[dict]:
        """The month's records as ``dataset_id`` publishes them: none if it is another's."""
        resource = resource_of(month)
        if resource.dataset_id != dataset_id:
            return []
        return [
            {k: v for k, v in record.items() if k in resource.columns}
            for record in records_by_month[month]
        ]

    def export(dataset_id: str) -> bytes:
        rows = [r for month in sorted(records_by_month) for r in published(month, dataset_id)]
        buffer = io.StringIO(newline="")
        columns = by_dataset_id(dataset_id).columns
        writer = csv.DictWriter(buffer, columns, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
        return b"\xef\xbb\xbf" + buffer.getvalue().removesuffix("\r\n").encode()

    class Handler(BaseHTTPRequestHandler):
        def answer(self, body: bytes, kind: str = "application/json") -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = urlparse(self.path).path
            query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
            seen.append({"path": path, "query": query, "headers": dict(self.headers)})
            if len(seen) <= too_many_first:  # data.gov.sg's answer to too many calls
                body = json.dumps({"code": 24, "name": "TOO_MANY_REQUESTS"}).encode()
                self.send_response(429)
                self.send_header("Retry-After", "0")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if path.endswith("/initiate-download"):
                polls.clear()
                message = {"message": "Download successfully initiated. Proceed to poll download"}
                return self.answer(json.dumps({"code": 0, "data": message}).encode())
            if path.endswith("/poll-download"):
                polls.append(1)
                dataset_id = path.rsplit("/", 2)[-2]
                link = f"{base}/files/{dataset_id}.csv"
                data = (
                    {"status": "DOWNLOAD_IN_PROGRESS"}
                    if len(polls) == 1
                    else {"status": "DOWNLOAD_SUCCESS", "url": link}
                )
                return self.answer(json.dumps({"code": 0, "data": data}).encode())
            if path.startswith("/files/"):
                return self.answer(export(path.rsplit("/", 1)[-1].removesuffix(".csv")), "text/csv")
            month = json.loads(query.get("filters", "{}")).get("month")
            records = (
                published(month, query.get("resource_id", "")) if month in records_by_month else []
            )
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
    base = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {
            "url": f"{base}/api/action/datastore_search",
            "download_url": f"{base}/v1/public/api/datasets",
            "requests": seen,
        }
    finally:
        server.shutdown()
        server.server_close()
