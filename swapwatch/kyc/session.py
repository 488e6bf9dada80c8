"""The course of one KYC session and its verdict.

A session prompts its challenges one after another (a settling pause first, a short gap between
them), follows each with a `ComplianceTracker`, pools the detector's evidence on the main face
with each moment's weight, and ends with one verdict: the worst of four parts, each with its
reason:
- `no_face`: too few analysed frames held a face (retry: nothing was judged);
- `quality`: a face, but too few of its frames could be scored (retry);
- `challenge_failed`: a challenge not met in its window (retry; fail when none was met, since a
  replay follows none of a sequence drawn at random);
- `swap_suspected`: the weighted evidence above its threshold, or the stream's own alarm (fail);
- `injection_suspected`: the injection signals by their one rule (`combination`): retry or fail.

Pure logic, fed analysed frames: the service feeds it live, and benchmarks/kyc_sessions.py
replays recordings through it with prompt times of its choosing.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from swapwatch.faces.pose import head_pose
from swapwatch.kyc.challenges import Challenge, ChallengePolicy
from swapwatch.kyc.combination import InjectionAssessment, Verdict, worse
from swapwatch.kyc.compliance import ComplianceResult, ComplianceTracker, FaceObservation


class Reason(enum.StrEnum):
    """Why a session did not pass (machine-readable)."""

    SWAP_SUSPECTED = "swap_suspected"
    INJECTION_SUSPECTED = "injection_suspected"
    CHALLENGE_FAILED = "challenge_failed"
    NO_FACE = "no_face"
    QUALITY = "quality"
    INTERRUPTED = "interrupted"  # the service stopped during the session: nothing was judged


# Weights of the detector's evidence by moment, against frontal faces' (1), as
# benchmarks/challenge_evidence.py proposes them from the live-swap recordings: turned faces
# separate no better than frontal ones there, and real faces drift towards "fake" when turned
# (+0.74 evidence at 20-30 degrees within a recording), looking up or down more so.
TURNED_FROM_DEG = 20.0
TILTED_FROM_DEG = 10.0
# A face under a hand (by its colours, during the hand challenge) counts 0: its picture is
# partly a hand, and benchmarks/hand_occlusion.py found hands over faces in one recording only,
# fewer than the 3 recordings of each class challenge_evidence.py's rule needs to weigh a moment.
MOMENT_WEIGHTS = {"frontal": 1.0, "turned": 0.5, "tilted": 0.4, "covered": 0.0}
# The weighted mean evidence (logit / T clipped to +-4) above which a swap is suspected. Set by
# benchmarks/kyc_sessions.py on the validation live-swap recordings (13, whole recordings as
# sessions; results/kyc_sessions.json): real people's means reached at most -2.39, swaps' at
# least -0.62, so any threshold between separates them (APCER 0/7, BPCER 0/6); -1.0 keeps the
# wider margin on the real side, where a retry costs a person. The calibrated midpoint 0 let
# one swap of seven pass. On the train part (people the detector trained on) -1.0 refuses one
# real person of 15 (-0.68) and passes no swap of 16. Set on those recordings, so they no
# longer test it.
SWAP_EVIDENCE_ABOVE = -1.0


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """What a session asks and how it judges."""

    challenges: ChallengePolicy = field(default_factory=ChallengePolicy)
    settle_s: float = 1.5  # from the first frame to the first prompt
    gap_s: float = 1.0  # between one challenge's end and the next prompt
    max_duration_s: float = 60.0  # from the first frame; challenges still open then are missed
    allowed_camera_labels: tuple[str, ...] = ()
    swap_evidence_above: float = SWAP_EVIDENCE_ABOVE
    min_scored_faces: int = 8  # scored faces a swap judgement needs
    min_face_share: float = 0.5  # of analysed frames

    def __post_init__(self) -> None:
        problems = []
        if not 0.0 <= self.settle_s <= 10.0:
            problems.append(f"settle_s {self.settle_s} is not within 0-10")
        if not 0.0 <= self.gap_s <= 10.0:
            problems.append(f"gap_s {self.gap_s} is not within 0-10")
        needed = self.settle_s + self.challenges.count * (self.challenges.window_s + self.gap_s)
        if not needed <= self.max_duration_s <= 600.0:
            problems.append(
                f"max_duration_s {self.max_duration_s} is not within {needed:g}-600 (the "
                "challenges with their windows and gaps need that long)"
            )
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True, slots=True)
class SessionFace:
    """The session's main face in one analysed frame."""

    time_s: float
    track_id: int
    points: np.ndarray  # (468, 3) landmarks, frame pixels
    evidence: float | None  # the detector's logit / T, clipped; None when it was not scored
    crop: np.ndarray | None = None  # the aligned crop the detector saw (hand over face)


