"""A small client for data.gov.sg's ``datastore_search`` API, one registration month at a time.

It has no singer-sdk dependency on purpose: the tap uses it, and so does the project's
``make data``, which writes the same records to CSV files.

    client = DataGovSgClient(api_key=os.environ.get("DATA_GOV_SG_API_KEY"))
    total = client.month_total("2023-07")
    for record in client.iter_month("2023-07"):  # dicts of text values, in source order
        ...

Requests are paced to data.gov.sg's published limit (``datastore_search``: 4 calls per 10 s
without a key, 8 with one), so a run does not trip it; a rate limit met anyway (HTTP 429),
server errors (5xx) and connections broken mid-answer are retried by urllib3 (``Retry``, with
exponential backoff and jitter, honouring ``Retry-After``); HTTP 413 halves the page size. No
network at all (a DNS failure, a refused or unreachable connection) is not retried: it fails at
once with :class:`NetworkError`, which says how to work offline. The API key travels only in
the ``x-api-key`` header: it is never part of a URL, a log line, a record or an error
message.
"""

from __future__ import annotations

import collections
import errno
import json
import logging
import math
import random
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

from tap_hdb_resale.months import parse_month
from tap_hdb_resale.resources import CURRENT, resource_of

DEFAULT_API_URL = "https://data.gov.sg/api/action/datastore_search"
# data.gov.sg's download API: one request for a whole dataset, as a short-lived CSV link.
DEFAULT_DOWNLOAD_API_URL = "https://api-open.data.gov.sg/v1/public/api/datasets"
DOWNLOAD_CALLS_PER_MINUTE = 5
DOWNLOAD_POLL_SECONDS = 3.0
DOWNLOAD_POLL_LIMIT = 40
# The resource still published month by month; older months are read from their own
# resource's dataset id (tap_hdb_resale.resources).
DEFAULT_RESOURCE_ID = CURRENT.dataset_id
DEFAULT_PAGE_SIZE = 10_000
DEFAULT_MAX_RETRIES = 8
DEFAULT_BACKOFF_BASE_SECONDS = 1.0
DEFAULT_BACKOFF_MAX_SECONDS = 12.0  # data.gov.sg's rate limits reset every 10 s
DEFAULT_REQUEST_TIMEOUT_SECONDS = 60.0
# Seconds to wait for a connection: a network that drops packets fails within this, not 60 s.
DEFAULT_CONNECT_TIMEOUT_SECONDS = 5.0
# data.gov.sg's datastore_search quota: calls per window, without and with an API key.
RATE_WINDOW_SECONDS = 10.0
CALLS_PER_WINDOW = 4
CALLS_PER_WINDOW_WITH_KEY = 8
OFFLINE_HINT = (
    "The workbook runs without a network: with HDB_RESALE_SOURCE unset it reads the bundled "
    "2023 snapshot (data/snapshot/), and HDB_RESALE_DATA_DIR points it at a folder of CSV "
    "deliveries you already have."
)
PAGE_MARGIN = 2  # pages allowed beyond ceil(total / page size) before we call it a loop

logger = logging.getLogger(__name__)


class ApiError(RuntimeError):
    """data.gov.sg did not deliver a month; the message names the URL (never the key)."""


class NetworkError(ApiError):
    """data.gov.sg cannot be reached at all (no network, DNS, refused): not worth retrying."""


