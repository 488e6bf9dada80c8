"""Media and models the tests make for themselves (nothing from ../shared/data)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import ColorPrimaries, Colorspace, ColorTrc
from skimage import data as skdata

from swapwatch.engines.base import METADATA_KEY, ModelInfo


def astronaut_face() -> np.ndarray:
    """A 256x256 head-and-shoulders crop of scikit-image's public-domain astronaut (RGB)."""
    image = skdata.astronaut()
    return np.ascontiguousarray(image[0:300, 90:390])


@dataclass(frozen=True)
class Placement:
    """Where a face sits in the picture: centre as a fraction of the frame, and its size."""

    cx: float
    cy: float
    size: int  # side of the pasted head picture, pixels
    sway: float = 6.0  # pixels of slow movement, so trackers have something to follow
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)


def render_frame(
    width: int, height: int, placements: Sequence[Placement], t: float, background: int = 40
) -> np.ndarray:
    frame = np.full((height, width, 3), background, np.uint8)
    head = astronaut_face()
    for p in placements:
        scaled = cv2.resize(head, (p.size, p.size), interpolation=cv2.INTER_AREA)
        if p.tint != (1.0, 1.0, 1.0):
            scaled = np.clip(scaled * np.asarray(p.tint, np.float32), 0, 255).astype(np.uint8)
        x = int(p.cx * width - p.size / 2 + p.sway * math.sin(2 * math.pi * 0.5 * t))
        y = int(p.cy * height - p.size / 2 + p.sway * math.cos(2 * math.pi * 0.3 * t))
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + p.size, width), min(y + p.size, height)
        if x1 > x0 and y1 > y0:
            frame[y0:y1, x0:x1] = scaled[y0 - y : y1 - y, x0 - x : x1 - x]
    return frame


def write_video(
    path: Path,
    placements: Sequence[Placement],
    seconds: float = 2.0,
    fps: int = 30,
    size: tuple[int, int] = (640, 360),
    codec: str = "libx264",
    container_format: str | None = None,
    pix_fmt: str = "yuv420p",
    bt709: bool = False,
) -> Path:
    """Encode an animated scene with PyAV (`pix_fmt` "yuvj420p": full-range levels, as phones
    and webcams' MJPEG give; `bt709`: the stream is tagged with the HD colour matrix)."""
    width, height = size
    with av.open(str(path), mode="w", format=container_format) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt
        if bt709:
            stream.codec_context.colorspace = Colorspace.ITU709
            stream.codec_context.color_primaries = ColorPrimaries.BT709
            stream.codec_context.color_trc = ColorTrc.BT709
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        for i in range(int(seconds * fps)):
            image = render_frame(width, height, placements, i / fps)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_linear_model(
    path: Path,
    weights: Sequence[float] = (0.0, 0.0, 0.0),
    bias: float = 0.0,
    size: int = 224,
    temperature: float = 1.0,
    trained: bool = False,
    crop_size: int = 0,
) -> Path:
    """A tiny ONNX detector: logit = bias + weights . (mean normalised colour of the crop).
    With `crop_size`, faces are cut at that side and shrunk to `size` for it.

    Built with onnx.helper, so its output is known exactly: a constant model (zero weights) or one
    that reacts to the colour of the face it is given.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.asarray(weights, np.float32).reshape(3, 1), "w")
    b = numpy_helper.from_array(np.asarray([bias], np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["crops"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "w"], ["mm"]),
            helper.make_node("Add", ["mm", "b"], ["logit"]),
        ],
        "linear_colour",
        [helper.make_tensor_value_info("crops", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["N", 1])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    info = ModelInfo(
        name="test-linear-colour",
        input_size=size,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        temperature=temperature,
        trained=trained,
        crop_size=crop_size,
    )
    helper.set_model_props(model, {METADATA_KEY: info.to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def face_landmarks(image: np.ndarray) -> np.ndarray:
    """The 468 landmarks of the one face in `image`, found by the live pipeline's models."""
    from swapwatch.faces.detection import FaceDetector
    from swapwatch.faces.geometry import landmark_roi_from_detection
    from swapwatch.faces.landmarks import LandmarkModel

    detector = FaceDetector()
    try:
        detections = detector.detect(image)
    finally:
        detector.close()
    assert len(detections) == 1
    roi = landmark_roi_from_detection(detections.boxes[0], detections.keypoints[0])
    return LandmarkModel().run(image, roi).points
