"""Service settings from the environment: lists, and lists whose items hold commas."""

from __future__ import annotations

import pytest

from swapwatch.errors import ConfigError
from swapwatch.server.config import load_config


def test_a_list_setting_splits_on_commas() -> None:
    config = load_config(
        environ={"SWAPWATCH_CORS_ORIGINS": "https://a.example, https://b.example,"}
    )
    assert config.cors_origins == ("https://a.example", "https://b.example")


def test_a_json_array_keeps_the_commas_inside_its_items() -> None:
    kafka = "kafka:b1:9092,b2:9092;topic=swapwatch"
    webhook = "webhook:https://ops.example/hook?a=1,2;secret=env:HOOK"
    config = load_config(environ={"SWAPWATCH_SINKS": f'["{kafka}", "{webhook}"]'})
    assert config.sinks == (kafka, webhook)


@pytest.mark.parametrize("value", ['["jsonl:-"', "[1, 2]", '[["jsonl:-"]]'])
def test_a_malformed_json_list_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="environment SWAPWATCH_SINKS: sinks"):
        load_config(environ={"SWAPWATCH_SINKS": value})
