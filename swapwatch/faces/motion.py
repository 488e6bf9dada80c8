"""Face-motion anomaly: how far a track's facial motion lies from real recordings' motion.

A cue across frames that reads no pixels around a blend, for whole-face generators (talking
heads) that have no blend boundary. Published work finds generated faces move unlike real ones,
too smooth for some generators and too jerky for others, so the score is a distance from real
motion in either direction, fitted on real recordings alone (benchmarks/README, `face_motion.py`,
states the protocol and the rule that keeps it).

Per frame, nine signals of the face's landmarks: mouth opening and width, each eye's opening,
brow height and expression energy (in the track's own aligned shape, eye-corner distances), and
head yaw, pitch and roll in degrees. Per 4 s window, the log spread of each signal's speed,
acceleration and jerk: 27 numbers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from swapwatch.faces.geometry import LEFT_EYE_OUTER, RIGHT_EYE_OUTER
from swapwatch.faces.pose import head_pose

SIGNALS = (
    "mouth_opening",
    "mouth_width",
    "right_eye",
    "left_eye",
    "brows",
    "expression",
    "yaw",
    "pitch",
    "roll",
)
ORDERS = ("speed", "acceleration", "jerk")
FEATURES = tuple(f"{s}_{o}" for s in SIGNALS for o in ORDERS)
RATE_HZ = 15.0  # the even grid the signals are resampled to
WINDOW_S = 4.0
HOP_S = 1.0
MAX_GAP_S = 0.25  # a longer gap between analysed frames ends a stretch
FLOOR = 1e-4  # added before the log: a perfectly still signal stays finite

# MediaPipe mesh indices: inner lips, mouth corners, eyelids (upper, lower), brows over the eyes.
LIPS = (13, 14)
MOUTH_CORNERS = (61, 291)
RIGHT_LIDS, LEFT_LIDS = (159, 145), (386, 374)
RIGHT_BROW, LEFT_BROW = (105, 159), (334, 386)


def _aligned(points: np.ndarray) -> np.ndarray:
    """(T, 468, 2) landmarks, each frame similarity-aligned (translation, scale, rotation) to
    the track's mean shape, in units of the mean shape's eye-corner distance."""
    xy = points[:, :, :2].astype(np.float64)
    xy = xy - xy.mean(axis=1, keepdims=True)
    xy /= np.sqrt((xy**2).sum(axis=(1, 2), keepdims=True)) + 1e-12
    mean = xy[0]
    for _ in range(3):  # generalised Procrustes: align to the mean, average, again
        aligned = np.stack([_rotate_onto(frame, mean) for frame in xy])
        mean = aligned.mean(axis=0)
        mean /= np.sqrt((mean**2).sum()) + 1e-12
    eyes = np.linalg.norm(mean[LEFT_EYE_OUTER] - mean[RIGHT_EYE_OUTER])
    return np.asarray(aligned / max(eyes, 1e-12))


def _rotate_onto(shape: np.ndarray, target: np.ndarray) -> np.ndarray:
    """`shape` (centred, unit size) rotated and scaled to fit `target` best (least squares)."""
    u, s, vt = np.linalg.svd(shape.T @ target)
    rotation = u @ vt
    scale = s.sum()
    if np.linalg.det(rotation) < 0:  # a reflection is not a head movement
        u[:, -1] *= -1
        rotation = u @ vt
        scale -= 2 * s[-1]
    return np.asarray(shape @ rotation * scale)


def _distance(a: np.ndarray, i: int, j: int) -> np.ndarray:
    return np.asarray(np.linalg.norm(a[:, i] - a[:, j], axis=1))


def motion_signals(points: np.ndarray) -> np.ndarray:
    """(T, 9) signals (see SIGNALS) of a track's (T, 468, 3) landmarks in frame pixels."""
    aligned = _aligned(points)
    brows = 0.5 * (_distance(aligned, *RIGHT_BROW) + _distance(aligned, *LEFT_BROW))
    expression = np.sqrt(((aligned - aligned.mean(axis=0)) ** 2).sum(axis=2).mean(axis=1))
    poses = [head_pose(frame) for frame in points]
    return np.column_stack(
        [
            _distance(aligned, *LIPS),
            _distance(aligned, *MOUTH_CORNERS),
            _distance(aligned, *RIGHT_LIDS),
            _distance(aligned, *LEFT_LIDS),
            brows,
            expression,
            [p.yaw for p in poses],
            [p.pitch for p in poses],
            [p.roll for p in poses],
        ]
    )


