"""`swapwatch eval` end to end on media the tests make, with the colour-reading test model."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
from av.video.frame import PictureType
from media import Placement, render_frame, write_linear_model, write_video

from swapwatch.cli.main import main
from swapwatch.evaluation.runner import Reencoder, reencode

BIG = 300
BLUE = (0.6, 0.9, 1.4)  # the redness model calls a blue-tinted face real, a natural one fake


@pytest.fixture(scope="module")
def media_list(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("eval")
    size = (1280, 720)
    write_video(folder / "natural.mp4", [Placement(0.5, 0.5, BIG)], seconds=1, size=size)
    write_video(folder / "blue.mp4", [Placement(0.5, 0.5, BIG, tint=BLUE)], seconds=1, size=size)
    # Side by side: the left half real (blue), the right half fake (natural).
    write_video(
        folder / "pair.mp4",
        [Placement(0.25, 0.5, BIG, tint=BLUE), Placement(0.75, 0.5, BIG)],
        seconds=1,
        size=size,
    )
    write_video(folder / "empty.mp4", [], seconds=1)
    picture = render_frame(700, 700, [Placement(0.5, 0.5, 500, sway=0, tint=BLUE)], 0.0)
    cv2.imwrite(str(folder / "photo.png"), picture[:, :, ::-1])
    listing = folder / "list.csv"
    listing.write_text(
        "file,label,group,family\n"
        "natural.mp4,fake,g1,swap\n"
        "blue.mp4,real,g2,swap\n"
        "pair.mp4,pair,g3,swap\n"
        "blue.mp4,real,g4,camera\n"
        "empty.mp4,real,g5,camera\n"
        "photo.png,real,g6,photos\n"
    )
    return listing


def eval_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code = main(["eval", *args, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)  # type: ignore[no-any-return]


def test_report_keys_and_counts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, media_list: Path, redness_model: Path
) -> None:
    out = tmp_path / "report.json"
    report = eval_json(
        capsys,
        str(media_list),
        "--model",
        str(redness_model),
        "--bootstrap",
        "200",
        "--cusum-h",
        "11",  # one-second clips: a threshold they can reach
        "--out",
        str(out),
    )
    assert json.loads(out.read_text()) == report
    assert {
        "model",
        "analysis",
        "bootstrap",
        "counts",
        "pooled",
        "families",
        "items",
        "list",
        "split",
    } <= set(report)
    assert report["analysis"]["rate"] == 15.0 and report["analysis"]["reencode_kbps"] is None
    counts = report["counts"]
    assert (counts["total"], counts["real"], counts["fake"], counts["groups"]) == (7, 5, 2, 6)
    assert (counts["scored"], counts["no_face"], counts["inconclusive"], counts["error"]) == (
        6,
        1,
        0,
        0,
    )
    items = {(i["name"], i["family"]): i for i in report["items"]}
    assert items[("pair.mp4#left", "swap")]["verdict"] == "real"
    assert items[("pair.mp4#right", "swap")]["verdict"] == "fake"
    assert items[("photo.png", "photos")]["kind"] == "picture"
    assert items[("photo.png", "photos")]["faces_scored"] == 1
    assert items[("empty.mp4", "camera")]["status"] == "no_face"
    # 1 s at 15 fps: 15 analysed frames, a face in each.
    assert items[("natural.mp4", "swap")]["faces_scored"] == 15
    assert len(items[("natural.mp4", "swap")]["frame_logits"]) == 15
    # The rate the operating point turns into hours: 15 frames span 14 intervals.
    assert items[("natural.mp4", "swap")]["analysis_rate"] == pytest.approx(15.0, abs=0.01)

    pooled = report["pooled"]
    assert pooled["video"]["samples"] == {"real": 4, "fake": 2}
    assert pooled["video"]["auc"]["value"] == 1.0 and pooled["video"]["auc"]["ci"] == [1.0, 1.0]
    assert pooled["frame"]["samples"] == {"real": 46, "fake": 30}
    assert pooled["frame"]["auc"]["value"] == 1.0
    assert pooled["video"]["at_threshold"]["apcer"]["value"] == 0.0
    assert pooled["video"]["at_threshold"]["bpcer"]["value"] == 0.0
    assert set(report["families"]) == {"camera", "photos", "swap"}
    camera = report["families"]["camera"]
    assert camera["video"]["auc"]["value"] is None  # reals only
    assert camera["video"]["at_threshold"]["bpcer"]["value"] == 0.0
    assert camera["alarms"]["real_videos"] == 2 and camera["alarms"]["raised_on_real"] == 0
    # The fakes alarm (CUSUM at +logit per frame), the reals never do.
    assert items[("natural.mp4", "swap")]["alarms_raised"] == 1
    assert pooled["alarms"]["raised_on_real"] == 0 and pooled["alarms"]["real_videos"] == 4


def test_the_quality_gate_options_apply_to_every_item(
    capsys: pytest.CaptureFixture[str], media_list: Path, redness_model: Path
) -> None:
    common = [str(media_list), "--model", str(redness_model), "--family", "swap", "--limit", "2"]
    report = eval_json(capsys, *common, "--bootstrap", "0", "--min-brightness", "250")
    assert report["analysis"]["quality_gate"]["min_brightness"] == 250.0
    assert report["analysis"]["quality_gate"]["max_turn"] == 40.0  # the others keep defaults
    # Every face is darker than that: nothing is scored, and no item is called either way.
    assert [i["faces_scored"] for i in report["items"]] == [0, 0]
    assert [i["status"] for i in report["items"]] == ["no_face", "no_face"]  # none analysable


def test_text_table_filters_and_progress(
    capsys: pytest.CaptureFixture[str], media_list: Path, redness_model: Path
) -> None:
    code = main(
        ["eval", str(media_list), "--model", str(redness_model), "--family", "swap", "--limit", "2"]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert "pooled: 1 real / 1 fake items" in captured.out and "family swap" in captured.out
    assert "AUC" in captured.out and "BPCER@APCER=5%" in captured.out
    progress = [line for line in captured.err.splitlines() if line.startswith("[")]
    assert len(progress) == 2 and progress[0].startswith("[1/2] natural.mp4 (fake, swap): fake")


def test_reencoded_recordings_are_still_scored(
    capsys: pytest.CaptureFixture[str], media_list: Path, redness_model: Path
) -> None:
    report = eval_json(
        capsys,
        str(media_list),
        "--model",
        str(redness_model),
        "--family",
        "swap",
        "--reencode-kbps",
        "300",
        "--every",
        "1",  # all 30 frames: at 300 kbit/s a few 720p frames fall under the blur gate
        "--bootstrap",
        "0",
    )
    assert report["analysis"]["reencode_kbps"] == 300
    assert [i["status"] for i in report["items"]] == ["scored"] * 4
    assert [i["verdict"] for i in report["items"]] == ["fake", "real", "real", "fake"]
    assert report["pooled"]["video"]["auc"] == {"value": 1.0, "ci": None}


def test_reencode_keeps_size_and_frames(tmp_path: Path, media_list: Path) -> None:
    source = media_list.parent / "pair.mp4"
    target = tmp_path / "pair.300k.mp4"
    reencode(source, target, 300)
    with av.open(str(source)) as a, av.open(str(target)) as b:
        sa, sb = a.streams.video[0], b.streams.video[0]
        assert (sb.codec_context.name, sb.width, sb.height) == ("h264", sa.width, sa.height)
        assert sum(1 for _ in b.decode(sb)) == sum(1 for _ in a.decode(sa))
    # eval --max-seconds reads only the start: only the start is encoded (30 fps).
    reencode(source, target, 300, max_seconds=0.5)
    with av.open(str(target)) as b:
        assert sum(1 for _ in b.decode(b.streams.video[0])) == 16
    with Reencoder(300) as reencoder:
        first = reencoder.get(source)
        assert reencoder.get(source) == first  # both halves of a pair share one encode
        other = reencoder.get(media_list.parent / "blue.mp4")
        assert other != first and not first.exists() and other.exists()
    assert not other.exists()


@pytest.mark.parametrize(
    ("pix_fmt", "bt709"),
    [("yuv420p", False), ("yuvj420p", False), ("yuv420p", True)],
    ids=["limited-range", "full-range", "bt709-tagged"],
)
def test_reencode_keeps_levels_and_colours(tmp_path: Path, pix_fmt: str, bt709: bool) -> None:
    # Only the codec may change the picture, so that a low-bitrate run measures compression and
    # nothing else: a full-range (yuvj420p) recording must keep its levels, and an HD-tagged
    # one its colour matrix.
    source = write_video(
        tmp_path / "source.mp4",
        [Placement(0.5, 0.5, BIG, tint=(1.3, 0.8, 0.6))],  # saturated: a wrong matrix shows
        seconds=0.5,
        pix_fmt=pix_fmt,
        bt709=bt709,
    )
    target = tmp_path / "source.8000k.mp4"
    reencode(source, target, 8000)
    with av.open(str(source)) as a, av.open(str(target)) as b:
        assert a.streams.video[0].codec_context.pix_fmt == pix_fmt
        pairs = zip(a.decode(video=0), b.decode(video=0), strict=True)
        errors = [
            np.abs(x.to_ndarray(format="rgb24") - y.to_ndarray(format="rgb24").astype(np.int16))
            for x, y in pairs
        ]
    # Measured mean error /255 at 8000 kbit/s: 0.02 limited, 0.9 full range (its 256 levels
    # squeezed into 220); with stretched levels 12, decoded with the wrong matrix 1.7.
    assert float(np.mean([e.mean() for e in errors])) < 1.25


def grating(width: int, height: int, phase: float) -> np.ndarray:
    """A fine diagonal pattern: any resampling puts it out of phase."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    luma = 128 + 90 * np.sin(2 * np.pi * (x / 7 + y / 11) + phase)
    return np.repeat(luma.astype(np.uint8)[:, :, None], 3, axis=2)


