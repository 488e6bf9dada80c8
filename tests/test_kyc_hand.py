"""The hand-over-face challenge on rendered faces: a hand passing over a face whose landmarks
stay on it is compliance; turning, talking and a change of light without a hand are not."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import cv2
import numpy as np
import pytest
from media import Placement, face_landmarks, render_frame

from swapwatch.faces.detection import FaceDetector
from swapwatch.faces.geometry import aligned_square, warp
from swapwatch.faces.landmarks import LandmarkModel
from swapwatch.faces.tracking import FaceTracker
from swapwatch.kyc.challenges import Challenge, ChallengeKind, ChallengePolicy
from swapwatch.kyc.compliance import ComplianceResult, ComplianceTracker, FaceObservation
from swapwatch.kyc.occlusion import COVER_CHANGE, colour_change, face_colours
from swapwatch.kyc.session import SessionCourse, SessionFace, SessionPolicy

RATE = 15.0
SECONDS = 4.0
WIDTH, HEIGHT = 640, 480
HAND = Challenge(ChallengeKind.HAND_OVER_FACE, COVER_CHANGE, 5.0)
Scene = Callable[[float], np.ndarray]


@pytest.fixture(scope="module")
def mouth() -> tuple[float, float, float]:
    """Centre (x, y) of the rendered astronaut's mouth and the face's width, pixels."""
    points = face_landmarks(face_frame(0.0))
    x, y = points[[13, 14], :2].mean(axis=0)
    return float(x), float(y), float(points[:, 0].max() - points[:, 0].min())


def face_frame(t: float) -> np.ndarray:
    return render_frame(WIDTH, HEIGHT, [Placement(0.5, 0.5, 300, sway=0.0)], t)


def draw_hand(frame: np.ndarray, cx: float, cy: float, width: float) -> None:
    """A palm below (cx, cy) with four fingers pointing up past it, lit from above (lighter
    fingertips, shadowed gaps), `width` pixels across."""
    finger = width / 4
    palm_top = cy + 0.1 * width
    for k in range(4):
        x0 = int(cx - width / 2 + k * finger)
        top = int(cy - (0.7 - 0.1 * abs(k - 1.5)) * width)
        for y in range(top, int(palm_top) + 1):
            shade = 0.85 + 0.25 * (palm_top - y) / max(palm_top - top, 1)
            colour = np.clip(np.array([240, 132, 112]) * shade, 0, 255)
            cv2.line(frame, (x0 + 2, y), (int(x0 + finger) - 2, y), colour.tolist(), 1)
        cv2.line(frame, (x0, top), (x0, int(palm_top)), (90, 55, 45), 2)
    cv2.ellipse(
        frame,
        (int(cx), int(palm_top + 0.25 * width)),
        (int(width / 2), int(0.35 * width)),
        0,
        0,
        360,
        (224, 120, 102),
        -1,
    )


def hand_across(mouth: tuple[float, float, float]) -> Scene:
    """The face still for 1 s, then a hand crossing its lower half left to right in 1.5 s."""
    x, y, face_width = mouth

    def scene(t: float) -> np.ndarray:
        frame = face_frame(t)
        share = (t - 1.0) / 1.5
        if 0.0 <= share <= 1.0:
            hand_x = x - 0.9 * face_width + share * 1.8 * face_width
            draw_hand(frame, hand_x, y, 0.65 * face_width)
        return frame

    return scene


def moving_without_a_hand(mouth: tuple[float, float, float]) -> Scene:
    """Talking (the mouth opening and closing), the head turning (narrowing to 80 % of its
    width and back) and drifting, and the room's light dimming to 70 %: everything but a hand."""
    x, y, face_width = mouth

    def scene(t: float) -> np.ndarray:
        frame = face_frame(t)
        opening = max(0.0, math.sin(2 * math.pi * 2.5 * t))
        cv2.ellipse(
            frame,
            (int(x), int(y)),
            (int(0.12 * face_width), int(1 + 0.07 * face_width * opening)),
            0,
            0,
            360,
            (70, 25, 30),
            -1,
        )
        turn = 1.0 - 0.2 * max(0.0, math.sin(math.pi * min(t / 3.0, 1.0)))
        shift = 12.0 * math.sin(2 * math.pi * 0.4 * t)
        matrix = np.array([[turn, 0, (1 - turn) * x + shift], [0, 1, 0]], np.float32)
        frame = cv2.warpAffine(frame, matrix, (WIDTH, HEIGHT), borderMode=cv2.BORDER_REPLICATE)
        light = 1.0 - 0.3 * min(t / 3.0, 1.0)
        return np.clip(frame * light, 0, 255).astype(np.uint8)

    return scene


def followed(scene: Scene) -> list[FaceObservation]:
    """Every analysed frame through the live pipeline's tracker, with the detector's crop."""
    detector = FaceDetector(quiet=True)
    tracker = FaceTracker(detector, LandmarkModel())
    seen = []
    try:
        for i in range(int(SECONDS * RATE)):
            t = i / RATE
            image = scene(t)
            faces = tracker.update(image)
            if not faces:
                seen.append(FaceObservation(t))
                continue
            face = faces[0]
            crop = warp(image, aligned_square(face.points), 224)
            seen.append(FaceObservation(t, face.track_id, face.points, crop=crop))
    finally:
        detector.close()
    return seen


