"""Service settings: the sectioned file, SWAPWATCH_* variables, the old flat keys, and refusals
that name the setting."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from swapwatch.errors import ConfigError
from swapwatch.faces.quality import QualityConfig
from swapwatch.fusion import Policy
from swapwatch.server.config import ServiceConfig, public_view
from swapwatch.server.config_sources import LEGACY_KEYS, env_name, leaf_types, load_config

REPO = Path(__file__).parents[1]
EXAMPLE = REPO / "deploy" / "swapwatch.example.toml"


def test_a_list_setting_splits_on_commas() -> None:
    config = load_config(
        environ={"SWAPWATCH_HTTP_CORS_ORIGINS": "https://a.example, https://b.example,"}
    )
    assert config.http.cors_origins == ("https://a.example", "https://b.example")


def test_a_json_array_keeps_the_commas_inside_its_items() -> None:
    kafka = "kafka:b1:9092,b2:9092;topic=swapwatch"
    webhook = "webhook:https://ops.example/hook?a=1,2;secret=env:HOOK"
    config = load_config(environ={"SWAPWATCH_EVENTS_SINKS": f'["{kafka}", "{webhook}"]'})
    assert config.events.sinks == (kafka, webhook)


def test_a_json_array_reads_like_the_comma_form() -> None:
    config = load_config(
        environ={
            "SWAPWATCH_INGEST_RTMP_PORTS": "[19350, 19449]",
            "SWAPWATCH_HTTP_CORS_ORIGINS": '[" https://a.example ", ""]',
        }
    )
    assert config.ingest.rtmp.ports == (19350, 19449)
    assert config.http.cors_origins == ("https://a.example",)


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
    with pytest.raises(ConfigError) as raised:
        load_config(environ={"SWAPWATCH_EVENTS_SINKS": value})
    assert "environment SWAPWATCH_EVENTS_SINKS: events.sinks = <hidden>" in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_a_short_token_is_refused_without_being_shown() -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(environ={"SWAPWATCH_AUTH_TOKEN": "hunter2"})
    assert "auth.token = <hidden>" in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_the_quality_gate_is_set_from_the_environment() -> None:
    config = load_config(
        environ={
            "SWAPWATCH_ANALYSIS_QUALITY_MIN_FACE_PX": "96",
            "SWAPWATCH_ANALYSIS_QUALITY_MAX_TURN": "45",
            "SWAPWATCH_ANALYSIS_QUALITY_MIN_BRIGHTNESS": "20",
            "SWAPWATCH_ANALYSIS_QUALITY_MIN_SHARPNESS": "0",
        }
    )
    gate = config.analysis.quality.gate
    assert (gate.min_face_px, gate.max_turn, gate.min_brightness, gate.min_sharpness) == (
        96.0,
        45.0,
        20.0,
        0.0,
    )
    assert load_config(environ={}).analysis.quality.gate == QualityConfig()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SWAPWATCH_ANALYSIS_QUALITY_MAX_TURN", "120", "analysis.quality.max_turn = '120'"),
        ("SWAPWATCH_ANALYSIS_QUALITY_MAX_TURN", "0", "analysis.quality.max_turn = '0'"),
        ("SWAPWATCH_ANALYSIS_QUALITY_MIN_FACE_PX", "-5", "min_face_px = '-5': Input should be"),
        ("SWAPWATCH_ANALYSIS_QUALITY_MIN_BRIGHTNESS", "300", "less than or equal to 255"),
        ("SWAPWATCH_ANALYSIS_QUALITY_MIN_SHARPNESS", "lots", "min_sharpness = 'lots'"),
        ("SWAPWATCH_ANALYSIS_QUALITY_MIN_FACE_PX", "inf", "should be a finite number"),
        ("SWAPWATCH_ANALYSIS_CUSUM_H", "nan", "analysis.cusum_h = 'nan'"),  # never alarms
        ("SWAPWATCH_ANALYSIS_CUSUM_H", "-1", "analysis.cusum_h = '-1': Input should be greater"),
        ("SWAPWATCH_ANALYSIS_RATE", "nan", "analysis.rate = 'nan'"),
        ("SWAPWATCH_ANALYSIS_POLICY", "strict", "'kyc' or 'monitoring'"),
        ("SWAPWATCH_ENGINE_MAX_BATCH", "0", "engine.max_batch = '0'"),
        ("SWAPWATCH_ENGINE_THREADS", "0", "engine.threads = '0'"),
        ("SWAPWATCH_ENGINE_DEVICE", "tpu", "'auto', 'cpu', 'gpu' or 'tensorrt'"),
        ("SWAPWATCH_INGEST_READ_TIMEOUT_S", "-5", "ingest.read_timeout_s = '-5'"),
        ("SWAPWATCH_INGEST_RECONNECT_MAX_S", "0.5", "reconnect_initial_s must be <="),
        ("SWAPWATCH_INGEST_RTMP_PORTS", "19449,19350", "ports [19449, 19350] is not a range"),
        ("SWAPWATCH_LIMITS_DRAIN_TIMEOUT_S", "-1", "limits.drain_timeout_s = '-1'"),
        ("SWAPWATCH_HTTP_MAX_BODY_BYTES", "-1", "http.max_body_bytes = '-1'"),
        ("SWAPWATCH_HTTP_PORT", "70000", "http.port = '70000'"),
        ("SWAPWATCH_HTTP_HOST", "0.0.0.0", "reachable from other machines: set auth.token"),
        (
            "SWAPWATCH_INGEST_RTMP_PUBLIC_HOST",
            "rtmp://ingest.example/live",
            "'rtmp://ingest.example/live' is not a host name or IP address",
        ),
    ],
)
def test_a_bad_setting_is_refused_by_name(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(environ={name: value})
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
    assert str(raised.value).count("invalid") <= 1


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SWAPWATCH_EVENTS_SINK": "webhook:https://h/"}, "did you mean SWAPWATCH_EVENTS_SINKS?"),
        ({"SWAPWATCH_HTTP_PROT": "9000"}, "did you mean SWAPWATCH_HTTP_PORT?"),
        ({"SWAPWATCH_XYZZY": "1"}, "(known: SWAPWATCH_HTTP_HOST, SWAPWATCH_HTTP_PORT,"),
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
    environ = {"SWAPWATCH_EVENTS_SINKS": sink, "SWAPWATCH_HOOK_SECRET": "s3cret", "OTHER": "x"}
    assert load_config(environ=environ).events.sinks == (sink,)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[events]\nsink = ["jsonl:-"]\n',
            r"unknown setting 'events\.sink' \(did you mean 'events\.sinks'\?\)",
        ),
        ("[http]\nprot = 9000\n", r"unknown setting 'http\.prot' \(did you mean 'http\.port'\?\)"),
        ('sink = ["jsonl:-"]\n', r"unknown setting 'sink' \(did you mean 'events\.sinks'\?\)"),
        (
            "[ingest.rtmp]\nport = [1, 2]\n",
            r"'ingest\.rtmp\.port' \(did you mean 'ingest\.rtmp\.ports'",
        ),
        ("[enigne]\ntype = 'x'\n", r"unknown setting 'enigne' \(did you mean 'engine'"),
        ("http = 9000\n", r"http must be a table"),
    ],
)
def test_an_unknown_file_key_is_refused_by_its_dotted_name(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "swapwatch.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={})


def test_the_example_file_loads_and_lists_every_setting() -> None:
    config = load_config(EXAMPLE, environ={"SWAPWATCH_AUTH_TOKEN": "x" * 32})
    assert config.http.port == 8080 and config.ingest.rtmp.ports == (19350, 19449)
    assert config.analysis.policy is Policy.MONITORING
    assert config.engine.tensorrt.fp16 is True and config.decode.hwaccel is None
    # Every setting is in the example (commented out where the default stands), so that it
    # documents them all.
    assert _in_sections(EXAMPLE) == set(leaf_types())


def _in_sections(path: Path) -> set[str]:
    """Dotted keys of the example's lines, commented out or not."""
    section = ""
    found = set()
    for line in path.read_text().splitlines():
        text = line.removeprefix("# ").split(" #")[0].strip()
        if re.fullmatch(r"\[[a-z_.]+\]", text):
            section = text.strip("[]") + "."
        elif key := re.match(r"([a-z0-9_]+) = ", text):
            found.add(section + key.group(1))
    return found