def crop_error(source: Path, target: Path) -> list[float]:
    """Mean error /255 of each re-encoded frame against the top-left of its source frame (NaN
    where the source frame is the smaller)."""
    with av.open(str(source)) as a, av.open(str(target)) as b:
        errors = []
        for x, y in zip(a.decode(video=0), b.decode(video=0), strict=True):
            picture = y.to_ndarray(format="rgb24")
            original = x.to_ndarray(format="rgb24")[: picture.shape[0], : picture.shape[1]]
            if original.shape != picture.shape:
                errors.append(math.nan)
                continue
            errors.append(float(np.abs(original.astype(np.int16) - picture).mean()))
    return errors


@pytest.mark.parametrize("pix_fmt", ["yuv444p", "yuv420p"])
def test_reencode_crops_an_odd_sized_picture_instead_of_rescaling_it(
    tmp_path: Path, pix_fmt: str
) -> None:
    source = tmp_path / "odd.avi"  # lossless, and 321 x 241: H.264 4:2:0 cannot carry it
    with av.open(str(source), "w") as writer:
        stream = writer.add_stream("ffv1", rate=15)
        stream.width, stream.height, stream.pix_fmt = 321, 241, pix_fmt
        for i in range(6):
            writer.mux(stream.encode(av.VideoFrame.from_ndarray(grating(321, 241, 0.3 * i))))
        writer.mux(stream.encode())
    target = tmp_path / "odd.8000k.mp4"
    reencode(source, target, 8000)
    with av.open(str(target)) as b:
        assert (b.streams.video[0].width, b.streams.video[0].height) == (320, 240)
    # Measured mean error /255: about 1 cropped; 39 rescaled by the one pixel (every column
    # moves a little, and the fine pattern comes out of phase).
    assert float(np.mean(crop_error(source, target))) < 4


