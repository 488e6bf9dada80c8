"""Live-path augmentations: make aligned training crops look like faces seen in live video.

A face that reaches the detector from WebRTC or RTMP has been through a camera (motion blur, low
light and sensor noise, coloured room light, sometimes MJPEG), often a streaming app's beauty filter
(edge-preserving skin smoothing), a scaler (the face covers few pixels of the frame) and a
low-bitrate video encoder (P-frames, not stills). Each step here is a frozen parameter object that
is sampled once and then applied to any number of images; `LivePathAugment` samples a whole plan
so a real crop and its self-blended fake are degraded identically and still differ only by the
blend.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import Literal

import av
import cv2
import numpy as np

Codec = Literal["h264", "vp8"]
Fill = Literal["solid", "texture", "blur"]
Op = Callable[[np.ndarray], np.ndarray]

_ENCODERS: dict[Codec, Literal["libx264", "libvpx"]] = {"h264": "libx264", "vp8": "libvpx"}
_ENCODER_OPTIONS: dict[Codec, dict[str, str]] = {
    "h264": {"preset": "veryfast", "tune": "zerolatency"},  # OBS's default preset
    "vp8": {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"},
}
# FFmpeg hands both encoders whole kbit/s; below 1 kbit/s they would get 0.
_MIN_BITRATE = 1000
_DOWN_INTERPOLATIONS = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_AREA, cv2.INTER_CUBIC)
_UP_INTERPOLATIONS = (cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_LANCZOS4)
# Where occluders go in a face-centred crop: (x range, y centre) as fractions of the side.
_EYES = ((0.25, 0.75), 0.40)
_MOUTH = ((0.35, 0.65), 0.70)
_FILLS: tuple[Fill, ...] = ("solid", "texture", "blur")

Range = tuple[float, float]


@dataclass(frozen=True, slots=True)
class AugmentConfig:
    """How often each step runs (`*_p`) and the ranges its parameters are drawn from."""

    flip_p: float = 0.5
    colour_p: float = 0.4
    beauty_p: float = 0.15
    occlusion_p: float = 0.15
    motion_blur_p: float = 0.15
    low_light_p: float = 0.2
    jpeg_p: float = 0.3
    scale_p: float = 0.3
    reencode_p: float = 0.5
    vp8_share: float = 0.5  # of re-encodes; the rest are H.264
    colour_gain: float = 0.25  # per-channel gain, +- fraction: white balance and RGB room light
    colour_contrast: Range = (0.8, 1.25)
    colour_saturation: Range = (0.7, 1.3)
    colour_shift: float = 15.0  # brightness offset, +- 0-255 units
    beauty_strength: Range = (0.4, 1.0)  # share of the smoothed picture mixed in
    beauty_sigma_colour: Range = (10.0, 40.0)  # 0-255 units: edges stronger than this survive
    beauty_radius: Range = (0.01, 0.03)  # of the side, the spatial reach of the smoothing
    occlusion_area: Range = (0.03, 0.25)  # fraction of the crop
    blur_length: tuple[int, int] = (3, 15)  # pixels
    brightness: Range = (0.25, 1.0)  # gain applied after the gamma
    gamma: Range = (1.0, 1.4)
    shot_noise: Range = (2e-4, 5e-3)  # variance per unit of signal, signal in [0, 1], log-uniform
    read_noise: Range = (0.002, 0.015)  # standard deviation, signal in [0, 1], log-uniform
    chroma_noise: float = 0.5  # largest share of the noise that is independent per channel
    jpeg_quality: tuple[int, int] = (30, 95)
    scale: Range = (0.3, 1.0)  # of the side
    bpp: Range = (0.01, 0.15)  # bits per pixel per frame, log-uniform
    reencode_frames: int = 3  # the last, a P-frame, is kept
    jitter: float = 1.0  # largest shift of the lead-in frames, pixels
    fps: int = 30

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_p") or f.name in ("vp8_share", "chroma_noise"):
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"{f.name} must be in [0, 1], got {value}")
            elif isinstance(value, tuple) and not 0 < value[0] <= value[1]:
                raise ValueError(f"{f.name} must be (low, high) with 0 < low <= high, got {value}")
        if self.reencode_frames < 1 or self.fps < 1:
            raise ValueError("reencode_frames and fps must be positive")

    @classmethod
    def none(cls) -> AugmentConfig:
        """No augmentation at all, for validation."""
        return cls(
            flip_p=0.0,
            colour_p=0.0,
            beauty_p=0.0,
            occlusion_p=0.0,
            motion_blur_p=0.0,
            low_light_p=0.0,
            jpeg_p=0.0,
            scale_p=0.0,
            reencode_p=0.0,
        )


DEFAULT_CONFIG = AugmentConfig()


def _log_uniform(rng: np.random.Generator, bounds: Range) -> float:
    return float(np.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]))))


def _to_uint8(image: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return out


def reencode_frames(
    frames: Sequence[np.ndarray], codec: Codec, bitrate_bps: float, fps: int = 30
) -> list[np.ndarray]:
    """Encode RGB uint8 frames (even sides) as a live stream would, decode them, return them all.

    Single-threaded, so the same input always gives the same output.
    """
    height, width = frames[0].shape[:2]
    encoder = av.CodecContext.create(_ENCODERS[codec], "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = Fraction(1, fps)
    encoder.framerate = Fraction(fps, 1)
    encoder.bit_rate = max(round(bitrate_bps), _MIN_BITRATE)
    encoder.gop_size = 2 * fps
    encoder.thread_count = 1
    encoder.options = _ENCODER_OPTIONS[codec]
    decoder = av.CodecContext.create(codec, "r")
    decoder.thread_count = 1
    decoded: list[np.ndarray] = []
    for i, image in enumerate([*frames, None]):
        frame = None
        if image is not None:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
        for packet in encoder.encode(frame):
            decoded.extend(f.to_ndarray(format="rgb24") for f in decoder.decode(packet))
    decoded.extend(f.to_ndarray(format="rgb24") for f in decoder.decode(None))
    return decoded


@dataclass(frozen=True, slots=True)
class Reencode:
    """Encode a short clip ending in the image, keep its last frame: a P-frame, as in live video."""

    codec: Codec
    bpp: float
    shifts: tuple[tuple[float, float], ...]  # (dx, dy) pixels of each lead-in frame
    fps: int = 30

    @classmethod
    def sample(
        cls, rng: np.random.Generator, config: AugmentConfig, codec: Codec | None = None
    ) -> Reencode:
        if codec is None:
            codec = "vp8" if rng.random() < config.vp8_share else "h264"
        bpp = _log_uniform(rng, config.bpp)
        jitter = rng.uniform(-config.jitter, config.jitter, (config.reencode_frames - 1, 2))
        shifts = tuple((float(dx), float(dy)) for dx, dy in jitter)
        return cls(codec, bpp, shifts, config.fps)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        padded = cv2.copyMakeBorder(image, 0, height % 2, 0, width % 2, cv2.BORDER_REPLICATE)
        size = (padded.shape[1], padded.shape[0])
        lead_in = [
            cv2.warpAffine(
                padded,
                np.array([[1, 0, dx], [0, 1, dy]], np.float32),
                size,
                borderMode=cv2.BORDER_REFLECT,
            )
            for dx, dy in self.shifts
        ]
        bitrate = self.bpp * size[0] * size[1] * self.fps
        last = reencode_frames([*lead_in, padded], self.codec, bitrate, self.fps)[-1]
        return np.ascontiguousarray(last[:height, :width])


@dataclass(frozen=True, slots=True)
class Resize:
    width: int
    height: int
    interpolation: int

    def __call__(self, image: np.ndarray) -> np.ndarray:
        resized: np.ndarray = cv2.resize(
            image, (self.width, self.height), interpolation=self.interpolation
        )
        return resized


def sample_rescale(
    rng: np.random.Generator, shape: tuple[int, ...], config: AugmentConfig
) -> tuple[Resize, Resize]:
    """A downscale to an even size (so a codec can run in between) and the upscale back."""
    height, width = shape[:2]
    factor = rng.uniform(*config.scale)
    down = Resize(
        max(2 * round(width * factor / 2), 16),
        max(2 * round(height * factor / 2), 16),
        int(rng.choice(_DOWN_INTERPOLATIONS)),
    )
    return down, Resize(width, height, int(rng.choice(_UP_INTERPOLATIONS)))


@dataclass(frozen=True, slots=True, eq=False)
class LowLight:
    """Darken with a gamma and a gain, then add shot and read noise from a fixed noise field."""

    gamma: float
    gain: float
    shot: float
    read: float
    noise: np.ndarray  # H x W x 3 float32, unit variance

    @classmethod
    def sample(
        cls, rng: np.random.Generator, shape: tuple[int, ...], config: AugmentConfig
    ) -> LowLight:
        height, width = shape[:2]
        chroma = rng.uniform(0.0, config.chroma_noise)
        # Mostly the same noise in all channels (ISPs denoise chroma), partly per channel.
        noise = math.sqrt(1 - chroma**2) * rng.standard_normal((height, width, 1), np.float32)
        noise = noise + chroma * rng.standard_normal((height, width, 3), np.float32)
        return cls(
            gamma=rng.uniform(*config.gamma),
            gain=rng.uniform(*config.brightness),
            shot=_log_uniform(rng, config.shot_noise),
            read=_log_uniform(rng, config.read_noise),
            noise=noise,
        )

    def __call__(self, image: np.ndarray) -> np.ndarray:
        signal = self.gain * (image.astype(np.float32) / 255.0) ** self.gamma
        noisy = signal + np.sqrt(self.shot * signal + self.read**2) * self.noise
        return _to_uint8(noisy * 255.0)


@dataclass(frozen=True, slots=True)
class MotionBlur:
    length: int  # pixels
    angle: float  # degrees

    @classmethod
    def sample(cls, rng: np.random.Generator, config: AugmentConfig) -> MotionBlur:
        low, high = config.blur_length
        return cls(int(rng.integers(low, high + 1)), rng.uniform(0.0, 180.0))

    def kernel(self) -> np.ndarray:
        """A segment of `length` pixels through the centre, spread bilinearly between pixels.

        Anti-aliased drawing would widen it across the direction of motion; splatting points
        along it does not.
        """
        side = self.length | 1
        half = (self.length - 1) / 2
        t = np.linspace(-half, half, 8 * self.length)
        xs = side // 2 + t * math.cos(math.radians(self.angle))
        ys = side // 2 + t * math.sin(math.radians(self.angle))
        x0, y0 = np.floor(xs).astype(np.intp), np.floor(ys).astype(np.intp)
        fx, fy = xs - x0, ys - y0
        canvas = np.zeros((side + 1, side + 1), np.float64)
        for dx, dy, weight in (
            (0, 0, (1 - fx) * (1 - fy)),
            (1, 0, fx * (1 - fy)),
            (0, 1, (1 - fx) * fy),
            (1, 1, fx * fy),
        ):
            np.add.at(canvas, (y0 + dy, x0 + dx), weight)
        kernel = canvas[:side, :side].astype(np.float32)
        normalised: np.ndarray = kernel / kernel.sum()
        return normalised

    def __call__(self, image: np.ndarray) -> np.ndarray:
        blurred: np.ndarray = cv2.filter2D(image, -1, self.kernel(), borderType=cv2.BORDER_REFLECT)
        return blurred


@dataclass(frozen=True, slots=True, eq=False)
class Occlusion:
    """A rotated rectangle or ellipse, filled with a colour, a smooth colour field or a blur."""

    centre: tuple[float, float]  # x, y as fractions of width, height
    area: float  # fraction of the crop, before clipping at its edges
    aspect: float  # width / height
    angle: float  # degrees
    ellipse: bool
    fill: Fill
    colours: np.ndarray  # 3 x 3 x 3 uint8; "solid" uses the first
    blur_sigma: float  # fraction of the width, for "blur"

    @classmethod
    def sample(cls, rng: np.random.Generator, config: AugmentConfig) -> Occlusion:
        region = rng.integers(0, 3)
        if region == 2:
            centre = (rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9))
        else:
            (x_low, x_high), y = _EYES if region == 0 else _MOUTH
            centre = (rng.uniform(x_low, x_high), y + rng.uniform(-0.05, 0.05))
        return cls(
            centre=centre,
            area=rng.uniform(*config.occlusion_area),
            aspect=_log_uniform(rng, (0.5, 2.0)),
            angle=rng.uniform(0.0, 180.0),
            ellipse=bool(rng.random() < 0.5),
            fill=_FILLS[int(rng.integers(len(_FILLS)))],
            colours=rng.integers(0, 256, (3, 3, 3), dtype=np.uint8),
            blur_sigma=rng.uniform(0.02, 0.05),
        )

    def mask(self, height: int, width: int) -> np.ndarray:
        """Float32 H x W in [0, 1]; edges anti-aliased."""
        canvas = np.zeros((height, width), np.uint8)
        pixels = self.area * height * width
        centre = (self.centre[0] * width, self.centre[1] * height)
        if self.ellipse:
            axes = (
                math.sqrt(pixels * self.aspect / math.pi),
                math.sqrt(pixels / self.aspect / math.pi),
            )
            box = (centre, (2 * axes[0], 2 * axes[1]), self.angle)
            cv2.ellipse(canvas, box, 255, -1, cv2.LINE_AA)
        else:
            sides = (math.sqrt(pixels * self.aspect), math.sqrt(pixels / self.aspect))
            corners = cv2.boxPoints((centre, sides, self.angle))
            cv2.fillConvexPoly(canvas, np.round(corners * 16).astype(np.int32), 255, cv2.LINE_AA, 4)
        return canvas.astype(np.float32) / 255.0

    def __call__(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        if self.fill == "solid":
            cover = np.broadcast_to(self.colours[0, 0].astype(np.float32), image.shape)
        elif self.fill == "texture":
            cover = cv2.resize(self.colours, (width, height), interpolation=cv2.INTER_CUBIC)
        else:
            cover = cv2.GaussianBlur(image, (0, 0), sigmaX=self.blur_sigma * width)
        alpha = self.mask(height, width)[..., None]
        return _to_uint8(alpha * cover + (1.0 - alpha) * image)


@dataclass(frozen=True, slots=True)
class Jpeg:
    quality: int

    @classmethod
    def sample(cls, rng: np.random.Generator, config: AugmentConfig) -> Jpeg:
        low, high = config.jpeg_quality
        return cls(int(rng.integers(low, high + 1)))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        # OpenCV's JPEG expects BGR; in RGB order its luma would weight red and blue wrongly.
        ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        decoded = cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else None
        if decoded is None:
            raise RuntimeError("OpenCV failed to round-trip a JPEG")
        return np.ascontiguousarray(decoded[..., ::-1])


@dataclass(frozen=True, slots=True, eq=False)
class ColourJitter:
    """White balance, contrast about mid-grey, saturation and brightness: the same map per pixel."""

    gains: np.ndarray  # 3 float32
    contrast: float
    saturation: float
    shift: float

    @classmethod
    def sample(cls, rng: np.random.Generator, config: AugmentConfig) -> ColourJitter:
        return cls(
            gains=(1.0 + rng.uniform(-config.colour_gain, config.colour_gain, 3)).astype(
                np.float32
            ),
            contrast=_log_uniform(rng, config.colour_contrast),
            saturation=rng.uniform(*config.colour_saturation),
            shift=rng.uniform(-config.colour_shift, config.colour_shift),
        )

    def __call__(self, image: np.ndarray) -> np.ndarray:
        out = image.astype(np.float32) * self.gains
        grey = out @ np.array([0.299, 0.587, 0.114], np.float32)
        out = grey[..., None] + self.saturation * (out - grey[..., None])
        return _to_uint8((out - 128.0) * self.contrast + 128.0 + self.shift)


@dataclass(frozen=True, slots=True)
class BeautyFilter:
    """Edge-preserving smoothing as streaming apps apply to skin: texture goes, edges stay."""

    strength: float
    sigma_colour: float
    radius: float  # of the side

    @classmethod
    def sample(cls, rng: np.random.Generator, config: AugmentConfig) -> BeautyFilter:
        return cls(
            strength=rng.uniform(*config.beauty_strength),
            sigma_colour=rng.uniform(*config.beauty_sigma_colour),
            radius=rng.uniform(*config.beauty_radius),
        )

    def __call__(self, image: np.ndarray) -> np.ndarray:
        sigma_space = max(1.0, self.radius * max(image.shape[:2]))
        smooth = cv2.bilateralFilter(
            np.ascontiguousarray(image), -1, self.sigma_colour, sigma_space
        ).astype(np.float32)
        return _to_uint8(self.strength * smooth + (1.0 - self.strength) * image)


def horizontal_flip(image: np.ndarray) -> np.ndarray:
    flipped: np.ndarray = cv2.flip(image, 1)
    return flipped


def reencode(
    image: np.ndarray,
    rng: np.random.Generator,
    codec: Codec | None = None,
    config: AugmentConfig = DEFAULT_CONFIG,
) -> np.ndarray:
    """Re-encode as the last frame of a short live clip; codec drawn from the config if None."""
    return Reencode.sample(rng, config, codec)(image)


def rescale(
    image: np.ndarray, rng: np.random.Generator, config: AugmentConfig = DEFAULT_CONFIG
) -> np.ndarray:
    down, up = sample_rescale(rng, image.shape, config)
    return up(down(image))


def low_light(
    image: np.ndarray, rng: np.random.Generator, config: AugmentConfig = DEFAULT_CONFIG
) -> np.ndarray:
    return LowLight.sample(rng, image.shape, config)(image)


def motion_blur(
    image: np.ndarray, rng: np.random.Generator, config: AugmentConfig = DEFAULT_CONFIG
) -> np.ndarray:
    return MotionBlur.sample(rng, config)(image)


def occlude(
    image: np.ndarray, rng: np.random.Generator, config: AugmentConfig = DEFAULT_CONFIG
) -> np.ndarray:
    return Occlusion.sample(rng, config)(image)


def jpeg(
    image: np.ndarray, rng: np.random.Generator, config: AugmentConfig = DEFAULT_CONFIG
) -> np.ndarray:
    return Jpeg.sample(rng, config)(image)


def colour_jitter(
    image: np.ndarray, rng: np.random.Generator, config: AugmentConfig = DEFAULT_CONFIG
) -> np.ndarray:
    return ColourJitter.sample(rng, config)(image)


def beautify(
    image: np.ndarray, rng: np.random.Generator, config: AugmentConfig = DEFAULT_CONFIG
) -> np.ndarray:
    return BeautyFilter.sample(rng, config)(image)


@dataclass(frozen=True, slots=True)
class Plan:
    """Sampled steps in the order they run; applying it draws nothing random."""

    ops: tuple[Op, ...]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        out = image if self.ops else image.copy()
        for op in self.ops:
            out = op(out)
        return out

    def moved(self, plane: np.ndarray) -> np.ndarray:
        """A per-pixel map of the input picture (H x W) moved as the picture's pixels are:
        mirrored with it, its only step that moves pixels (the others smear, cover, or shrink
        and restore, but leave every pixel where it was)."""
        flips = sum(op is horizontal_flip for op in self.ops)
        return np.ascontiguousarray(plane[:, ::-1] if flips % 2 else plane)

    def uncovered(self, height: int, width: int) -> np.ndarray:
        """H x W float32 of the output: how much of each pixel no occluder covers (1: all)."""
        out: np.ndarray = np.ones((height, width), np.float32)
        for op in self.ops:
            if op is horizontal_flip:  # an occluder drawn before a flip is mirrored by it
                out = out[:, ::-1]
            elif isinstance(op, Occlusion):
                out = out * (1.0 - op.mask(height, width))
        return np.ascontiguousarray(out)


class LivePathAugment:
    """Degrade face crops as the live path would, the same way for every image of one call."""

    def __init__(self, config: AugmentConfig = DEFAULT_CONFIG) -> None:
        self.config = config

    def plan(self, shape: tuple[int, ...], rng: np.random.Generator) -> Plan:
        """Draw every parameter for crops of `shape`.

        Steps run in the order of the physical path: scene, camera, sensor, ISP, beauty filter,
        MJPEG, the face's size in the frame, the video codec.
        """
        c = self.config
        ops: list[Op] = []
        if rng.random() < c.flip_p:
            ops.append(horizontal_flip)
        if rng.random() < c.occlusion_p:
            ops.append(Occlusion.sample(rng, c))
        if rng.random() < c.motion_blur_p:
            ops.append(MotionBlur.sample(rng, c))
        if rng.random() < c.low_light_p:
            ops.append(LowLight.sample(rng, shape, c))
        if rng.random() < c.colour_p:
            ops.append(ColourJitter.sample(rng, c))
        if rng.random() < c.beauty_p:
            ops.append(BeautyFilter.sample(rng, c))
        if rng.random() < c.jpeg_p:
            ops.append(Jpeg.sample(rng, c))
        # The codec runs at the reduced size: a small face is encoded with few pixels.
        rescaled = sample_rescale(rng, shape, c) if rng.random() < c.scale_p else None
        if rescaled:
            ops.append(rescaled[0])
        if rng.random() < c.reencode_p:
            ops.append(Reencode.sample(rng, c))
        if rescaled:
            ops.append(rescaled[1])
        return Plan(tuple(ops))

    def __call__(self, images: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        """One plan, applied to each image (H x W x 3 uint8, all the same shape)."""
        return self.apply(images, rng)[0]

    def apply(
        self, images: Sequence[np.ndarray], rng: np.random.Generator
    ) -> tuple[list[np.ndarray], Plan]:
        """As calling it, with the plan that was applied."""
        if not images:
            return [], Plan(())
        shape = images[0].shape
        for image in images:
            if image.shape != shape or image.ndim != 3 or shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError("images must all be H x W x 3 uint8 of one shape")
        plan = self.plan(shape, rng)
        return [plan(image) for image in images], plan