def test_the_flat_keys_of_earlier_releases_still_load_and_name_their_new_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "old.toml"
    path.write_text('port = 9000\nengine = "onnxruntime"\nmin_face_px = 96\nsinks = ["jsonl:-"]\n')
    with caplog.at_level(logging.WARNING):
        config = load_config(path, environ={"SWAPWATCH_RTMP_PORTS": "20000,20010"})
    assert config.http.port == 9000 and config.engine.type == "onnxruntime"
    assert config.analysis.quality.min_face_px == 96 and config.events.sinks == ("jsonl:-",)
    assert config.ingest.rtmp.ports == (20000, 20010)
    warned = caplog.text
    assert "'port' is deprecated: write 'http.port' instead" in warned
    assert "'min_face_px' is deprecated: write 'analysis.quality.min_face_px' instead" in warned
    assert "SWAPWATCH_RTMP_PORTS is deprecated: set SWAPWATCH_INGEST_RTMP_PORTS instead" in warned


@pytest.mark.parametrize(
    ("text", "environ", "overrides", "named"),
    [
        ("[analysis.quality]\nmax_yaw = 0.85\n", {}, {}, "analysis.quality.max_yaw"),
        ("max_yaw = 0.85\n", {}, {}, "max_yaw"),
        ("", {"SWAPWATCH_ANALYSIS_QUALITY_MAX_YAW": "0.85"}, {}, "analysis.quality.max_yaw"),
        ("", {"SWAPWATCH_MAX_YAW": "0.85"}, {}, "max_yaw"),
        ("", {}, {"analysis.quality.max_yaw": 0.85}, "analysis.quality.max_yaw"),
    ],
)
def test_the_replaced_yaw_ratio_gate_is_refused_with_its_new_unit(
    tmp_path: Path, text: str, environ: dict[str, str], overrides: dict[str, float], named: str
) -> None:
    """Renaming the key alone would read 0.85 as degrees and skip every face: the refusal says
    the unit changed, wherever the old setting came from."""
    path = tmp_path / "old.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_config(path, environ=environ, overrides=overrides)
    assert f"{named} (the nose's offset between the cheeks, 0-1) was replaced by " in str(
        refused.value
    )
    assert "analysis.quality.max_turn, in degrees" in str(refused.value)
    assert "0.85 was a turn of about 30" in str(refused.value)