@dataclass(frozen=True, slots=True)
class Prompt:
    """A challenge put to the person at a media time."""

    index: int
    of: int
    challenge: Challenge
    at_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "challenge",
            "index": self.index,
            "of": self.of,
            "kind": self.challenge.kind.value,
            "threshold": self.challenge.threshold,
            "unit": self.challenge.unit,
            "window_s": self.challenge.window_s,
            "at": round(self.at_s, 3),
        }


@dataclass(frozen=True, slots=True)
class SessionVerdict:
    verdict: Verdict
    reasons: tuple[Reason, ...]
    evidence: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "reasons": [r.value for r in self.reasons],
            "evidence": self.evidence,
        }


def moment(face: SessionFace, pitch_reference: float) -> str:
    """Which moment a face is in, by its pose (turns before tilts, as the benchmark's)."""
    pose = head_pose(face.points)
    if abs(pose.yaw) >= TURNED_FROM_DEG:
        return "turned"
    if abs(pose.pitch - pitch_reference) >= TILTED_FROM_DEG:
        return "tilted"
    return "frontal"


class SessionCourse:
    """Prompts, compliance and evidence of one session. `observe` once per analysed frame."""

    def __init__(
        self,
        policy: SessionPolicy,
        challenges: Sequence[Challenge],
        prompt_times: Sequence[float] | None = None,
    ) -> None:
        """`prompt_times`: media times of the prompts (a replay chooses them); by default
        each prompt follows the previous challenge's end by `policy.gap_s`."""
        if not challenges:
            raise ValueError("a session needs at least one challenge")
        if prompt_times is not None and len(prompt_times) != len(challenges):
            raise ValueError("one prompt time per challenge")
        self.policy = policy
        self.challenges = tuple(challenges)
        self._prompt_times = None if prompt_times is None else tuple(prompt_times)
        self.started_at: float | None = None
        self.last_time: float | None = None
        self.frames = 0
        self.frames_with_face = 0
        self.alarm = False
        self.results: list[ComplianceResult] = []
        self._tracker: ComplianceTracker | None = None
        self._next_prompt_at: float | None = None
        self._faces: list[tuple[float, str]] = []  # evidence, moment
        self._pitches: list[float] = []  # before the first prompt: the head's own reference
        self.done = False

    def observe(
        self, time_s: float, face: SessionFace | None, alarm: bool = False
    ) -> list[dict[str, Any]]:
        """One analysed frame; returns the messages for the person (prompts, results)."""
        if self.done:
            return []
        messages: list[dict[str, Any]] = []
        if self.started_at is None:
            self.started_at = time_s
            self._next_prompt_at = self._prompt_at(0, time_s + self.policy.settle_s)
        self.last_time = time_s
        self.frames += 1
        self.alarm = self.alarm or alarm
        due = self._next_prompt_at
        if self._tracker is None and due is not None and time_s >= due:
            index = len(self.results)
            self._tracker = ComplianceTracker(self.challenges[index], time_s)
            messages.append(
                Prompt(index, len(self.challenges), self.challenges[index], time_s).to_json()
            )
        tracker = self._tracker
        covered = False
        if tracker is not None:
            tracker.update(
                FaceObservation(time_s)
                if face is None
                else FaceObservation(time_s, face.track_id, face.points, crop=face.crop)
            )
            covered = tracker.covered_now
            if tracker.finished(time_s):
                messages.append(self._close(tracker, time_s))
        if face is not None:
            self.frames_with_face += 1
            self._collect(face, covered)
        if time_s - self.started_at > self.policy.max_duration_s:
            messages.extend(self.stop())
        return messages

    def stop(self) -> list[dict[str, Any]]:
        """End now (time limit, the person left): open and unprompted challenges are missed."""
        messages = []
        if self._tracker is not None:
            messages.append(self._close(self._tracker, self.last_time or 0.0))
        while len(self.results) < len(self.challenges):
            challenge = self.challenges[len(self.results)]
            self.results.append(
                ComplianceResult(challenge, False, None, None, "never prompted: the session ended")
            )
        self.done = True
        return messages

    def _prompt_at(self, index: int, default: float) -> float | None:
        if index >= len(self.challenges):
            return None
        return default if self._prompt_times is None else self._prompt_times[index]

    def _close(self, tracker: ComplianceTracker, time_s: float) -> dict[str, Any]:
        result = tracker.result()
        self.results.append(result)
        self._tracker = None
        self._next_prompt_at = self._prompt_at(len(self.results), time_s + self.policy.gap_s)
        if self._next_prompt_at is None:
            self.done = True
        return {"type": "challenge_result", "index": len(self.results) - 1, **result.to_json()}

    def _collect(self, face: SessionFace, covered: bool) -> None:
        if not self.results and self._tracker is None:
            self._pitches.append(head_pose(face.points).pitch)
        if face.evidence is None or not math.isfinite(face.evidence):
            return
        reference = float(np.median(self._pitches)) if self._pitches else 0.0
        self._faces.append((face.evidence, "covered" if covered else moment(face, reference)))

    def swap_evidence(self) -> dict[str, Any]:
        """The weighted mean evidence, and its parts by moment."""
        by_moment: dict[str, dict[str, Any]] = {}
        total = weights = 0.0
        for name, weight in MOMENT_WEIGHTS.items():
            values = [e for e, m in self._faces if m == name]
            by_moment[name] = {
                "faces": len(values),
                "mean": round(float(np.mean(values)), 3) if values else None,
                "weight": weight,
            }
            total += weight * sum(values)
            weights += weight * len(values)
        return {
            "weighted_mean": round(total / weights, 3) if weights else None,
            "threshold": self.policy.swap_evidence_above,
            "scored_faces": len(self._faces),
            "by_moment": by_moment,
            "stream_alarm": self.alarm,
        }

    def verdict(self, injection: InjectionAssessment) -> SessionVerdict:
        """The session's verdict (call once `done`, or after `stop`)."""
        verdict, reasons = Verdict.PASS, []
        swap = self.swap_evidence()
        face_share = self.frames_with_face / self.frames if self.frames else 0.0
        if not self.frames_with_face or face_share < self.policy.min_face_share:
            verdict, reasons = Verdict.RETRY, [Reason.NO_FACE]
        else:
            missed = sum(not r.met for r in self.results)
            if missed:
                reasons.append(Reason.CHALLENGE_FAILED)
                verdict = Verdict.FAIL if missed == len(self.results) else Verdict.RETRY
            mean = swap["weighted_mean"]
            if self.alarm or (mean is not None and mean > self.policy.swap_evidence_above):
                reasons.append(Reason.SWAP_SUSPECTED)
                verdict = Verdict.FAIL
            elif swap["scored_faces"] < self.policy.min_scored_faces:
                reasons.append(Reason.QUALITY)
                verdict = worse(verdict, Verdict.RETRY)
        if injection.verdict is not Verdict.PASS:
            reasons.append(Reason.INJECTION_SUSPECTED)
            verdict = worse(verdict, injection.verdict)
        evidence = {
            "challenges": [r.to_json() for r in self.results],
            "swap": swap,
            "injection": {
                "verdict": injection.verdict.value,
                "points": injection.points,
                "contributing": [r.name for r in injection.contributing],
                "readings": [r.to_json() for r in injection.readings],
            },
            "frames": {
                "analysed": self.frames,
                "with_face": self.frames_with_face,
                "duration_s": round((self.last_time or 0.0) - (self.started_at or 0.0), 3),
            },
        }
        return SessionVerdict(verdict, tuple(reasons), evidence)