def even_stretches(
    times: np.ndarray, signals: np.ndarray, rate: float = RATE_HZ, max_gap: float = MAX_GAP_S
) -> list[np.ndarray]:
    """The signals resampled (linearly) onto an even grid of `rate`, one array per stretch of
    frames without a gap over `max_gap` seconds. Frame rates that are not a multiple of the
    analysis rate give uneven steps, which would read as jerk."""
    order = np.argsort(times)
    times, signals = np.asarray(times, np.float64)[order], signals[order]
    breaks = np.flatnonzero(np.diff(times) > max_gap) + 1
    stretches = []
    for part in np.split(np.arange(len(times)), breaks):
        t = times[part]
        if len(t) < 2:
            continue
        grid = np.arange(t[0], t[-1] + 1e-9, 1.0 / rate)
        stretches.append(
            np.column_stack([np.interp(grid, t, signals[part, k]) for k in range(signals.shape[1])])
        )
    return stretches


def window_features(
    stretches: Sequence[np.ndarray],
    rate: float = RATE_HZ,
    window_s: float = WINDOW_S,
    hop_s: float = HOP_S,
) -> np.ndarray:
    """(W, 27) features of every whole window of the stretches (see FEATURES)."""
    size, hop = round(window_s * rate), round(hop_s * rate)
    rows = []
    for stretch in stretches:
        for start in range(0, len(stretch) - size + 1, hop):
            window = stretch[start : start + size]
            row = []
            for k in range(window.shape[1]):
                values = window[:, k]
                for order in range(1, len(ORDERS) + 1):
                    spread = np.diff(values, n=order).std() * rate**order
                    row.append(np.log(spread + FLOOR))
            rows.append(row)
    return np.asarray(rows, np.float64).reshape(-1, len(FEATURES))


def track_features(times: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(W, 27) window features of one track: analysed times (s) and (T, 468, 3) landmarks."""
    if len(times) < 2:
        return np.zeros((0, len(FEATURES)))
    return window_features(even_stretches(np.asarray(times), motion_signals(points)))


@dataclass(frozen=True, slots=True)
class MotionModel:
    """Real recordings' motion: the mean and inverse covariance of their window features."""

    mean: np.ndarray  # (27,)
    precision: np.ndarray  # (27, 27)
    recordings: int  # real recordings it was fitted on
    shrinkage: float  # Ledoit-Wolf weight of the scaled identity in the covariance

    @classmethod
    def fit(cls, recordings: Sequence[np.ndarray]) -> MotionModel:
        """Fit on the window features of real recordings, each recording weighing the same
        however many windows it has. The covariance is shrunk towards a scaled identity by the
        Ledoit-Wolf rule (weighted), since a few dozen recordings cannot pin 27 x 27 numbers."""
        kept = [r for r in recordings if len(r)]
        if len(kept) < 2:
            raise ValueError("the motion model needs windows from at least two recordings")
        x = np.concatenate(kept)
        w = np.concatenate([np.full(len(r), 1.0 / (len(r) * len(kept))) for r in kept])
        mean = w @ x
        centred = x - mean
        sample = (centred * w[:, None]).T @ centred
        p = sample.shape[0]
        target = np.trace(sample) / p * np.eye(p)
        distance = float(((sample - target) ** 2).sum())
        outer = centred[:, :, None] * centred[:, None, :]
        spread = float((w**2 * ((outer - sample) ** 2).sum(axis=(1, 2))).sum())
        shrinkage = min(1.0, spread / distance) if distance > 0 else 1.0
        covariance = shrinkage * target + (1 - shrinkage) * sample
        return cls(mean, np.linalg.inv(covariance), len(kept), shrinkage)

    def window_scores(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each window from real motion."""
        d = np.asarray(features, np.float64) - self.mean
        return np.asarray(np.sqrt(np.einsum("ij,jk,ik->i", d, self.precision, d)))

    def score(self, features: np.ndarray) -> float | None:
        """A recording's distance: the median over its windows; None without a whole window."""
        if not len(features):
            return None
        return float(np.median(self.window_scores(features)))

    def to_json(self) -> str:
        return json.dumps(
            {
                "features": list(FEATURES),
                "mean": self.mean.tolist(),
                "precision": self.precision.tolist(),
                "recordings": self.recordings,
                "shrinkage": self.shrinkage,
            }
        )