def test_reencode_follows_a_stream_whose_picture_size_changes(tmp_path: Path) -> None:
    # As an adaptive stream's recording does: 321 x 241, then 641 x 481, in one H.264 stream.
    parts = []
    for width, height in ((321, 241), (641, 481)):
        part = tmp_path / f"{width}.h264"
        with av.open(str(part), "w", format="h264") as writer:
            stream = writer.add_stream("libx264", rate=15)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p"
            stream.options = {"qp": "0"}  # lossless
            for i in range(4):
                picture = grating(width, height, 0.3 * i)
                writer.mux(stream.encode(av.VideoFrame.from_ndarray(picture)))
            writer.mux(stream.encode())
        parts.append(part.read_bytes())
    source = tmp_path / "joined.h264"
    source.write_bytes(b"".join(parts))
    target = tmp_path / "joined.8000k.mp4"
    reencode(source, target, 8000)
    with av.open(str(target)) as b:
        sizes = {(f.width, f.height) for f in b.decode(video=0)}
    assert len(sizes) == 1  # one output size; the frames of the other size are rescaled to it
    errors = crop_error(source, target)
    assert len(errors) == 8
    if sizes == {(640, 480)}:
        assert max(errors[4:]) < 4  # the large frames are cropped, not rescaled
    else:
        assert max(errors[:4]) < 4


