"""Head pose in degrees from the 468-point face mesh.

The mesh model gives every landmark a depth (z, in the same pixel scale as x and y; smaller is
nearer the camera). Mirror-image landmark pairs (eye corners, cheeks, mouth corners, jaw) lie at
one depth when the face looks at the camera, so the direction of the line joining them, in the
x-z plane, is the head's turn; the line down the face's middle (forehead to chin) in the y-z
plane is its tilt. This needs no canonical 3D model and no camera intrinsics (a weak-perspective
view, which a face at arm's length is).

Checked two ways: known rotations of a real mesh read back within 3 degrees
(tests/test_kyc_challenges.py); and on live-swap footage the turn read from depth agrees with
one read without depth, from how much the face's width shrinks against its own frontal width
(cos of the turn): a least-squares scale of 1.00 between the two tangents over 364 turned
faces of 7 validation recordings, 1.01 over 774 of 19 others (turns of 6-40 degrees;
benchmarks/challenge_evidence.py, `yaw_without_depth`).

`swapwatch.faces.quality.yaw_ratio` reads the same turn from x alone (the nose between the
cheeks), without a sign of tilt. Measured on the live-swap recordings
(benchmarks/challenge_evidence.py, median degrees per band of |yaw ratio|): 0.2-0.4 is 10
degrees, 0.4-0.6 is 16-18, 0.6-0.75 is 22-25, 0.75-0.85 is 27-28, above 0.85 is 30-33. The
former quality gate's 0.85 (training crops' limit still) is therefore a turn of about 30
degrees (its comment said 35-40 until this was measured).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from swapwatch.faces.geometry import landmarks_angle

# Subject's right (image left), subject's left: eye outer corners, eye inner corners, cheeks,
# mouth corners, jaw below the ears.
MIRROR_PAIRS = ((33, 263), (133, 362), (234, 454), (61, 291), (172, 397))
# Down the middle of the face: forehead top, between the brows; chin, under the lower lip.
UPPER_MIDLINE = (10, 151)
LOWER_MIDLINE = (152, 199)


@dataclass(frozen=True, slots=True)
class HeadPose:
    """Angles of the head relative to facing the camera, degrees.

    yaw > 0: turned towards the subject's own left (the nose moves to image right in an
    unmirrored picture); pitch > 0: looking up; roll > 0: the eye line rotated clockwise in
    the image. Absolute pitch also depends on where the camera sits and on the mesh (the
    live-swap streamers' median reads -8 to -13 degrees); challenges measure the change from
    the head's position at the prompt."""

    yaw: float
    pitch: float
    roll: float


def head_pose(points: np.ndarray) -> HeadPose:
    """The pose of one face from its (468, 3) landmarks in image pixels."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape != (468, 3):
        raise ValueError(f"expected (468, 3) landmarks, got {pts.shape}")
    roll = landmarks_angle(pts)
    cos, sin = math.cos(roll), math.sin(roll)
    # Undo the roll, so the face's own horizontal is the image x axis.
    x = pts[:, 0] * cos + pts[:, 1] * sin
    y = -pts[:, 0] * sin + pts[:, 1] * cos
    z = pts[:, 2]
    right = [r for r, _ in MIRROR_PAIRS]
    left = [lf for _, lf in MIRROR_PAIRS]
    across_x = float((x[left] - x[right]).sum())
    across_z = float((z[left] - z[right]).sum())
    up, down = list(UPPER_MIDLINE), list(LOWER_MIDLINE)
    down_y = float(y[down].mean() - y[up].mean())
    down_z = float(z[down].mean() - z[up].mean())
    yaw = math.degrees(math.atan2(across_z, across_x))
    # Looking up brings the chin nearer (its z falls below the forehead's).
    pitch = math.degrees(math.atan2(-down_z, down_y))
    return HeadPose(yaw=yaw, pitch=pitch, roll=math.degrees(roll))


def width_over_height(points: np.ndarray) -> float:
    """The face's width across the mirror pairs over its height down the midline, in the image
    plane only: the person's own frontal ratio times cos(yaw). Read against the same person's
    frontal ratio it gives the turn without depth, which is how `head_pose` is checked."""
    pts = np.asarray(points, dtype=np.float64)
    roll = landmarks_angle(pts)
    cos, sin = math.cos(roll), math.sin(roll)
    x = pts[:, 0] * cos + pts[:, 1] * sin
    y = -pts[:, 0] * sin + pts[:, 1] * cos
    right = [r for r, _ in MIRROR_PAIRS]
    left = [lf for _, lf in MIRROR_PAIRS]
    height = float(y[list(LOWER_MIDLINE)].mean() - y[list(UPPER_MIDLINE)].mean())
    return float((x[left] - x[right]).sum()) / height if height > 0 else math.nan
