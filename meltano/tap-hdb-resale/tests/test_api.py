"""The data.gov.sg client and API mode, against a fake datastore_search on 127.0.0.1."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from tap_helpers import datastore, json_reply, run_tap, sale

from tap_hdb_resale.api import ApiError, DataGovSgClient, NetworkError, Pacer, as_text

FAST = {"backoff_base_seconds": 0.001, "backoff_max_seconds": 0.01, "max_retries": 3}
MONTHS = {
    "2023-01": [sale("2023-01", i) for i in range(25)],
    "2023-02": [sale("2023-02", i) for i in range(3)],
}


def client(url: str, **settings: Any) -> DataGovSgClient:
    # Paced as data.gov.sg's quota asks, these tests would wait 10 s every 4 pages.
    settings.setdefault("calls_per_window", 10_000)
    return DataGovSgClient(api_url=url, **{**FAST, "page_size": 10, **settings})


def failing_first(times: int, status: int, **headers: str):
    """A responder that answers ``status`` ``times`` times, then like the real API."""
    real, calls = datastore(MONTHS), []

    def respond(query: dict[str, str]):
        calls.append(query)
        if len(calls) <= times:
            return json_reply({"success": False}, status, **headers)
        return real(query)

    return respond


def test_pages_through_a_month(fake_api) -> None:
    api = fake_api(datastore(MONTHS))
    with client(api.url) as datagov:
        records = list(datagov.iter_month("2023-01"))
        assert datagov.month_total("2023-01") == 25
    assert records == MONTHS["2023-01"]  # in order, values as text, without _id
    offsets = [r["query"]["offset"] for r in api.requests[:3]]
    assert offsets == ["0", "10", "20"]
    assert api.requests[0]["query"]["filters"] == '{"month":"2023-01"}'
    assert api.requests[0]["query"]["resource_id"] == "d_8b84c4ee58e3cfc0ece0d773c8ca6abc"


def test_json_numbers_become_the_text_a_csv_would_hold() -> None:
    assert [as_text(v) for v in (70, 70.0, 67.5, "92", None)] == ["70", "70", "67.5", "92", ""]


@pytest.mark.parametrize(("status", "headers"), [(429, {"Retry-After": "0"}), (503, {})])
def test_rate_limits_and_server_errors_are_retried(fake_api, status, headers) -> None:
    api = fake_api(failing_first(2, status, **headers))
    assert len(list(client(api.url).iter_month("2023-02"))) == 3
    assert len(api.requests) == 3


def test_gives_up_after_max_retries_naming_url_and_status(fake_api) -> None:
    api = fake_api(failing_first(100, 502))
    with pytest.raises(ApiError) as caught:
        list(client(api.url).iter_month("2023-02"))
    message = str(caught.value)
    assert message.startswith(f"{api.url}?resource_id=")
    assert "gave up after 4 attempts, the last one got HTTP 502" in message
    assert len(api.requests) == 4


def test_a_connection_broken_mid_answer_is_retried(fake_api) -> None:
    real, calls = datastore(MONTHS), []

    def respond(query: dict[str, str]):
        calls.append(query)
        if len(calls) <= 1 or query["filters"] == '{"month":"2023-01"}':
            raise ConnectionResetError("the server hangs up without an answer")
        return real(query)

    api = fake_api(respond)
    assert len(list(client(api.url).iter_month("2023-02"))) == 3
    assert len(api.requests) == 2
    with pytest.raises(ApiError, match="gave up after 4 attempts, the last one got Protocol"):
        list(client(api.url).iter_month("2023-01"))
    assert len(api.requests) == 2 + 4


def test_client_errors_are_not_retried(fake_api) -> None:
    api = fake_api(failing_first(100, 403))
    with pytest.raises(ApiError, match=r"HTTP 403 Forbidden\. Check the API key"):
        list(client(api.url).iter_month("2023-02"))
    assert len(api.requests) == 1


def test_413_halves_the_page_size(fake_api) -> None:
    real = datastore(MONTHS)

    def respond(query: dict[str, str]):
        return json_reply({}, 413) if int(query["limit"]) > 4 else real(query)

    api = fake_api(respond)
    datagov = client(api.url)
    assert list(datagov.iter_month("2023-01")) == MONTHS["2023-01"]
    assert datagov.page_size == 2
    assert [r["query"]["limit"] for r in api.requests[:4]] == ["10", "5", "2", "2"]


def test_413_below_one_record_is_an_error(fake_api) -> None:
    api = fake_api(lambda query: json_reply({}, 413))
    with pytest.raises(ApiError, match="HTTP 413 even for a page of 1 record"):
        list(client(api.url, page_size=4).iter_month("2023-01"))


def test_an_empty_month_is_fine(fake_api) -> None:
    api = fake_api(datastore(MONTHS))
    assert list(client(api.url).iter_month("2024-06")) == []
    assert client(api.url).month_total("2024-06") == 0


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ((200, {}, b"<html>busy</html>"), "the answer is not JSON (it starts '<html>busy</html>')"),
        (json_reply({"success": False, "error": "bad filter"}), "no 'result' object: bad filter"),
        (json_reply({"result": {"records": "x", "total": 1}}), "'result.records' is not a list"),
        (json_reply({"result": {"records": [], "total": "9"}}), "'result.total' is not a count"),
    ],
)
def test_malformed_answers_name_url_offset_and_problem(fake_api, reply, problem) -> None:
    api = fake_api(lambda query: reply)
    with pytest.raises(ApiError) as caught:
        list(client(api.url).iter_month("2023-01"))
    assert str(caught.value).startswith(api.url)
    assert "offset=0" in str(caught.value)
    assert problem in str(caught.value)


def test_the_same_page_forever_does_not_loop(fake_api) -> None:
    real = datastore(MONTHS)
    api = fake_api(lambda query: real({**query, "offset": "0"}))
    with pytest.raises(ApiError, match="the same page came back twice"):
        list(client(api.url).iter_month("2023-01"))
    assert len(api.requests) == 2


def test_a_growing_total_does_not_loop(fake_api) -> None:
    def respond(query: dict[str, str]):
        offset, limit = int(query["offset"]), int(query["limit"])
        page = [{"_id": offset + i, **sale("2023-01", i)} for i in range(limit)]
        return json_reply({"result": {"records": page, "total": offset + 2 * limit}})

    api = fake_api(respond)
    with pytest.raises(ApiError, match="total changed from 20 to 30 while paging"):
        list(client(api.url).iter_month("2023-01"))


def test_short_pages_without_ids_stop_at_the_page_budget(fake_api) -> None:
    """Even a server that defeats the other checks cannot keep the client paging forever."""
    calls = []

    def respond(query: dict[str, str]):
        calls.append(query)
        size = 10 if len(calls) == 1 else 1  # a full first page, then crumbs
        return json_reply({"result": {"records": [sale("2023-01", 1)] * size, "total": 50}})

    api = fake_api(respond)
    with pytest.raises(ApiError, match="pages for 50 records; paging would not end"):
        list(client(api.url).iter_month("2023-01"))
    assert len(api.requests) == 8  # ceil(50 / 10) + 2, plus the one refused


def test_an_empty_page_before_the_total_is_an_error(fake_api) -> None:
    api = fake_api(lambda query: json_reply({"result": {"records": [], "total": 5}}))
    with pytest.raises(ApiError, match="an empty page before the total of 5"):
        list(client(api.url).iter_month("2023-01"))


def api_config(url: str, **settings: Any) -> dict[str, Any]:
    return {"start_month": "2023-01", "end_month": "2023-03", "api_url": url,
            "page_size": 10, **FAST, **settings}  # fmt: skip


def test_tap_in_api_mode(fake_api) -> None:
    api = fake_api(datastore(MONTHS))
    run = run_tap(api_config(api.url))
    assert run.month_counts() == {"2023-01": 25, "2023-02": 3}
    january = [r for r in run.records if r["month"] == "2023-01"]
    assert [r["_source_row"] for r in january] == list(range(1, 26))
    assert january[0]["_source"] == (
        f"{api.url}?resource_id=d_8b84c4ee58e3cfc0ece0d773c8ca6abc"
        "&filters=%7B%22month%22%3A%222023-01%22%7D"
    )
    assert run.months == {
        "2023-01": {"rows": 25, "fingerprint": None},
        "2023-02": {"rows": 3, "fingerprint": None},
        "2023-03": {"rows": 0, "fingerprint": None},
    }
    # Next run: the empty month is asked for again, plus the newest loaded month and lookback.
    again = run_tap(api_config(api.url), run.state)
    assert again.month_counts() == {"2023-01": 25, "2023-02": 3}
    months_asked = {r["query"]["filters"] for r in api.requests[-4:]}
    assert '{"month":"2023-03"}' in months_asked


def test_api_key_is_sent_but_never_shown(fake_api, caplog, capsys) -> None:
    key = "sekrit-KEY-4242"
    api = fake_api(failing_first(1, 429, **{"Retry-After": "0"}))
    refusing = fake_api(lambda query: (401, {}, f"unknown key {key}".encode()))
    with caplog.at_level(logging.DEBUG):
        run = run_tap(api_config(api.url, api_key=key, end_month="2023-02"))
        with pytest.raises(ApiError) as caught:
            run_tap(api_config(refusing.url, api_key=key))
    assert {r["headers"].get("x-api-key") for r in api.requests} == {key}
    assert len(run.records) == 28
    shown = [str(run.records), str(run.states), caplog.text, str(caught.value)]
    shown += list(capsys.readouterr())
    assert not [text for text in shown if key in text]
    assert "sekrit" not in repr(DataGovSgClient(api_key=key))


def test_a_bad_api_value_is_refused_like_a_bad_file(fake_api) -> None:
    bad = {"2023-01": [sale("2023-01", 1), sale("2023-01", 2, resale_price="n/a")]}
    api = fake_api(datastore(bad))
    with pytest.raises(ApiError) as caught:
        run_tap(api_config(api.url))
    assert ", record 2, column resale_price: 'n/a' is not a number (rule: resale_price must " in (
        str(caught.value)
    )


def test_retry_after_is_honoured(fake_api) -> None:
    waits: list[float] = []
    api = fake_api(failing_first(1, 429, **{"Retry-After": "3"}))
    records = list(client(api.url, sleep=waits.append).iter_month("2023-02"))
    assert len(records) == 3
    assert waits == [3.0]


def test_backoff_grows_and_is_capped(fake_api) -> None:
    waits: list[float] = []
    api = fake_api(failing_first(4, 500))
    settings = {"backoff_base_seconds": 1.0, "backoff_max_seconds": 3.0, "max_retries": 4}
    list(client(api.url, sleep=waits.append, **settings).iter_month("2023-02"))
    # Jitter keeps each wait between half and all of min(cap, base * 2**attempt).
    for wait, ceiling in zip(waits, [1.0, 2.0, 3.0, 3.0], strict=True):
        assert ceiling / 2 <= wait <= ceiling


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (sale("2023-02", 1), "record 1, column month: '2023-02' in the answer for 2023-01"),
        ({"month": "2023-01"}, "record 1, column town: missing from the record"),
    ],
)
def test_records_must_be_complete_and_of_the_month_asked(fake_api, record, expected) -> None:
    api = fake_api(lambda query: json_reply({"result": {"records": [record], "total": 1}}))
    with pytest.raises(ApiError, match=expected):
        run_tap(api_config(api.url, end_month="2023-01"))


def test_empty_settings_mean_unset(fake_api) -> None:
    """Meltano passes "" (or null) for settings whose environment variable is unset."""
    api = fake_api(datastore(MONTHS))
    settings = {"data_dir": "", "api_key": "", "resource_id": "", "lookback_months": None}
    run = run_tap(api_config(api.url, **settings))
    assert run.month_counts() == {"2023-01": 25, "2023-02": 3}
    assert "x-api-key" not in {name.lower() for name in api.requests[0]["headers"]}


def test_requests_are_paced_to_the_quota_rather_than_tripping_it() -> None:
    now, slept = [0.0], []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(4, 10.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):  # data.gov.sg's quota without a key: four calls in any ten seconds
        assert pacer.wait() == 0.0
        now[0] += 0.5
    assert pacer.wait() == pytest.approx(8.0)  # the fifth waits until the first leaves the window
    assert slept == [pytest.approx(8.0)]
    assert DataGovSgClient().pacer.calls == 4
    assert DataGovSgClient(api_key="k").pacer.calls == 8


def test_no_network_is_not_retried_and_says_how_to_work_offline() -> None:
    refused = DataGovSgClient(api_url="http://127.0.0.1:9/api/action/datastore_search")
    with pytest.raises(NetworkError) as failure:
        refused.month_total("2023-01")
    assert "Cannot reach 127.0.0.1:9: the connection was refused" in str(failure.value)
    assert "bundled 2023 snapshot" in str(failure.value)
