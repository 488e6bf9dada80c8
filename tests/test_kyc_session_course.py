"""A session's course and verdict, fed observations as a worker would: prompts on schedule,
compliance, the swap evidence by moment, and the rule that combines the parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from media import Placement, face_landmarks, render_frame, write_linear_model
from test_kyc_challenges import turned

from swapwatch.engines import create_engine
from swapwatch.faces.quality import QualityConfig
from swapwatch.kyc.challenges import Challenge, ChallengeKind, ChallengePolicy
from swapwatch.kyc.combination import Verdict, assess_injection
from swapwatch.kyc.readings import Contribution, SignalReading
from swapwatch.kyc.session import Reason, SessionCourse, SessionFace, SessionPolicy
from swapwatch.stream.assembly import AnalysisSettings, build_analyzer
from swapwatch.stream.frames import Frame

RATE = 15.0


@pytest.fixture(scope="module")
def face_mesh() -> np.ndarray:
    frame = render_frame(640, 480, [Placement(0.5, 0.5, 300, sway=0.0)], 0.0)
    return face_landmarks(frame).astype(np.float64)


LEFT = Challenge(ChallengeKind.TURN_LEFT, 25.0, 3.0)
RIGHT = Challenge(ChallengeKind.TURN_RIGHT, 25.0, 3.0)
CLEAN = assess_injection([])
POLICY = SessionPolicy(ChallengePolicy(count=2, window_s=3.0), settle_s=1.0, gap_s=0.5)


def run(
    course: SessionCourse, pose_at: object, evidence: float = -3.0, seconds: float = 20.0
) -> list[dict[str, object]]:
    """Feed the course until done; `pose_at(t, prompts)` gives the landmarks (None: no face)."""
    messages: list[dict[str, object]] = []
    for i in range(int(seconds * RATE)):
        t = i / RATE
        points = pose_at(t, messages)  # type: ignore[operator]
        face = None if points is None else SessionFace(t, 1, points, evidence)
        messages += course.observe(t, face)
        if course.done:
            break
    return messages


def follows(face_mesh: np.ndarray):  # type: ignore[no-untyped-def]
    """A person who does what each prompt asks, 0.5 s after it, then faces the camera again."""

    def pose_at(t: float, messages: list[dict[str, object]]) -> np.ndarray:
        prompts = [m for m in messages if m["type"] == "challenge"]
        results = [m for m in messages if m["type"] == "challenge_result"]
        if len(prompts) > len(results) and t >= float(prompts[-1]["at"]) + 0.5:  # type: ignore[arg-type]
            return turned(face_mesh, yaw=35.0 if prompts[-1]["kind"] == "turn_left" else -35.0)
        return turned(face_mesh)

    return pose_at


def test_prompts_come_one_at_a_time_and_a_compliant_person_passes(face_mesh: np.ndarray) -> None:
    course = SessionCourse(POLICY, (LEFT, RIGHT))
    messages = run(course, follows(face_mesh))
    kinds = [(m["type"], m.get("kind")) for m in messages]
    assert kinds == [
        ("challenge", "turn_left"),
        ("challenge_result", "turn_left"),
        ("challenge", "turn_right"),
        ("challenge_result", "turn_right"),
    ]
    assert messages[0]["at"] == pytest.approx(1.0, abs=1 / RATE)  # after settling
    verdict = course.verdict(CLEAN)
    assert verdict.verdict is Verdict.PASS and verdict.reasons == ()
    assert [c["met"] for c in verdict.evidence["challenges"]] == [True, True]
    # turned faces count at half weight: all faces scored -3, so the mean stays -3
    swap = verdict.evidence["swap"]
    assert swap["by_moment"]["turned"]["faces"] > 0 and swap["weighted_mean"] == -3.0


def test_a_replay_that_follows_no_prompt_fails_and_one_missed_is_a_retry(
    face_mesh: np.ndarray,
) -> None:
    still = SessionCourse(POLICY, (LEFT, RIGHT))
    run(still, lambda t, m: turned(face_mesh))
    verdict = still.verdict(CLEAN)
    assert verdict.verdict is Verdict.FAIL and verdict.reasons == (Reason.CHALLENGE_FAILED,)

    def only_left(t: float, messages: list[dict[str, object]]) -> np.ndarray:
        pose = follows(face_mesh)(t, messages)
        prompts = [m for m in messages if m["type"] == "challenge"]
        return turned(face_mesh) if prompts and prompts[-1]["kind"] == "turn_right" else pose

    partial = SessionCourse(POLICY, (LEFT, RIGHT))
    run(partial, only_left)
    verdict = partial.verdict(CLEAN)
    assert verdict.verdict is Verdict.RETRY and verdict.reasons == (Reason.CHALLENGE_FAILED,)


def test_swap_evidence_fails_a_compliant_session(face_mesh: np.ndarray) -> None:
    course = SessionCourse(POLICY, (LEFT, RIGHT))
    run(course, follows(face_mesh), evidence=2.5)
    verdict = course.verdict(CLEAN)
    assert verdict.verdict is Verdict.FAIL and verdict.reasons == (Reason.SWAP_SUSPECTED,)


def test_no_face_is_a_retry_and_says_so() -> None:
    course = SessionCourse(POLICY, (LEFT, RIGHT))
    run(course, lambda t, m: None)
    verdict = course.verdict(CLEAN)
    assert verdict.verdict is Verdict.RETRY and verdict.reasons == (Reason.NO_FACE,)


@pytest.mark.parametrize(
    ("contributions", "expected"),
    [
        ((Contribution.STRONG,), Verdict.RETRY),
        ((Contribution.STRONG, Contribution.STRONG), Verdict.FAIL),
        ((Contribution.WEAK,), Verdict.PASS),
    ],
)
def test_injection_signals_join_the_verdict_by_their_rule(
    face_mesh: np.ndarray, contributions: tuple[Contribution, ...], expected: Verdict
) -> None:
    course = SessionCourse(POLICY, (LEFT, RIGHT))
    run(course, follows(face_mesh))
    readings = [
        SignalReading(f"signal{i}", 1.0, "u", 0.5, c, "test") for i, c in enumerate(contributions)
    ]
    verdict = course.verdict(assess_injection(readings))
    assert verdict.verdict is expected
    assert (Reason.INJECTION_SUSPECTED in verdict.reasons) is (expected is not Verdict.PASS)


def test_the_time_limit_ends_a_session_with_its_open_challenges_missed(
    face_mesh: np.ndarray,
) -> None:
    policy = SessionPolicy(
        ChallengePolicy(count=2, window_s=3.0), settle_s=1.0, gap_s=0.5, max_duration_s=8.0
    )
    course = SessionCourse(policy, (LEFT, RIGHT), prompt_times=(1.0, 30.0))
    run(course, follows(face_mesh), seconds=20.0)
    assert course.done
    results = course.verdict(CLEAN).evidence["challenges"]
    assert results[0]["met"] and not results[1]["met"]
    assert "never prompted" in results[1]["explanation"]


def test_a_policy_too_short_for_its_challenges_is_refused() -> None:
    with pytest.raises(ValueError, match="max_duration_s"):
        SessionPolicy(ChallengePolicy(count=3, window_s=10.0), max_duration_s=20.0)


@pytest.mark.parametrize("session", [False, True])
def test_a_session_scores_faces_past_the_pose_gate_outside_the_tracks_decision(
    session: bool, tmp_path: Path
) -> None:
    """The gate here refuses every face for its pose (max_turn near 0): a session's analyzer
    still scores it, and keeps it out of the track's CUSUM; a plain stream's does neither."""
    engine = create_engine("onnxruntime", write_linear_model(tmp_path / "m.onnx", bias=2.0), "cpu")
    settings = AnalysisSettings(quality=QualityConfig(max_turn=0.001), score_past_pose_gate=session)
    analyzer = build_analyzer(engine, settings)
    try:
        image = render_frame(640, 480, [Placement(0.5, 0.5, 300, sway=0.0)], 0.0)
        result = analyzer.analyse(Frame(image=image, index=0, time=0.0, arrival=0.0))
    finally:
        analyzer.close()
    (face,) = result.faces
    assert face.skip_reason == "extreme_pose" and face.update is None
    assert face.points is not None and face.points.shape == (468, 3)
    assert (face.logit is not None) is session
    if session:
        assert face.logit == pytest.approx(2.0, abs=1e-4)
    assert not analyzer.tracks  # no decision was started for it
