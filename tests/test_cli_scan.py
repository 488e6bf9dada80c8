from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest
from damage import cut_before_frame
from media import Placement, write_video

from swapwatch.cli.main import main
from swapwatch.fusion import DecisionConfig

BIG = 300


def scan_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:  # type: ignore[type-arg]
    code = main(["scan", "--json", *args])
    out = capsys.readouterr().out
    assert code == 0
    return json.loads(out)  # type: ignore[no-any-return]


def test_two_faces_scored_under_stable_ids_with_fake_verdict(
    capsys: pytest.CaptureFixture[str], two_face_video: Path, fake_model: Path
) -> None:
    result = scan_json(capsys, str(two_face_video), "--model", str(fake_model))
    assert result["verdict"] == "fake"
    assert result["score"] == pytest.approx(1 / (1 + 2.718281828**-3), abs=1e-3)
    tracks = result["tracks"]
    assert [t["track_id"] for t in tracks] == [1, 2]
    for track in tracks:
        assert track["main"] and track["alarm"]
        assert track["frames_scored"] == 45  # 3 s at 15 Hz, every analysed frame scored
    assert {a["track_id"] for a in result["alerts"]} == {1, 2}
    # logit +3 a frame, 2.5 above k: the CUSUM reaches the default h at scored frame h / 2.5.
    frames_to_alarm = math.ceil(DecisionConfig().h / 2.5)
    expected = (frames_to_alarm - 1) / 15
    assert all(
        a["type"] == "alert.raised" and a["time"] == pytest.approx(expected, abs=1e-4)
        for a in result["alerts"]
    )
    assert result["frames"] == {
        "decoded": 90,
        "analysed": 45,
        "with_faces": 45,
        "faces_scored": 90,
        "skipped_by_stride": 45,
        "dropped": 0,
        "decode_errors": 0,
    }
    assert result["video"]["width"] == 1280 and result["video"]["fps"] == 30.0
    assert result["model"]["trained"] is False


def test_real_faces_give_real_and_no_alert(
    capsys: pytest.CaptureFixture[str], one_face_video: Path, real_model: Path
) -> None:
    result = scan_json(capsys, str(one_face_video), "--model", str(real_model))
    assert result["verdict"] == "real"
    assert result["score"] < 0.1
    assert result["alerts"] == []


def test_no_face_is_inconclusive_with_null_score(
    capsys: pytest.CaptureFixture[str], no_face_video: Path, fake_model: Path
) -> None:
    result = scan_json(capsys, str(no_face_video), "--model", str(fake_model))
    assert result["verdict"] == "inconclusive"
    assert result["score"] is None
    assert result["tracks"] == [] and result["frames"]["faces_scored"] == 0


def test_the_model_sees_the_face_crop(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, redness_model: Path
) -> None:
    natural = write_video(tmp_path / "natural.mp4", [Placement(0.5, 0.5, BIG)], seconds=2)
    blue = write_video(
        tmp_path / "blue.mp4", [Placement(0.5, 0.5, BIG, tint=(0.6, 0.9, 1.4))], seconds=2
    )
    natural_score = scan_json(capsys, str(natural), "--model", str(redness_model))["score"]
    blue_score = scan_json(capsys, str(blue), "--model", str(redness_model))["score"]
    assert natural_score > 0.75 and blue_score < 0.25


def test_every_frame_and_kyc_policy(
    capsys: pytest.CaptureFixture[str], one_face_video: Path, fake_model: Path
) -> None:
    result = scan_json(
        capsys,
        str(one_face_video),
        "--model",
        str(fake_model),
        "--every",
        "1",
        "--policy",
        "kyc",
        "--max-seconds",
        "2",
    )
    assert result["frames"]["analysed"] == 60 and result["policy"] == "kyc"
    assert result["tracks"][0]["frames_scored"] == 60


def test_human_summary_names_the_verdict(
    capsys: pytest.CaptureFixture[str], one_face_video: Path, fake_model: Path
) -> None:
    assert main(["scan", str(one_face_video), "--model", str(fake_model)]) == 0
    out = capsys.readouterr().out
    alarm_at = (math.ceil(DecisionConfig().h / 2.5) - 1) / 15  # see the test above
    assert "FAKE" in out and f"alert.raised face 1 at {alarm_at:.2f}s" in out


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [
        ("--max-turn", "0.001", "extreme_pose"),
        ("--min-brightness", "255", "too_dark"),
        ("--min-sharpness", "1e9", "too_blurred"),
        ("--min-face", "5000", "too_small"),
    ],
)
def test_the_quality_gate_options_skip_faces_and_say_why(
    capsys: pytest.CaptureFixture[str],
    one_face_video: Path,
    fake_model: Path,
    option: str,
    value: str,
    reason: str,
) -> None:
    # The test model calls every face fake; a face the gate turns away is never scored.
    args = [str(one_face_video), "--model", str(fake_model), "--max-seconds", "1"]
    assert scan_json(capsys, *args)["tracks"][0]["frames_scored"] == 15
    result = scan_json(capsys, *args, option, value)
    (track,) = result["tracks"]
    assert track["frames_scored"] == 0 and track["frames_skipped"] == {reason: 15}
    assert result["verdict"] == "inconclusive" and result["alerts"] == []


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--max-turn", "120", "must be above 0 and at most 90 degrees"),
        ("--max-turn", "0", "must be above 0 and at most 90 degrees"),
        ("--max-yaw", "0.85", "was replaced by --max-turn DEGREES: 0.85 was a turn of about 30"),
        ("--min-brightness", "-1", "must be within 0-255"),
        ("--min-sharpness", "-2", "must not be negative"),
        ("--min-face", "wide", "not a number"),
        ("--min-sharpness", "inf", "not a finite number"),
    ],
)
def test_a_bad_quality_gate_option_is_refused(
    capsys: pytest.CaptureFixture[str], one_face_video: Path, option: str, value: str, message: str
) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["scan", str(one_face_video), option, value])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and message in err and "Traceback" not in err


