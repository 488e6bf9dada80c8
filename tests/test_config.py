"""Service settings from the environment: lists, lists whose items hold commas, the quality gate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from swapwatch.errors import ConfigError
from swapwatch.faces.quality import QualityConfig
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


def test_a_json_array_reads_like_the_comma_form() -> None:
    config = load_config(
        environ={
            "SWAPWATCH_RTMP_PORTS": "[19350, 19449]",
            "SWAPWATCH_CORS_ORIGINS": '[" https://a.example ", ""]',
        }
    )
    assert config.rtmp_ports == (19350, 19449)
    assert config.cors_origins == ("https://a.example",)


@pytest.mark.parametrize(
    "value",
    [
        '["webhook:https://user:hunter2@ops.example/;secret=hunter2"',
        '["webhook:https://ops.example/;secret=hunter2", 1]',
        '[["webhook:https://ops.example/;secret=hunter2"]]',
        '[true, "secret=hunter2"]',
    ],
)
def test_a_malformed_sink_list_names_the_variable_and_hides_the_value(value: str) -> None:
    with pytest.raises(ConfigError, match="environment SWAPWATCH_SINKS: sinks") as raised:
        load_config(environ={"SWAPWATCH_SINKS": value})
    assert "sinks = <hidden> is not a valid" in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_the_quality_gate_is_set_from_the_environment() -> None:
    config = load_config(
        environ={
            "SWAPWATCH_MIN_FACE_PX": "96",
            "SWAPWATCH_MAX_YAW": "0.6",
            "SWAPWATCH_MIN_BRIGHTNESS": "20",
            "SWAPWATCH_MIN_SHARPNESS": "0",
        }
    )
    gate = config.quality
    assert (gate.min_face_px, gate.max_yaw, gate.min_brightness, gate.min_sharpness) == (
        96.0,
        0.6,
        20.0,
        0.0,
    )
    assert load_config(environ={}).quality == QualityConfig()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SWAPWATCH_MAX_YAW", "1.5", "max_yaw 1.5 is not within (0, 1]"),
        ("SWAPWATCH_MAX_YAW", "0", "max_yaw 0.0 is not within (0, 1]"),
        ("SWAPWATCH_MIN_FACE_PX", "-5", "min_face_px -5.0 must be positive"),
        ("SWAPWATCH_MIN_BRIGHTNESS", "300", "min_brightness 300.0 is not within 0-255"),
        ("SWAPWATCH_MIN_SHARPNESS", "lots", "min_sharpness = 'lots' is not a valid float"),
        ("SWAPWATCH_MIN_FACE_PX", "inf", "min_face_px = 'inf' is not a finite number"),
        ("SWAPWATCH_CUSUM_H", "nan", "cusum_h = 'nan' is not a finite number"),  # never alarms
        ("SWAPWATCH_CUSUM_H", "-1", "cusum_h must be positive"),
        ("SWAPWATCH_RATE", "nan", "rate = 'nan' is not a finite number"),
        ("SWAPWATCH_MAX_BATCH", "0", "max_batch must be at least 1"),
        ("SWAPWATCH_THREADS", "0", "threads must be at least 1"),
        ("SWAPWATCH_READ_TIMEOUT_S", "-5", "read_timeout_s must be positive"),
        ("SWAPWATCH_DRAIN_TIMEOUT_S", "-1", "drain_timeout_s must not be negative"),
        ("SWAPWATCH_MAX_BODY_BYTES", "-1", "max_body_bytes must be at least 1"),
        (
            "SWAPWATCH_RTMP_PUBLIC_HOST",
            "rtmp://ingest.example/live",
            "rtmp_public_host 'rtmp://ingest.example/live' is not a host name or IP address",
        ),
    ],
)
def test_a_bad_setting_is_refused_by_name(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(environ={name: value})
    assert message in str(raised.value)
    assert str(raised.value).count("invalid") <= 1


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SWAPWATCH_SINK": "webhook:https://ops.example/hook"}, "did you mean SWAPWATCH_SINKS?"),
        ({"SWAPWATCH_PROT": "9000"}, "did you mean SWAPWATCH_PORT?"),
        ({"SWAPWATCH_XYZZY": "1"}, "(known: SWAPWATCH_HOST, SWAPWATCH_PORT,"),
    ],
)
def test_an_unknown_swapwatch_variable_names_the_closest_known_one(
    environ: dict[str, str], message: str
) -> None:
    name = next(iter(environ))
    with pytest.raises(ConfigError, match=f"unknown environment variable {name}") as raised:
        load_config(environ=environ)
    assert message in str(raised.value)


def test_a_variable_a_sink_reads_as_its_secret_is_not_unknown() -> None:
    sink = "webhook:https://ops.example/hook;secret=env:SWAPWATCH_HOOK_SECRET"
    environ = {"SWAPWATCH_SINKS": sink, "SWAPWATCH_HOOK_SECRET": "s3cret", "OTHER_TOOL": "x"}
    assert load_config(environ=environ).sinks == (sink,)


def test_an_unknown_file_key_names_the_closest_known_one(tmp_path: Path) -> None:
    path = tmp_path / "swapwatch.toml"
    path.write_text('sink = ["jsonl:-"]\n')
    with pytest.raises(ConfigError, match=r"unknown setting 'sink' \(did you mean 'sinks'\?\)"):
        load_config(path, environ={})


def test_serve_refuses_a_misspelled_variable_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from swapwatch.cli import serve
    from swapwatch.cli.main import main

    async def serve_nothing(config: object) -> int:  # stands in for the service, if it started
        return 0

    monkeypatch.setattr(serve, "serve", serve_nothing)
    monkeypatch.setenv("SWAPWATCH_SINK", "webhook:https://ops.example/hook")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "swapwatch: error: unknown environment variable SWAPWATCH_SINK "
        "(did you mean SWAPWATCH_SINKS?)"
    ]


def test_a_config_file_that_is_not_utf8_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    # Found by fuzzing: tomllib got bytes decoded as UTF-8 and the UnicodeDecodeError escaped.
    path = tmp_path / "swapwatch.toml"
    path.write_bytes('port = 9000\nhost = "caf\xe9"\n'.encode("latin-1"))
    proc = subprocess.run(
        [sys.executable, "-m", "swapwatch", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"swapwatch: error: config {path} is not UTF-8 text (byte 23); save it as UTF-8"
    ]