def test_a_turn_gate_under_a_degree_is_taken_but_named_as_a_likely_ratio(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "pasted.toml"
    path.write_text("[analysis.quality]\nmax_turn = 0.85\n")
    with caplog.at_level(logging.WARNING):
        assert load_config(path, environ={}).analysis.quality.gate.max_turn == 0.85
    assert "max_turn 0.85 is in degrees of head turn: under 1 it skips nearly every face" in (
        caplog.text
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_config(None, environ={"SWAPWATCH_ANALYSIS_QUALITY_MAX_TURN": "45"})
    assert "max_turn" not in caplog.text


def test_every_setting_has_one_variable_a_description_and_an_old_key_maps_to_a_setting() -> None:
    kinds = leaf_types()
    names = [env_name(key) for key in kinds]
    assert len(set(names)) == len(names)
    assert set(LEGACY_KEYS.values()) <= set(kinds)

    def undescribed(model: type[ServiceConfig] | type, prefix: str = "") -> list[str]:
        missing = []
        for name, field in model.model_fields.items():
            kind = field.annotation
            if isinstance(kind, type) and hasattr(kind, "model_fields"):
                missing += undescribed(kind, f"{prefix}{name}.")
            elif not field.description:
                missing.append(prefix + name)
        return missing

    assert undescribed(ServiceConfig) == []


def test_options_override_the_file_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "swapwatch.toml"
    path.write_text(
        "[http]\nport = 9000\n[decode]\nhwaccel = 'cuda'\n[ingest.nginx_rtmp]\nurl = 'none'\n"
    )
    config = load_config(
        path, environ={"SWAPWATCH_HTTP_PORT": "9001"}, overrides={"http.port": 9002}
    )
    assert config.http.port == 9002 and config.decode.hwaccel == "cuda"
    assert config.ingest.nginx_rtmp.url is None  # TOML has no null: "none" unsets it


def test_the_public_view_hides_the_token_and_sink_targets() -> None:
    config = ServiceConfig(
        auth={"token": "t" * 20}, events={"sinks": ("webhook:https://u:pw@h/x;secret=s",)}
    )
    view = public_view(config)
    assert view["auth"]["token"] == "***" and view["events"]["sinks"] == ["webhook:***"]
    assert "pw@" not in str(view) and "t" * 20 not in str(view)


def test_serve_refuses_a_misspelled_variable_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from swapwatch.cli import serve
    from swapwatch.cli.main import main

    async def serve_nothing(config: object, **_: object) -> int:  # the service, had it started
        return 0

    monkeypatch.setattr(serve, "serve", serve_nothing)
    monkeypatch.setenv("SWAPWATCH_EVENTS_SINK", "webhook:https://ops.example/hook")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "swapwatch: error: unknown environment variable SWAPWATCH_EVENTS_SINK "
        "(did you mean SWAPWATCH_EVENTS_SINKS?)"
    ]


def test_serve_refuses_an_unknown_file_key_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "swapwatch.toml"
    path.write_text("[limits]\nmax_stream = 4\n")
    proc = subprocess.run(
        [sys.executable, "-m", "swapwatch", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"swapwatch: error: {path}: unknown setting 'limits.max_stream' "
        "(did you mean 'limits.max_streams'?)"
    ]


def test_a_config_file_that_is_not_utf8_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    # Found by fuzzing: tomllib got bytes decoded as UTF-8 and the UnicodeDecodeError escaped.
    path = tmp_path / "swapwatch.toml"
    path.write_bytes('[http]\nport = 9000\nhost = "caf\xe9"\n'.encode("latin-1"))
    proc = subprocess.run(
        [sys.executable, "-m", "swapwatch", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"swapwatch: error: config {path} is not UTF-8 text (byte 30); save it as UTF-8"
    ]
