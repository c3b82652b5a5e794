"""The tap as a whole: the SDK's standard tests, settings checks, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.testing import get_tap_test_class

from tap_hdb_resale.tap import TapHdbResale

FIXTURE_CONFIG = {
    "data_dir": str(Path(__file__).resolve().parent / "fixtures" / "deliveries"),
    "start_month": "2023-01",
    "end_month": "2023-02",
}

TestTapHdbResale = get_tap_test_class(TapHdbResale, config=FIXTURE_CONFIG)


@pytest.mark.parametrize("value", ["2023-13", "23-01", "", "2023-1", "2023/01", None])
def test_malformed_month_setting_is_refused(value: object) -> None:
    with pytest.raises(ConfigValidationError) as caught:
        TapHdbResale(config={**FIXTURE_CONFIG, "start_month": value})
    assert "start_month" in str(caught.value)
    assert "YYYY-MM" in str(caught.value)


def test_window_must_not_run_backwards() -> None:
    config = {**FIXTURE_CONFIG, "start_month": "2023-05", "end_month": "2023-01"}
    with pytest.raises(ConfigValidationError, match="start_month 2023-05 is after end_month"):
        TapHdbResale(config=config)


def test_every_setting_is_described_and_the_key_is_secret() -> None:
    properties = TapHdbResale.config_jsonschema["properties"]
    assert all(spec.get("description") for spec in properties.values())
    assert properties["api_key"].get("secret") is True
    assert TapHdbResale.config_jsonschema["required"] == ["start_month", "end_month"]


def test_cli_round_trips_custom_state(tmp_path: Path) -> None:
    """Our ``months`` bookmark (and anything else in the stream's state) survives the SDK:
    read with --state, carried into every STATE message, updated only in the last one."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(FIXTURE_CONFIG))
    old = {"2022-12": {"rows": 7, "fingerprint": None}}
    state = tmp_path / "state.json"
    state.write_text(
        json.dumps({"bookmarks": {"resale_flat_prices": {"months": old, "note": "kept"}}})
    )
    result = CliRunner().invoke(TapHdbResale.cli, ["--config", str(config), "--state", str(state)])
    assert result.exit_code == 0, result.output
    messages = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    states = [
        m["value"]["bookmarks"]["resale_flat_prices"] for m in messages if m["type"] == "STATE"
    ]
    last_record = max(i for i, m in enumerate(messages) if m["type"] == "RECORD")
    last_state = max(i for i, m in enumerate(messages) if m["type"] == "STATE")
    assert last_state > last_record
    assert all(s["note"] == "kept" for s in states)
    assert all(s["months"] == old for s in states[:-1])
    assert set(states[-1]["months"]) == {"2022-12", "2023-01", "2023-02"}
    assert states[-1]["months"]["2023-01"]["rows"] == 4