def unreachable(error: BaseException) -> str | None:
    """Why a connection could not be made at all, in words (None for other failures, such as
    a connection that broke or timed out mid-answer, which are worth retrying)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, socket.gaierror) or "NameResolution" in type(current).__name__:
            return "its name could not be looked up (no network, or no DNS)"
        if isinstance(current, ConnectionRefusedError):
            return "the connection was refused"
        if isinstance(current, OSError) and current.errno in (
            errno.ENETUNREACH,
            errno.EHOSTUNREACH,
            errno.ENETDOWN,
        ):
            return "the network is unreachable"
        if isinstance(current, requests.ConnectTimeout):
            return "no connection could be made within the connect timeout"
        args = getattr(current, "args", ())
        nested = next((a for a in args if isinstance(a, BaseException)), None)
        current = (
            getattr(current, "reason", None) or nested or current.__cause__ or current.__context__
        )
    return None


class Pacer:
    """At most ``calls`` requests in any ``window`` seconds: waits before a request that would
    go over, so a long run stays inside data.gov.sg's quota instead of tripping it."""

    def __init__(
        self,
        calls: int,
        window: float = RATE_WINDOW_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.calls, self.window = calls, window
        self._clock, self._sleep = clock, sleep
        self._sent: collections.deque[float] = collections.deque()

    def wait(self) -> float:
        """Block until a request may go; returns the seconds waited."""
        waited = 0.0
        while True:
            now = self._clock()
            while self._sent and now - self._sent[0] >= self.window:
                self._sent.popleft()
            if len(self._sent) < self.calls:
                self._sent.append(now)
                return waited
            pause = self.window - (now - self._sent[0])
            self._sleep(pause)
            waited += pause


@dataclass(frozen=True)
class Page:
    """One answer of ``datastore_search``: some records and the month's total."""

    records: list[dict[str, Any]]
    total: int


def as_text(value: Any) -> str:
    """A JSON value as the text a CSV export would hold: ``70.0`` -> ``"70"``, null -> ``""``."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class BackoffRetry(Retry):
    """urllib3's ``Retry`` with the client's waits: ``Retry-After`` when the server sends one,
    else ``backoff_factor * 2**n`` seconds capped at ``backoff_max``, jittered to between half
    and all of it so clients do not retry in lockstep. urllib3's own backoff waits nothing
    before the first retry, where data.gov.sg's 10 s quota window wants a pause. Each wait goes
    through ``sleep`` (the client's: it paces the retry too, and tests record it)."""

    # 413 (a page too large) is the client's to handle, by halving the page: never waited out.
    RETRY_AFTER_STATUS_CODES = frozenset({429, 503})

    def __init__(self, *args: Any, sleep: Callable[[float], None] = time.sleep, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.sleep_with = sleep

    def new(self, **kw: Any) -> BackoffRetry:
        retry = super().new(**kw)
        retry.sleep_with = self.sleep_with
        return retry

    def get_backoff_time(self) -> float:
        ceiling = min(self.backoff_max, self.backoff_factor * 2 ** max(0, len(self.history) - 1))
        return ceiling * (0.5 + random.random() / 2)

    def sleep(self, response: Any = None) -> None:
        wait = None
        if self.respect_retry_after_header and response is not None:
            try:
                wait = self.get_retry_after(response)
            except InvalidHeader:
                wait = None
        if wait is None:
            wait = self.get_backoff_time()
        last = self.history[-1] if self.history else None
        if last is not None:
            problem = f"HTTP {last.status}" if last.status else type(last.error).__name__
            logger.warning("%s: %s, retry %d in %.1f s", last.url, problem, len(self.history), wait)
        self.sleep_with(wait)


class DataGovSgClient:
    """Reads one month of the HDB resale dataset at a time, page by page, with retries.

    Each month is read from the resource that publishes it (``resource_of``): 1995-03 from the
    1990-1999 dataset, 2023-07 from the newest. ``resource_id`` overrides the newest one's id
    only (should data.gov.sg republish it under another id); older ids are fixed.
    """

    def __init__(
        self,
        *,
        api_url: str = DEFAULT_API_URL,
        resource_id: str = DEFAULT_RESOURCE_ID,
        api_key: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff_base_seconds: float = DEFAULT_BACKOFF_BASE_SECONDS,
        backoff_max_seconds: float = DEFAULT_BACKOFF_MAX_SECONDS,
        request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
        connect_timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT_SECONDS,
        calls_per_window: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        self.api_url = api_url
        self.resource_id = resource_id
        self.page_size = page_size
        self.max_retries = max_retries
        self.backoff_base_seconds = backoff_base_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.request_timeout_seconds = request_timeout_seconds
        self.connect_timeout_seconds = connect_timeout_seconds
        self._api_key = api_key or None
        self._sleep = sleep
        if calls_per_window is None:
            calls_per_window = CALLS_PER_WINDOW_WITH_KEY if self._api_key else CALLS_PER_WINDOW
        # The pacer waits in real time; ``sleep`` (injectable for tests) is the backoff's.
        self.pacer = Pacer(calls_per_window, clock=clock)
        retry = BackoffRetry(
            total=max_retries,
            connect=0,  # no connection at all: NetworkError at once (see unreachable)
            read=max_retries,
            status=max_retries,
            backoff_factor=backoff_base_seconds,
            backoff_max=backoff_max_seconds,
            status_forcelist=(429, *range(500, 600)),
            allowed_methods=("GET",),
            respect_retry_after_header=True,
            raise_on_status=False,  # the last answer comes back, for an error that names it
            sleep=self._wait_to_retry,
        )
        self._session = requests.Session()
        self._session.mount("http://", HTTPAdapter(max_retries=retry))
        self._session.mount("https://", HTTPAdapter(max_retries=retry))
        if self._api_key:
            self._session.headers["x-api-key"] = self._api_key

    def _wait_to_retry(self, seconds: float) -> None:
        """Back off, then wait for the quota: a retry is a call like any other."""
        self._sleep(seconds)
        self.pacer.wait()

    def __repr__(self) -> str:  # never show the key
        return f"DataGovSgClient(api_url={self.api_url!r}, resource_id={self.resource_id!r})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> DataGovSgClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def dataset_id_of(self, month: str) -> str:
        """The dataset id ``month`` is read from: its resource's (the override for the newest)."""
        resource = resource_of(parse_month(month))
        return self.resource_id if resource == CURRENT else resource.dataset_id

    def _params(self, month: str) -> dict[str, str]:
        filters = json.dumps({"month": parse_month(month)}, separators=(",", ":"))
        return {"resource_id": self.dataset_id_of(month), "filters": filters}

    def month_url(self, month: str) -> str:
        """The URL that selects ``month`` (without paging, without the key): the ``_source``."""
        return f"{self.api_url}?{urlencode(self._params(month))}"

    def month_total(self, month: str) -> int:
        """How many records data.gov.sg holds for ``month``."""
        return self._fetch_page(month, offset=0, limit=1).total

    def iter_month(self, month: str) -> Iterator[dict[str, str]]:
        """Yield every record of ``month`` in the API's order, values as text, ``_id`` dropped.

        Paging stops with an :class:`ApiError` rather than loop: on an empty page before the
        total is reached, a page repeated, a total that changes mid-month, or too many pages.
        """
        offset, total, pages, per_page, last_ids = 0, None, 0, 0, None
        while total is None or offset < total:
            page = self._fetch_page(month, offset=offset, limit=self.page_size)
            pages += 1
            where = f"{self.month_url(month)} at offset {offset}"
            if total is None:
                total, per_page = page.total, len(page.records)
            elif page.total != total:
                raise ApiError(
                    f"{where}: the month's total changed from {total} to {page.total} while "
                    "paging (data.gov.sg was updating it). Run again in a few minutes."
                )
            if offset < total and not page.records:
                raise ApiError(f"{where}: an empty page before the total of {total} was reached")
            ids = [record.get("_id") for record in page.records]
            if ids == last_ids and any(i is not None for i in ids):
                raise ApiError(f"{where}: the same page came back twice; paging would not end")
            per_page = max(1, min(per_page, self.page_size))
            if pages > math.ceil(total / per_page) + PAGE_MARGIN:
                raise ApiError(f"{where}: {pages} pages for {total} records; paging would not end")
            last_ids = ids
            for record in page.records:
                yield {key: as_text(value) for key, value in record.items() if key != "_id"}
            offset += len(page.records)
        if offset > total:
            raise ApiError(f"{self.month_url(month)}: {offset} records, but a total of {total}")

    def _fetch_page(self, month: str, *, offset: int, limit: int) -> Page:
        """One page; the session's :class:`BackoffRetry` retries 429, 5xx and broken
        connections; 413 halves the page size."""
        while True:
            params = {**self._params(month), "limit": str(limit), "offset": str(offset)}
            url = f"{self.api_url}?{urlencode(params)}"
            self.pacer.wait()
            try:
                response = self._session.get(
                    self.api_url,
                    params=params,
                    timeout=(self.connect_timeout_seconds, self.request_timeout_seconds),
                )
            except (requests.ConnectionError, requests.Timeout) as error:
                cause = unreachable(error)
                if cause is not None:
                    raise NetworkError(
                        f"Cannot reach {urlparse(self.api_url).netloc}: {cause}. {OFFLINE_HINT}"
                    ) from None
                # urllib3 retried it max_retries times: name what broke the last attempt.
                reason = getattr(error.args[0], "reason", None) if error.args else None
                raise ApiError(
                    self._gave_up(url, self.max_retries + 1, type(reason or error).__name__)
                ) from None
            status = response.status_code
            if status == 413:
                limit = self._halve_page_size(url, limit)
                continue
            if status < 400:
                return self._parse(response, url)
            if status != 429 and status < 500:
                raise ApiError(f"{url}: HTTP {status} {response.reason}. {self._hint(status)}")
            retries = getattr(response.raw, "retries", None)
            attempts = len(retries.history) + 1 if retries is not None else 1
            raise ApiError(self._gave_up(url, attempts, f"HTTP {status} {response.reason}"))

    @staticmethod
    def _gave_up(url: str, attempts: int, problem: str) -> str:
        return (
            f"{url}: gave up after {attempts} attempts, the last one got {problem}. "
            "data.gov.sg may be rate-limiting or down: wait and run again, set an API "
            "key, or raise max_retries."
        )

    def _halve_page_size(self, url: str, limit: int) -> int:
        """After HTTP 413 (answer too large): use half the page size from now on."""
        if limit // 2 < 1:
            raise ApiError(f"{url}: HTTP 413 even for a page of {limit} record")
        self.page_size = limit // 2
        logger.warning("%s: HTTP 413, page size halved to %d", url, self.page_size)
        return self.page_size

    @staticmethod
    def _hint(status: int) -> str:
        if status in (401, 403):
            return "Check the API key (DATA_GOV_SG_API_KEY), or run without one."
        if status == 404:
            return "Check api_url and resource_id."
        return "Check api_url, resource_id and the month."

    def _redact(self, text: str) -> str:
        """``text`` with the API key masked, for anything quoted from an answer."""
        return text.replace(self._api_key, "***") if self._api_key else text

    def _parse(self, response: requests.Response, url: str) -> Page:
        """The page inside ``{"success": true, "result": {"records": [...], "total": N}}``."""
        try:
            body = response.json()
        except ValueError:
            snippet = self._redact(response.text[:80])
            raise ApiError(f"{url}: the answer is not JSON (it starts {snippet!r})") from None
        result = body.get("result") if isinstance(body, dict) else None
        if not isinstance(result, dict):
            error = body.get("error") if isinstance(body, dict) else None
            detail = self._redact(f": {error}") if error else ""
            raise ApiError(f"{url}: the JSON answer has no 'result' object{detail}")
        records, total = result.get("records"), result.get("total")
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ApiError(f"{url}: 'result.records' is not a list of records")
        if not isinstance(total, int) or isinstance(total, bool) or total < 0:
            raise ApiError(f"{url}: 'result.total' is not a count: {total!r}")
        return Page(records, total)


def retrying_session(retries: int = DEFAULT_MAX_RETRIES) -> requests.Session:
    """A session whose requests urllib3 retries on HTTP 429 and 5xx (exponential backoff,
    honouring ``Retry-After``) and after a connection broken mid-answer, but not when no
    connection can be made at all: no network fails at once."""
    retry = Retry(
        total=retries,
        connect=0,
        read=retries,
        status=retries,
        backoff_factor=DEFAULT_BACKOFF_BASE_SECONDS,
        backoff_max=DEFAULT_BACKOFF_MAX_SECONDS,
        backoff_jitter=0.5,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=("GET",),
        respect_retry_after_header=True,
    )
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


def download_pacer(
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Pacer:
    """The download API's quota (calls per minute), to share between the exports of a run."""
    return Pacer(DOWNLOAD_CALLS_PER_MINUTE, 60.0, clock=clock, sleep=sleep)


def download_dataset(
    dest: Path,
    *,
    dataset_id: str = DEFAULT_RESOURCE_ID,
    download_api_url: str = DEFAULT_DOWNLOAD_API_URL,
    api_key: str | None = None,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    poll_seconds: float | None = None,
    pacer: Pacer | None = None,
) -> Path:
    """Download a whole dataset with data.gov.sg's download API into ``dest``: initiate the
    export, poll until it names a CSV link, then stream that file. One export instead of one
    ``datastore_search`` page per month; network failures fail fast as :class:`NetworkError`.
    Several exports in a row share one ``pacer`` (:func:`download_pacer`), so together they
    keep to the quota."""
    session = session or retrying_session()
    poll_seconds = DOWNLOAD_POLL_SECONDS if poll_seconds is None else poll_seconds
    headers = {"x-api-key": api_key} if api_key else {}
    pacer = pacer or download_pacer(clock=clock, sleep=sleep)
    base = f"{download_api_url.rstrip('/')}/{dataset_id}"
    timeout = (DEFAULT_CONNECT_TIMEOUT_SECONDS, DEFAULT_REQUEST_TIMEOUT_SECONDS)

    def call(url: str, *, stream: bool = False) -> requests.Response:
        # The key goes to data.gov.sg only, never to the host of the download link.
        sent = headers if url.startswith(download_api_url) else {}
        pacer.wait()
        try:
            response = session.get(url, headers=sent, timeout=timeout, stream=stream)
        except requests.exceptions.RetryError as error:
            raise ApiError(
                f"{url}: gave up after {DEFAULT_MAX_RETRIES} retries ({error})"
            ) from None
        except (requests.ConnectionError, requests.Timeout) as error:
            cause = unreachable(error) or type(error).__name__
            raise NetworkError(
                f"Cannot reach {urlparse(url).netloc}: {cause}. {OFFLINE_HINT}"
            ) from None
        if response.status_code >= 400:
            raise ApiError(f"{url}: HTTP {response.status_code} {response.reason}")
        return response

    def answer(url: str) -> dict[str, Any]:
        try:
            body = call(url).json()
        except ValueError:
            raise ApiError(f"{url}: the answer is not JSON") from None
        if not isinstance(body, dict) or body.get("code") not in (0, None):
            message = body.get("errorMsg") if isinstance(body, dict) else None
            raise ApiError(f"{url}: data.gov.sg answered with an error: {message or body!r}")
        return body.get("data") or {}

    answer(f"{base}/initiate-download")
    link = None
    for _ in range(DOWNLOAD_POLL_LIMIT):
        data = answer(f"{base}/poll-download")
        link = data.get("url")
        if link:
            break
        logger.info("data.gov.sg is preparing the download (%s)", data.get("status", "waiting"))
        sleep(poll_seconds)
    if not link:
        raise ApiError(
            f"{base}/poll-download: no download link after {DOWNLOAD_POLL_LIMIT} polls; "
            "try again later."
        )
    partial = dest.with_name(dest.name + ".partial")
    try:
        with call(link, stream=True) as response, partial.open("wb") as handle:
            for chunk in response.iter_content(chunk_size=1 << 20):
                handle.write(chunk)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(dest)
    return dest
