"""Helpers for the tap's tests: run the tap in-process, write small deliveries, serve a fake
data.gov.sg on 127.0.0.1. (Named uniquely: pytest puts this folder on sys.path.)"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from tap_hdb_resale.deliveries import COLUMNS
from tap_hdb_resale.tap import TapHdbResale

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED_MONTHLY = REPO_ROOT / ".." / "shared" / "data" / "hdb_resale" / "monthly"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@dataclass
class TapRun:
    """What one in-process run of the tap wrote to stdout."""

    records: list[dict[str, Any]] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    types: list[str] = field(default_factory=list)  # every message's type, in order

    @property
    def state(self) -> dict[str, Any]:
        return self.states[-1]

    @property
    def months(self) -> dict[str, dict[str, Any]]:
        """The tap's ``months`` bookmark in the final STATE message."""
        return self.state["bookmarks"]["resale_flat_prices"].get("months", {})

    def month_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for record in self.records:
            counts[record["month"]] = counts.get(record["month"], 0) + 1
        return counts


def run_tap(config: dict[str, Any], state: dict[str, Any] | None = None) -> TapRun:
    """Run a full sync and collect its RECORD and STATE messages."""
    tap = TapHdbResale(config=config, state=json.loads(json.dumps(state or {})))
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        tap.sync_all()
    run = TapRun()
    for line in buffer.getvalue().splitlines():
        message = json.loads(line)
        run.types.append(message["type"])
        if message["type"] == "RECORD":
            run.records.append(message["record"])
        elif message["type"] == "STATE":
            run.states.append(message["value"])
    return run


def sale(month: str, number: int, /, **changes: str) -> dict[str, str]:
    """An invented but plausible row; ``number`` varies block and price."""
    row = dict(
        zip(
            COLUMNS,
            (month, "ANG MO KIO", "4 ROOM", f"{100 + number}", "ANG MO KIO AVE 3", "07 TO 09",
             "92", "New Generation", "1978", "54 years 01 month", str(400000 + number * 1000)),
            strict=True,
        )
    )  # fmt: skip
    return {**row, **changes}


def write_csv(
    path: Path,
    rows: list[dict[str, str]],
    *,
    columns: list[str] | None = None,
    bom: bool = False,
    newline: str = "\n",
) -> Path:
    """A delivery in data.gov.sg's export format (or a deliberately odd variant of it)."""
    columns = columns or list(COLUMNS)
    lines = [",".join(columns)] + [",".join(row.get(c, "") for c in columns) for row in rows]
    text = newline.join(lines) + newline
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    return path


# A stand-in for data.gov.sg on 127.0.0.1 --------------------------------------------------

Reply = tuple[int, dict[str, str], bytes]  # status, headers, body
Responder = Callable[[dict[str, str]], Reply]


def json_reply(body: object, status: int = 200, **headers: str) -> Reply:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(body).encode()


def datastore(records_by_month: dict[str, list[dict[str, Any]]]) -> Responder:
    """A responder that pages through ``records_by_month`` like datastore_search does."""

    def respond(query: dict[str, str]) -> Reply:
        month = json.loads(query["filters"])["month"]
        records = records_by_month.get(month, [])
        offset, limit = int(query["offset"]), int(query["limit"])
        page = [
            {"_id": offset + i + 1, **r} for i, r in enumerate(records[offset : offset + limit])
        ]
        return json_reply({"success": True, "result": {"records": page, "total": len(records)}})

    return respond


@dataclass
class FakeApi:
    """A running fake: its URL and every request it saw (query and headers)."""

    url: str
    requests: list[dict[str, Any]]


@contextmanager
def fake_servers() -> Iterator[Callable[[Responder], FakeApi]]:
    """Start fake data.gov.sg servers on free loopback ports; all stop on leaving."""
    servers: list[ThreadingHTTPServer] = []

    def start(respond: Responder) -> FakeApi:
        seen: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's naming
                query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
                seen.append({"query": query, "headers": dict(self.headers)})
                status, headers, body = respond(query)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
        return FakeApi(f"http://127.0.0.1:{server.server_port}/api/action/datastore_search", seen)

    try:
        yield start
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