def outcome(seen: list[FaceObservation]) -> ComplianceResult:
    tracker = ComplianceTracker(HAND, prompted_at_s=0.0)
    for observation in seen:
        tracker.update(observation)
    return tracker.result()


@pytest.fixture(scope="module")
def hand_frames(mouth: tuple[float, float, float]) -> list[FaceObservation]:
    return followed(hand_across(mouth))


@pytest.fixture(scope="module")
def moving_frames(mouth: tuple[float, float, float]) -> list[FaceObservation]:
    return followed(moving_without_a_hand(mouth))


def test_a_hand_over_a_face_that_stays_tracked_meets_the_challenge(
    hand_frames: list[FaceObservation],
) -> None:
    # The landmarks stay on the face under the hand: the track is never lost.
    assert all(o.track_id == hand_frames[0].track_id for o in hand_frames)
    result = outcome(hand_frames)
    assert result.met, result.explanation
    assert result.measured is not None and result.measured >= COVER_CHANGE
    # Met once the hand has gone, not when it arrives.
    assert result.met_after_s is not None and 1.5 < result.met_after_s < 3.0


def test_turning_talking_and_dimming_without_a_hand_do_not_meet_it(
    moving_frames: list[FaceObservation],
) -> None:
    assert all(o.track_id is not None for o in moving_frames)
    result = outcome(moving_frames)
    assert not result.met
    assert result.measured is not None and result.measured < COVER_CHANGE
    assert result.explanation == "the face was never covered"


def test_a_hand_that_covers_the_face_and_stays_is_not_compliance(
    hand_frames: list[FaceObservation],
) -> None:
    """Covered, never uncovered (a hand held still over the face) is not a hand passing."""
    covered_at = next(
        i
        for i, o in enumerate(hand_frames)
        if o.crop is not None
        and hand_frames[0].crop is not None
        and colour_change(face_colours(hand_frames[0].crop), face_colours(o.crop)) > COVER_CHANGE
    )
    stays = hand_frames[: covered_at + 3] + [
        FaceObservation(o.time_s, o.track_id, o.points, crop=hand_frames[covered_at + 2].crop)
        for o in hand_frames[covered_at + 3 :]
    ]
    result = outcome(stays)
    assert not result.met and "did not come back" in result.explanation


def session_faces(seen: list[FaceObservation], covered_evidence: float) -> Iterator[SessionFace]:
    """The frames as a session's main face; frames whose colours moved well past the threshold
    score `covered_evidence` (a detector fooled by the hand), the others -3 (a real person)."""
    assert seen[0].crop is not None
    reference = face_colours(seen[0].crop)
    for o in seen:
        assert o.crop is not None and o.points is not None and o.track_id is not None
        moved = colour_change(reference, face_colours(o.crop)) >= COVER_CHANGE * 1.1
        yield SessionFace(
            o.time_s, o.track_id, o.points, covered_evidence if moved else -3.0, o.crop
        )


def test_evidence_under_the_hand_stays_out_of_the_session_pool(
    hand_frames: list[FaceObservation],
) -> None:
    policy = SessionPolicy(
        challenges=ChallengePolicy(count=1, kinds=(ChallengeKind.HAND_OVER_FACE,)),
        settle_s=0.0,
        max_duration_s=10.0,
    )
    course = SessionCourse(policy, (HAND,), prompt_times=(0.0,))
    for face in session_faces(hand_frames, covered_evidence=4.0):
        course.observe(face.time_s, face)
    course.stop()
    assert course.results[0].met
    swap = course.swap_evidence()
    assert swap["by_moment"]["covered"]["faces"] > 0
    assert swap["by_moment"]["covered"]["weight"] == 0.0
    assert swap["weighted_mean"] == pytest.approx(-3.0)


@pytest.mark.parametrize(
    ("change", "covered"),
    [
        (lambda c: c * 0.6, False),  # the exposure drops
        (lambda c: c * np.array([1.15, 1.0, 0.85]), False),  # warmer light over the whole face
        (lambda c: c, False),  # unchanged
        (lambda c: _with_hand(c), True),  # the test's hand over the lower face
    ],
)
def test_light_over_the_whole_face_cancels_and_a_hand_over_part_of_it_does_not(
    aligned: np.ndarray, change: Callable[[np.ndarray], np.ndarray], covered: bool
) -> None:
    crop = aligned
    moved = np.clip(change(crop.astype(np.float32)), 0, 255).astype(np.uint8)
    value = colour_change(face_colours(crop), face_colours(moved))
    assert (value >= COVER_CHANGE) is covered, value


@pytest.fixture(scope="module")
def aligned() -> np.ndarray:
    """The rendered face's aligned crop, as the detector sees it."""
    frame = face_frame(0.0)
    return warp(frame, aligned_square(face_landmarks(frame)), 224)


def _with_hand(crop: np.ndarray) -> np.ndarray:
    out = np.ascontiguousarray(crop, dtype=np.uint8)
    draw_hand(out, 112, 150, 120)
    return out


def test_a_crop_that_is_not_a_square_rgb_picture_is_refused() -> None:
    with pytest.raises(ValueError, match="square RGB"):
        face_colours(np.zeros((224, 200, 3), np.uint8))