def test_a_turn_gate_under_a_degree_runs_but_says_it_looks_like_the_old_ratio(
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    one_face_video: Path,
    fake_model: Path,
) -> None:
    args = [str(one_face_video), "--model", str(fake_model), "--max-seconds", "1"]
    with caplog.at_level(logging.WARNING):
        (track,) = scan_json(capsys, *args, "--max-turn", "0.85")["tracks"]
    assert track["frames_skipped"]["extreme_pose"] > 0  # taken as degrees, as asked
    assert "max_turn 0.85 is in degrees of head turn" in caplog.text
    assert "0.85 was about 30 degrees" in caplog.text


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["scan", "/nonexistent/clip.mp4"], 3, "no such file"),
        (["scan", "foo://bar"], 3, "unsupported URL scheme"),
        (["scan", "{video}", "--model", "/nonexistent/model.onnx"], 4, "model file not found"),
        (["scan", "{text}", "--model", "{model}"], 3, "not a readable video"),
        (["scan", "{video}", "--model", "{text}"], 4, "cannot load model"),
        (["scan", "rtsp://127.0.0.1:99999/x", "--model", "{model}"], 3, "malformed URL"),
        (["scan", "rtsp://[::1/x", "--model", "{model}"], 3, "malformed URL"),
        (["scan", "b" * 300 + ".mp4", "--model", "{model}"], 3, "File name too long"),
    ],
)
def test_bad_input_gives_one_line_and_an_exit_code(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    one_face_video: Path,
    fake_model: Path,
    args: list[str],
    code: int,
    message: str,
) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    filled = [a.format(video=one_face_video, model=fake_model, text=text) for a in args]
    assert main(filled) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("swapwatch: error: ") and message in err[-1]
    assert not any("Traceback" in line for line in err)


def test_missing_trained_model_is_stated_plainly(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    one_face_video: Path,
) -> None:
    import swapwatch.models as models

    monkeypatch.setattr(models, "DEFAULT_DETECTOR", tmp_path / "absent.onnx")
    assert main(["scan", str(one_face_video)]) == 4
    assert "no trained detector model is installed" in capsys.readouterr().err


def test_the_installed_command_and_python_m_agree(one_face_video: Path, fake_model: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "swapwatch",
            "scan",
            str(one_face_video),
            "--model",
            str(fake_model),
            "--json",
            "--max-seconds",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["verdict"] == "fake"
    # Native MediaPipe/LiteRT chatter stays off the user's terminal.
    assert proc.stderr.strip().splitlines() == [
        "swapwatch: warning: always_fake.onnx is not a trained detector; its scores mean nothing"
    ]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d, v: cut_before_frame(v, d / "cut.mp4", 10), "ended after 10 of its 60 frames"),
        (lambda d, v: _text_file(d / "notes.txt"), "is text (FFmpeg reads it as 'ansi')"),
    ],
    ids=["stops-early", "text"],
)
def test_a_damaged_or_text_file_exits_3_with_one_line_and_no_verdict(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    no_face_video: Path,
    fake_model: Path,
    damage,  # type: ignore[no-untyped-def]
    message: str,
) -> None:
    path = damage(tmp_path, no_face_video)
    assert main(["scan", str(path), "--model", str(fake_model), "--json"]) == 3
    captured = capsys.readouterr()
    assert captured.out == ""  # no inconclusive verdict that reads like a clean result
    errors = [line for line in captured.err.splitlines() if line.startswith("swapwatch: error")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in captured.err


def _text_file(dst: Path) -> Path:
    dst.write_text("hello, this is not a video\n" * 20)
    return dst


def test_a_cut_webm_exits_3_and_gives_no_verdict(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, fake_model: Path
) -> None:
    # Found by fuzzing: WebM announces no frame count and only the file's duration, so a VP8
    # file cut at 7 of its 15 frames passed with exit 0 and a verdict.
    clip = write_video(
        tmp_path / "clip.webm", [Placement(0.5, 0.5, 160)], 1.0, 15, (320, 240), codec="libvpx"
    )
    data = clip.read_bytes()
    cut = tmp_path / "cut.webm"
    cut.write_bytes(data[: int(len(data) * 0.875)])
    assert main(["scan", str(cut), "--model", str(fake_model), "--json"]) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "corrupt or truncated video" in captured.err and "of its 1.00s" in captured.err
