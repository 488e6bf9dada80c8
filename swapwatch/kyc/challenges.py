"""Active challenges: what a session asks the person to do, in an order nobody can predict.

A replayed or pre-rendered video cannot follow a sequence drawn when the session starts; a live
swap tool must follow it, and breaks where the challenges lead it (a head turned towards profile,
a hand across the face). The sequence is drawn with `secrets` (the operating system's random
source), never a seeded generator.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from swapwatch.kyc.occlusion import COVER_CHANGE


class ChallengeKind(enum.StrEnum):
    """Directions are the person's own (left = their left), whatever the preview mirrors."""

    TURN_LEFT = "turn_left"
    TURN_RIGHT = "turn_right"
    LOOK_UP = "look_up"
    HAND_OVER_FACE = "hand_over_face"
    MOVE_CLOSER = "move_closer"


# What each kind measures, and in which unit its threshold is.
UNITS = {
    ChallengeKind.TURN_LEFT: "degrees of yaw",
    ChallengeKind.TURN_RIGHT: "degrees of yaw",
    ChallengeKind.LOOK_UP: "degrees of pitch",
    ChallengeKind.HAND_OVER_FACE: "colour change of the face",
    ChallengeKind.MOVE_CLOSER: "face size ratio",
}


@dataclass(frozen=True, slots=True)
class ChallengePolicy:
    """How many challenges a session draws, of which kinds, and what counts as done."""

    count: int = 3
    kinds: tuple[ChallengeKind, ...] = tuple(ChallengeKind)
    window_s: float = 5.0  # from the prompt to the end of the challenge's time
    turn_deg: float = 25.0  # yaw from where the head was at the prompt
    look_up_deg: float = 12.0  # pitch from where the head was at the prompt
    # How far the face's colours move from the prompt's before it counts as covered
    # (swapwatch.kyc.occlusion; a face lost and found again counts too).
    cover_change: float = COVER_CHANGE
    closer_ratio: float = 1.25  # face height against its height at the prompt

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.count <= 10:
            problems.append(f"count {self.count} is not within 1-10")
        if not self.kinds:
            problems.append("kinds is empty")
        if len(set(self.kinds)) < 2 and self.count > 1:
            problems.append("a sequence of more than one challenge needs at least two kinds")
        if not 1.0 <= self.window_s <= 30.0:
            problems.append(f"window_s {self.window_s} is not within 1-30")
        if not 5.0 <= self.turn_deg <= 80.0:
            problems.append(f"turn_deg {self.turn_deg} is not within 5-80")
        if not 5.0 <= self.look_up_deg <= 60.0:
            problems.append(f"look_up_deg {self.look_up_deg} is not within 5-60")
        if not 0.01 <= self.cover_change <= 0.5:
            problems.append(f"cover_change {self.cover_change} is not within 0.01-0.5")
        if not 1.05 <= self.closer_ratio <= 3.0:
            problems.append(f"closer_ratio {self.closer_ratio} is not within 1.05-3")
        if problems:
            raise ValueError("; ".join(problems))

    def threshold(self, kind: ChallengeKind) -> float:
        return {
            ChallengeKind.TURN_LEFT: self.turn_deg,
            ChallengeKind.TURN_RIGHT: self.turn_deg,
            ChallengeKind.LOOK_UP: self.look_up_deg,
            ChallengeKind.HAND_OVER_FACE: self.cover_change,
            ChallengeKind.MOVE_CLOSER: self.closer_ratio,
        }[kind]


@dataclass(frozen=True, slots=True)
class Challenge:
    """One prompt: what to do, how far, and for how long."""

    kind: ChallengeKind
    threshold: float
    window_s: float

    @property
    def unit(self) -> str:
        return UNITS[self.kind]


def challenge_sequence(
    policy: ChallengePolicy, choose: secrets.SystemRandom | None = None
) -> tuple[Challenge, ...]:
    """`policy.count` challenges drawn from `policy.kinds` at random, no kind twice in a row
    (a repeat would let the person skip the return to frontal between them)."""
    draw = choose or secrets.SystemRandom()
    sequence: list[Challenge] = []
    for _ in range(policy.count):
        previous = sequence[-1].kind if sequence else None
        candidates: Sequence[ChallengeKind] = [k for k in policy.kinds if k is not previous]
        kind = draw.choice(candidates)
        sequence.append(Challenge(kind, policy.threshold(kind), policy.window_s))
    return tuple(sequence)