@pytest.mark.parametrize(
    ("rows", "extra", "message"),
    [
        ("file,label\nmissing.mp4,real\n", [], "no such file"),
        ("file,label\nblue.mp4,maybe\n", [], "label must be real, fake or pair"),
        ("name,kind\nblue.mp4,real\n", [], "needs 'file' (or 'path') and 'label' columns"),
        ("file,label\nblue.mp4,real\n", ["--family", "nosuch"], "no family nosuch"),
        ("file,label\nblue.mp4,real\n", ["--split", "validation"], "no items to evaluate"),
    ],
)
def test_bad_list_gives_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
    media_list: Path,
    redness_model: Path,
    rows: str,
    extra: list[str],
    message: str,
) -> None:
    listing = media_list.parent / "bad.csv"
    listing.write_text(rows)
    assert main(["eval", str(listing), "--model", str(redness_model), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("swapwatch: error: ") and message in err[0]


@pytest.mark.parametrize("command", ["eval", "scan"])
def test_a_model_giving_nan_stops_at_the_first_face(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, media_list: Path, command: str
) -> None:
    # Clipped evidence would read a NaN as a certain fake: a broken export must not pass for
    # a detector that flags everything.
    broken = write_linear_model(tmp_path / "nan.onnx", bias=math.nan)
    target = media_list if command == "eval" else media_list.parent / "blue.mp4"
    assert main([command, str(target), "--model", str(broken)]) == 4
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert err[-1].startswith("swapwatch: error: ") and "non-finite logit" in err[-1]
    assert "fake" not in captured.out and "alarm" not in captured.out


def test_a_list_nothing_of_which_can_be_read_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, media_list: Path, redness_model: Path
) -> None:
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    listing = tmp_path / "list.csv"
    listing.write_text("file,label\nbroken.mp4,real\nbroken.png,fake\n")
    assert main(["eval", str(listing), "--model", str(redness_model)]) == 3
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines()[-1] == (
        "swapwatch: error: none of the 2 items could be read"
    )
    for name in ("broken.mp4", "broken.png"):
        lines = [line for line in captured.err.splitlines() if name in line]
        assert len(lines) == 1  # its progress line only, not a log line too
        assert f"unreadable: {name}: " in captured.out
    # One readable item is enough for a report.
    listing.write_text(f"file,label\nbroken.mp4,real\n{media_list.parent / 'blue.mp4'},real\n")
    assert main(["eval", str(listing), "--model", str(redness_model)]) == 0


def write_tint_video(path: Path, tint_at: Any, seconds: float, fps: int = 30) -> Path:
    """A 640x360 clip of one face whose tint may change over time (`tint_at(t)`)."""
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = 640, 360
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        for i in range(int(seconds * fps)):
            t = i / fps
            image = render_frame(640, 360, [Placement(0.5, 0.5, 220, tint=tint_at(t))], t)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def traffic_list(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real traffic the redness model mostly calls real, with one second it calls fake (as a
    detector's false evidence comes: in stretches), and a swap it calls fake throughout."""
    folder = tmp_path_factory.mktemp("traffic")
    write_tint_video(
        folder / "real.mp4", lambda t: (1.0, 1.0, 1.0) if 2.0 <= t < 3.0 else BLUE, seconds=5
    )
    write_tint_video(folder / "blue.mp4", lambda t: BLUE, seconds=3)
    write_tint_video(folder / "swap.mp4", lambda t: (1.0, 1.0, 1.0), seconds=3)
    listing = folder / "list.csv"
    listing.write_text(
        "file,label,group\nreal.mp4,real,a\nblue.mp4,real,b\nswap.mp4,fake,c\n", encoding="utf-8"
    )
    return listing


def test_eval_recommends_the_smallest_h_its_real_traffic_does_not_reach(
    capsys: pytest.CaptureFixture[str], traffic_list: Path, redness_model: Path
) -> None:
    from swapwatch.evaluation.operating_point import cusum, excursion_peaks

    common = [str(traffic_list), "--model", str(redness_model), "--bootstrap", "0"]
    report = eval_json(capsys, *common, "--false-alarms-per-hour", "0.1")
    point = report["operating_point"]
    assert point["false_alarm_budget_per_hour"] == 0.1
    assert (point["real_recordings"], point["real_tracks"], point["fake_tracks"]) == (2, 2, 1)
    assert 7.5 <= point["real_track_seconds"] <= 8.0  # 5 s + 3 s, less frames the tracker starts on
    assert point["enough_real_footage"] is False
    items = {i["name"]: i for i in report["items"]}
    real_peak = max(
        excursion_peaks(cusum(np.asarray(t), 0.5)).max(initial=0.0)
        for t in items["real.mp4"]["track_evidence"]
    )
    # The false stretch recurs in every synthetic hour, far more often than 0.1 per hour: the
    # recommended h must sit above the highest excursion the real traffic made.
    h = point["recommended_h"]
    assert real_peak > 10 and h > real_peak
    assert point["at_recommended_h"]["real_tracks_alarmed"] == 0
    assert point["recommended_h"] == max(point["bounds"].values())
    assert point["at_recommended_h"]["fake_tracks_alarmed"] == 1.0

    at_h = eval_json(capsys, *common, "--cusum-h", str(h))
    alarms = {i["name"]: i["alarms_raised"] for i in at_h["items"]}
    assert alarms == {"real.mp4": 0, "blue.mp4": 0, "swap.mp4": 1}
    below = eval_json(capsys, *common, "--cusum-h", str(real_peak - 1))
    assert {i["name"]: i["alarms_raised"] for i in below["items"]}["real.mp4"] == 1

    # A looser budget never asks for a higher h.
    loose = eval_json(capsys, *common, "--false-alarms-per-hour", "50")
    assert loose["operating_point"]["recommended_h"] <= h

    video = point["video"]
    highest = max(items["real.mp4"]["score"], items["blue.mp4"]["score"])
    assert video["highest_real_score"] == pytest.approx(highest, abs=1e-4)
    assert highest < video["threshold"] <= highest + 0.05 + 1e-9
    assert (video["fakes_at_or_above"], video["fakes"]) == (1, 1)


def test_each_recording_keeps_when_its_track_scored_what(
    capsys: pytest.CaptureFixture[str], traffic_list: Path, redness_model: Path
) -> None:
    report = eval_json(capsys, str(traffic_list), "--model", str(redness_model), "--bootstrap", "0")
    items = {i["name"]: i for i in report["items"]}
    (track,) = items["real.mp4"]["track_logits"]
    times, logits = np.asarray(track["times"]), np.asarray(track["logits"])
    assert len(times) == items["real.mp4"]["faces_scored"] > 30
    assert np.all(np.diff(times) > 0) and times[0] >= 0 and times[-1] < 5
    # The white stretch (2-3 s) is where this model's score rose, and nowhere else.
    white = (times > 2.1) & (times < 2.9)
    blue = (times < 1.9) | (times > 3.1)
    assert logits[white].min() > 0 > logits[blue].max()
    assert sorted(logits) == pytest.approx(sorted(items["real.mp4"]["frame_logits"]), abs=1e-3)


def test_the_video_threshold_option_sets_the_verdict(
    capsys: pytest.CaptureFixture[str], traffic_list: Path, redness_model: Path
) -> None:
    common = [str(traffic_list), "--model", str(redness_model), "--bootstrap", "0"]
    common += ["--cusum-h", "1000"]  # no alarm: the video score alone decides
    default = eval_json(capsys, *common)
    real = next(i for i in default["items"] if i["name"] == "real.mp4")
    assert real["verdict"] == "real" and 0.05 < real["score"] < 0.5
    strict = eval_json(capsys, *common, "--video-threshold", f"{real['score'] - 0.01:.4f}")
    assert strict["analysis"]["video_threshold"] == pytest.approx(real["score"] - 0.01)
    verdicts = {i["name"]: i["verdict"] for i in strict["items"]}
    assert verdicts["real.mp4"] == "fake" and verdicts["blue.mp4"] == "real"
    assert strict["pooled"]["video"]["at_threshold"]["bpcer"]["value"] == 0.5

    video = traffic_list.parent / "real.mp4"
    for extra, verdict in (
        ([], "real"),
        (["--video-threshold", f"{real['score'] - 0.01:.4f}"], "fake"),
    ):
        code = main(
            [
                "scan",
                str(video),
                "--model",
                str(redness_model),
                "--cusum-h",
                "1000",
                "--json",
                *extra,
            ]
        )
        scanned = json.loads(capsys.readouterr().out)
        assert code == 0 and scanned["verdict"] == verdict


def test_eval_text_gives_the_recommendations(
    capsys: pytest.CaptureFixture[str], traffic_list: Path, redness_model: Path
) -> None:
    code = main(["eval", str(traffic_list), "--model", str(redness_model), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "operating point, from 0.133 min of real face tracks" in out  # 8 s
    assert "recommended --cusum-h " in out
    assert "recommended --video-threshold " in out and "caution: under 10 minutes" in out


@pytest.mark.parametrize(
    ("command", "option", "value", "message"),
    [
        ("eval", "--false-alarms-per-hour", "0.001", "must be at least 0.005"),
        ("eval", "--false-alarms-per-hour", "1e3", "must be at most 100"),
        ("eval", "--false-alarms-per-hour", "nan", "not a finite number"),
        ("eval", "--video-threshold", "1", "must be strictly between 0 and 1"),
        ("eval", "--video-threshold", "0", "must be strictly between 0 and 1"),
        ("scan", "--video-threshold", "1.5", "must be strictly between 0 and 1"),
        ("eval", "--seed", "-1", "must not be negative"),
        ("eval", "--bootstrap", "-5", "must not be negative"),
        ("scan", "--drain", "nan", "not a finite number"),  # would wait for ever
    ],
)
def test_bad_operating_point_options_exit_2(
    capsys: pytest.CaptureFixture[str],
    traffic_list: Path,
    command: str,
    option: str,
    value: str,
    message: str,
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, str(traffic_list), option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and message in err


@pytest.fixture(scope="module")
def file_like_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recording encoded as files are, not as live video: B-frames and a keyframe every 10
    frames, of a scene that moves everywhere (waves drifting behind a swaying oval)."""
    path = tmp_path_factory.mktemp("bframes") / "source.mp4"
    size = 480
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "medium", "crf": "18", "g": "10"}
        for i in range(90):
            t = i / 30
            image = np.stack(
                [
                    120 + 60 * np.sin(x / 37 + t),
                    100 + 50 * np.cos(y / 23 - 0.7 * t),
                    90 + 40 * np.sin((x + y) / 51 + 0.3 * t),
                ],
                axis=-1,
            )
            centre = (int(size / 2 + 40 * np.sin(t)), int(size / 2 + 20 * np.cos(1.3 * t)))
            cv2.ellipse(image, centre, (90, 120), 5 * np.sin(t), 0, 360, (200, 160, 140), -1)
            frame = av.VideoFrame.from_ndarray(image.astype(np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def frame_types(path: Path) -> list[str]:
    with av.open(str(path)) as container:
        return [PictureType(frame.pict_type).name for frame in container.decode(video=0)]


def test_reencode_sends_frames_as_a_live_encoder(tmp_path: Path, file_like_source: Path) -> None:
    # The source's own frame types must not force the re-encode's: a live encoder sends no
    # B-frames and a keyframe every two seconds (here 60 frames), whatever was filmed.
    source_types = frame_types(file_like_source)
    assert "B" in source_types and source_types.count("I") >= 9
    target = tmp_path / "out.mp4"
    reencode(file_like_source, target, 300)
    types = frame_types(target)
    assert len(types) == len(source_types) and "B" not in types
    assert [i for i, t in enumerate(types) if t == "I"] == [0, 60]


def test_reencode_does_not_depend_on_leftover_memory(
    tmp_path: Path, file_like_source: Path
) -> None:
    # A figure measured at a low bitrate must be the same on every run. x264's look-ahead
    # (macroblock tree over B-frames) reads memory it never wrote: glibc's MALLOC_PERTURB_
    # fills fresh allocations with a pattern, and with B-frames the re-encode differed per
    # pattern, as it did between whole benchmark runs.
    script = (
        "import sys, hashlib, pathlib\n"
        "from swapwatch.evaluation.runner import reencode\n"
        "target = pathlib.Path(sys.argv[2])\n"
        "reencode(pathlib.Path(sys.argv[1]), target, 150)\n"
        "print(hashlib.md5(target.read_bytes()).hexdigest())\n"
    )
    digests = set()
    for pattern in ("0", "85", "170"):
        target = tmp_path / f"out{pattern}.mp4"
        done = subprocess.run(
            [sys.executable, "-c", script, str(file_like_source), str(target)],
            env={**os.environ, "MALLOC_PERTURB_": pattern},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        digests.add(done.stdout.strip())
    assert len(digests) == 1
