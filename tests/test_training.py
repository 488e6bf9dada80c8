"""The detector network, its ImageNet start, training pairs, a tiny training run, and export."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import pytest
import skimage

torch = pytest.importorskip("torch")

from media import Placement, write_video  # noqa: E402

from swapwatch.cli.main import main  # noqa: E402
from swapwatch.datasets.crops import CONTEXT_SIZE, CROP_SIZE, CropCache, FaceCrops  # noqa: E402
from swapwatch.datasets.lists import Label, MediaItem  # noqa: E402
from swapwatch.datasets.splits import FakeKind, Part, TrainingSplit, part_of  # noqa: E402
from swapwatch.engines.base import shrunk  # noqa: E402
from swapwatch.engines.onnxruntime import OnnxRuntimeEngine  # noqa: E402
from swapwatch.errors import ConfigError, ModelError  # noqa: E402
from swapwatch.evaluation.metrics import roc_auc  # noqa: E402
from swapwatch.training.augment import (  # noqa: E402
    AugmentConfig,
    Occlusion,
    Plan,
    horizontal_flip,
)
from swapwatch.training.boundary import (  # noqa: E402
    BoundaryTask,
    boundary_loss,
    boundary_maps,
    tapped_features,
)
from swapwatch.training.dataset import (  # noqa: E402
    POSE_FALLBACK_PARTNERS,
    BlendRegion,
    CropPool,
    PairConfig,
    PairSampler,
    build_pool,
    match_pairs,
    pose_partners,
)
from swapwatch.training.distill import DistillConfig, Teacher, distillation_loss  # noqa: E402
from swapwatch.training.export import (  # noqa: E402
    export,
    fit_temperature,
    load_checkpoint,
    refit_batch_norm,
    training_split,
)
from swapwatch.training.model import (  # noqa: E402
    INPUT_MEAN,
    INPUT_STD,
    SwapDetector,
    imagenet_name_map,
    imagenet_weights_path,
    load_imagenet,
)
from swapwatch.training.quantize import FLOAT_LEADING_CONVS, quantize  # noqa: E402
from swapwatch.training.sharpness import (  # noqa: E402
    match_sharpness,
    sharpness,
    soften,
    soften_to,
)
from swapwatch.training.sphere import SphereLoss, captured_unit_features  # noqa: E402
from swapwatch.training.train import (  # noqa: E402
    ExtraTasks,
    TrainConfig,
    _check_same_split,
    batch_loss,
    learning_rate,
    to_tensor,
    training_batch,
    update_ema,
)

torch.set_num_threads(1)


def test_detector_gives_one_logit_per_crop() -> None:
    model = SwapDetector().eval()
    with torch.no_grad():
        out = model(torch.zeros(3, 3, CROP_SIZE, CROP_SIZE))
    assert out.shape == (3,)
    parameters = sum(p.numel() for p in model.parameters())
    assert 3.0e6 < parameters < 5.0e6  # EfficientNet-Lite0 class


def test_training_crops_are_normalised_as_at_inference_and_laid_out_channels_last() -> None:
    crops = np.random.default_rng(3).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    x = training_batch(crops, 32, "cpu")
    # Channels-last trains 1.5 times as fast here (benchmarks/train_step.py); the values stay
    # those inference feeds the exported model, and export's own batches stay channels-first.
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert to_tensor(crops, "cpu").is_contiguous()
    mean = np.asarray(INPUT_MEAN, np.float32)
    std = np.asarray(INPUT_STD, np.float32)
    expected = ((crops / np.float32(255.0) - mean) / std).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-5)
    model = SwapDetector().eval()
    with torch.no_grad():
        np.testing.assert_allclose(
            model(x).numpy(), model(x.contiguous()).numpy(), rtol=1e-4, atol=1e-4
        )


@pytest.mark.parametrize("backbone", ["lite0", "lite1"])
def test_imagenet_weights_fill_the_whole_backbone(backbone: str) -> None:
    model = SwapDetector(backbone=backbone)
    assert load_imagenet(model) == len(imagenet_name_map(model))
    published = torch.load(
        imagenet_weights_path(model.backbone), map_location="cpu", weights_only=True
    )
    state = model.state_dict()
    for ours, theirs in imagenet_name_map(model).items():
        assert torch.equal(state[ours], published[theirs]), ours
    # Everything but our one-logit classifier came from the checkpoint.
    fresh = {k for k in state if k not in imagenet_name_map(model)}
    assert fresh == {"classifier.weight", "classifier.bias"}


def test_learning_rate_warms_up_then_decays_to_zero() -> None:
    config = TrainConfig(out=Path("."), steps=100, lr=1e-3, warmup_steps=10)
    rates = [learning_rate(s, config) for s in range(100)]
    assert rates[0] < rates[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in itertools.pairwise(rates[10:]))
    assert rates[-1] < 1e-5


def test_fit_temperature_recovers_the_scale_of_calibrated_logits() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2.0, 20000)
    labels = (rng.random(20000) < 1 / (1 + np.exp(-true_logits))).astype(np.float32)
    assert fit_temperature(true_logits * 3.0, labels) == pytest.approx(3.0, rel=0.05)
    assert fit_temperature(true_logits * 0.5, labels) == pytest.approx(0.5, rel=0.05)


@pytest.fixture(scope="module")
def face_items(tmp_path_factory: pytest.TempPathFactory) -> list[MediaItem]:
    directory = tmp_path_factory.mktemp("train")
    # A side-by-side "recording": the same face both sides, the right one tinted as a stand-in
    # for a swap, so the halves pair up frame by frame.
    pair = write_video(
        directory / "pair.mp4",
        [Placement(0.25, 0.5, 220), Placement(0.75, 0.5, 220, tint=(1.3, 0.8, 0.8))],
        seconds=0.4,
        size=(960, 360),
    )
    real = write_video(directory / "real.mp4", [Placement(0.5, 0.5, 260)], seconds=0.4)
    return [
        MediaItem(pair, Label.REAL, "p", "rec", (0.0, 0.0, 0.5, 1.0), "pair"),
        MediaItem(pair, Label.FAKE, "p", "rec", (0.5, 0.0, 1.0, 1.0), "pair"),
        MediaItem(real, Label.REAL, "r", "video"),
    ]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CropCache]:
    crops = CropCache(tmp_path_factory.mktemp("cache"), every=3)
    yield crops
    crops.close()  # its face models: MediaPipe tasks left to the garbage collector complain


def test_halves_of_a_recording_pair_up_frame_by_frame(
    face_items: list[MediaItem], cache: CropCache
) -> None:
    left, right = cache.get(face_items[0]), cache.get(face_items[1])
    matches = match_pairs(left, right)
    assert len(matches) == len(left) == len(right) > 0
    assert all(left.frames[i] == right.frames[j] for i, j in matches)
    pool = build_pool(face_items, cache)
    assert len(pool.pairs) == len(matches)
    assert pool.fake.sum() == len(right)


def turned_landmarks(yaw: float) -> np.ndarray:
    """468 points whose nose sits `yaw` of the way from the face's middle to a cheek."""
    points = np.full((468, 2), 112.0, np.float32)
    points[33], points[263] = (80, 100), (160, 100)  # outer eye corners, level
    points[234], points[454] = (60, 120), (180, 120)  # cheeks
    points[1] = (120 + 60 * yaw, 120)  # nose tip
    return points


def cached_faces(
    cache: CropCache, item: MediaItem, frames: list[int], yaws: list[float], level: int = 10
) -> None:
    """Put faces of the given head turns into the cache as if extracted from `item`; each crop
    is flat grey at `level` + 10 * its frame, so a drawn crop tells which one it was."""
    item.path.write_bytes(f"stand-in for {item.path.name}".encode())  # the cache keys on bytes
    crops = np.stack(
        [np.full((CONTEXT_SIZE, CONTEXT_SIZE, 3), level + 10 * f, np.uint8) for f in frames]
    )
    faces = FaceCrops(
        crops,
        np.stack([turned_landmarks(y) for y in yaws]),
        np.asarray(frames, np.int32),
        np.zeros(len(frames), np.int32),
        np.full((len(frames), 2), 0.5, np.float32),
    )
    cache.directory.mkdir(parents=True, exist_ok=True)
    np.savez(cache.path(item), **{f: getattr(faces, f) for f in FaceCrops.__slots__})


def test_a_fake_without_a_real_in_its_frame_meets_a_real_turned_the_same_way(
    tmp_path: Path,
) -> None:
    cache = CropCache(tmp_path / "cache")
    recording, other = tmp_path / "rec.mp4", tmp_path / "other.mp4"
    real_half = MediaItem(recording, Label.REAL, "a", "rec", (0.0, 0.0, 0.5, 1.0), "rec")
    fake_half = MediaItem(recording, Label.FAKE, "a", "rec", (0.5, 0.0, 1.0, 1.0), "rec")
    elsewhere = MediaItem(other, Label.REAL, "b", "video")
    # The real half has a frontal face in frame 0 and a face turned 0.65 in frame 2; the fake
    # half has a frame-0 face (paired) and one turned 0.7 in frame 4, where the real half has none.
    # Another video has a face turned 0.72, closer in yaw but not of the same recording.
    cached_faces(cache, elsewhere, [1, 3, 5], [0.0, 0.72, -0.1], level=5)
    cached_faces(cache, real_half, [0, 2], [0.0, 0.65])
    cached_faces(cache, fake_half, [0, 4], [0.0, 0.7], level=110)
    pool = build_pool([elsewhere, real_half, fake_half], cache)
    assert pool.pairs.tolist() == [[3, 5]]
    assert pool.lone_fakes.tolist() == [6]
    assert [p.tolist() for p in pool.partners] == [[4]]  # the turned real of its own recording
    sampler = PairSampler(pool, config=PairConfig(recorded_pair_share=1.0), train=False)
    rng = np.random.default_rng(0)
    levels = {
        (int(r[0, 0, 0]), int(f[0, 0, 0])) for r, f in (sampler.sample(rng) for _ in range(40))
    }
    # Frame 0's real with frame 0's fake; frame 2's turned real with frame 4's turned fake.
    assert levels == {(10, 110), (30, 150)}


def test_a_recorded_fake_is_paired_with_reals_of_its_own_group_and_kinds_are_balanced(
    tmp_path: Path,
) -> None:
    """A swap still meets the real picture of its own group (the same person), even when
    another person's face is turned more alike; and one live tool's many frames do not drown
    the few fakes of other kinds."""
    cache = CropCache(tmp_path / "cache")
    target = MediaItem(tmp_path / "target.png", Label.REAL, "person-a", "real-image-x")
    stranger = MediaItem(tmp_path / "stranger.png", Label.REAL, "person-b", "real-image-y")
    swap = MediaItem(tmp_path / "swap.png", Label.FAKE, "person-a", "swap-x")
    talk_ref = MediaItem(tmp_path / "ref.png", Label.REAL, "person-c", "real-image-z")
    talking = MediaItem(tmp_path / "talk.mp4", Label.FAKE, "person-c", "talking-head-x")
    live = MediaItem(tmp_path / "live.mp4", Label.FAKE, "person-d", "live-swap-x")
    cached_faces(cache, target, [0], [0.5], level=1)  # crop 0
    cached_faces(cache, stranger, [0], [0.3], level=2)  # crop 1
    cached_faces(cache, swap, [0], [0.3], level=100)  # crop 2
    cached_faces(cache, talk_ref, [0], [0.0], level=3)  # crop 3
    cached_faces(cache, talking, [0], [0.0], level=150)  # crop 4
    cached_faces(cache, live, list(range(20)), [0.3] * 20, level=50)  # crops 5-24
    pool = build_pool([target, stranger, swap, talk_ref, talking, live], cache)
    partners = dict(zip(pool.lone_fakes.tolist(), (p.tolist() for p in pool.partners), strict=True))
    assert partners[2] == [0]  # its own group's real, not the stranger turned alike
    assert partners[4] == [3]  # the talking head's own reference photo
    assert partners[5] == [1]  # no real of its group: a real turned alike
    sampler = PairSampler(pool, config=PairConfig(recorded_pair_share=1.0), train=False)
    rng = np.random.default_rng(0)
    fakes = [int(sampler.sample(rng)[1][0, 0, 0]) for _ in range(600)]
    kinds = {"swap": sum(f == 100 for f in fakes), "talking": sum(f == 150 for f in fakes)}
    # Three kinds drawn alike: about 200 each, though live swaps hold 20 of the 22 fakes.
    assert 150 < kinds["swap"] < 250 and 150 < kinds["talking"] < 250, kinds


def test_pose_partners_fall_back_to_other_recordings_then_to_the_closest_turns() -> None:
    yaw = np.array([0.0, 0.02, -0.5, 0.45, 0.5, 0.9, -0.45], np.float32)
    reals = np.array([0, 1, 2, 3])  # crops 4-6 are fakes
    # Its own recording has only frontal reals: partners come from the whole pool.
    assert pose_partners(yaw, 4, np.array([0, 1]), reals).tolist() == [3]
    # Nothing within reach: the closest turns.
    assert pose_partners(yaw, 5, np.array([0]), reals).tolist() == [3, 1, 0, 2]
    # ... at most POSE_FALLBACK_PARTNERS of them.
    many = np.r_[np.linspace(-0.9, -0.1, 20), 0.9].astype(np.float32)
    closest = pose_partners(many, 20, np.zeros(0, np.int64), np.arange(20))
    assert closest.tolist() == list(range(19, 19 - POSE_FALLBACK_PARTNERS, -1))
    # The sign matters: a face turned left is not a partner for one turned right.
    assert pose_partners(yaw, 6, np.zeros(0, np.int64), reals).tolist() == [2]


def test_pairs_share_every_augmentation(face_items: list[MediaItem], cache: CropCache) -> None:
    pool = build_pool(face_items[2:], cache)  # reals only: every fake is a self-blend
    # Without the codec, whose rate control spends a pair's bits differently (test_augment checks
    # that it treats equal inputs alike), the background of a pair must match exactly.
    sampler = PairSampler(pool, dataclasses.replace(AugmentConfig(), reencode_p=0.0))
    rng = np.random.default_rng(3)
    for _ in range(8):
        real, fake = sampler.sample(rng)
        assert real.shape == fake.shape == (CROP_SIZE, CROP_SIZE, 3)
        difference = np.abs(real.astype(int) - fake).max(axis=2)
        # The blend sits on the face; the corners are background.
        corners = np.concatenate([difference[:24, :24].ravel(), difference[-24:, -24:].ravel()])
        assert corners.max() == 0
    images, labels = sampler.batch(3, rng)
    assert images.shape == (6, CROP_SIZE, CROP_SIZE, 3)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]


def fixed_pairs(face_items: list[MediaItem], cache: CropCache) -> tuple[Any, Any]:
    """Four fixed, unaugmented self-blend pairs as tensors: a memorisation check's batch."""
    pool = build_pool(face_items[2:], cache)
    images, labels = PairSampler(pool, train=False).batch(4, np.random.default_rng(0))
    return to_tensor(images, "cpu"), torch.from_numpy(labels)


def losses_of_a_few_steps(model: SwapDetector, x: Any, y: Any, steps: int = 12) -> list[float]:
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=1e-3)
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


def test_a_few_steps_on_self_blends_lower_the_loss(
    face_items: list[MediaItem], cache: CropCache
) -> None:
    torch.manual_seed(0)
    x, y = fixed_pairs(face_items, cache)
    model = SwapDetector()
    load_imagenet(model)
    losses = losses_of_a_few_steps(model, x, y)
    assert losses[-1] < 0.5 * losses[0]


def test_on_crops_shrunk_to_a_128_px_input_the_detector_still_learns(
    face_items: list[MediaItem], cache: CropCache
) -> None:
    """The 128 px recipe: the same 224 px pairs shrunk by area averaging, as training does."""
    torch.manual_seed(0)
    pool = build_pool(face_items[2:], cache)
    images, labels = PairSampler(pool, train=False).batch(4, np.random.default_rng(0))
    small = shrunk(images, 128)
    assert small.shape[1:3] == (128, 128)
    model = SwapDetector()
    load_imagenet(model)
    losses = losses_of_a_few_steps(model, to_tensor(small, "cpu"), torch.from_numpy(labels))
    assert losses[-1] < 0.5 * losses[0]


def test_with_its_early_stages_frozen_the_detector_still_learns_and_keeps_them(
    face_items: list[MediaItem], cache: CropCache
) -> None:
    torch.manual_seed(0)
    x, y = fixed_pairs(face_items, cache)
    model = SwapDetector()
    load_imagenet(model)
    imagenet = {k: v.clone() for k, v in model.state_dict().items()}
    model.freeze_early_stages(2)  # the stem, stage 1 (one block) and stage 2 (two blocks)
    losses = losses_of_a_few_steps(model, x, y)
    assert losses[-1] < 0.5 * losses[0]
    after = model.state_dict()
    frozen = ("stem.", "blocks.0.", "blocks.1.", "blocks.2.")
    kept = [k for k in after if k.startswith(frozen)]
    assert any("running_mean" in k for k in kept)  # batch-norm statistics are kept too
    for name in kept:
        assert torch.equal(after[name], imagenet[name]), name
    learnt = "blocks.3.project.0.weight"
    assert not torch.equal(after[learnt], imagenet[learnt])
    # Scoring is unchanged by the freezing: the same weights give the same logits either way.
    plain = SwapDetector()
    plain.load_state_dict(after)
    model.eval()
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x))


def test_the_weight_average_keeps_frozen_weights_exactly() -> None:
    model = SwapDetector()
    model.freeze_early_stages(2)
    ema = SwapDetector()
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)  # as training keeps its average
    start = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.01)
    for _ in range(200):
        update_ema(ema, model, 0.995)
    after = ema.state_dict()
    assert torch.equal(after["stem.0.0.weight"], start["stem.0.0.weight"])
    assert torch.equal(after["blocks.2.project.0.weight"], start["blocks.2.project.0.weight"])
    assert not torch.equal(after["blocks.3.project.0.weight"], start["blocks.3.project.0.weight"])


def tiny_run_options(face_items: list[MediaItem], cache: CropCache) -> list[str]:
    """`swapwatch train` arguments but --out for a run of seconds: a list of one side-by-side
    recording and one real clip, two pairs a batch, no validation groups."""
    pair = face_items[0].path
    listing = pair.parent / "list.csv"
    listing.write_text(
        "file,label,group,family,crop\n"
        f"{pair.name},pair,p,rec,\n{face_items[2].path.name},real,r,video,\n"
    )
    options = ["--pairs", "2", "--threads", "1", "--every", "3", "--validation-fraction", "0"]
    return [str(listing), *options, "--cache-dir", str(cache.directory)]


def test_distillation_pulls_the_student_towards_the_teacher_beside_the_labels() -> None:
    teacher = torch.tensor([4.0, -4.0])
    labels = torch.tensor([0.0, 1.0])  # against the teacher: with weight 1 only the teacher counts
    student = torch.zeros(2, requires_grad=True)
    distillation_loss(student, teacher, labels, DistillConfig(weight=1.0)).backward()
    assert student.grad is not None
    assert student.grad[0] < 0 < student.grad[1]  # a descent step moves each towards the teacher
    # A student that already agrees with the teacher is pulled no further by it.
    agreed = teacher.clone().requires_grad_(True)
    distillation_loss(agreed, teacher, labels, DistillConfig(weight=1.0)).backward()
    assert agreed.grad is not None
    torch.testing.assert_close(agreed.grad, torch.zeros(2), atol=1e-6, rtol=0)
    # Half and half, by hand: (1 - w) BCE(s, y) + w T^2 BCE(s / T, sigmoid(t / T)).
    s, t, y, temperature = 1.0, 3.0, 1.0, 2.0
    p = 1 / (1 + math.exp(-s / temperature))
    q = 1 / (1 + math.exp(-t / temperature))
    soft = -(q * math.log(p) + (1 - q) * math.log(1 - p))
    hard = math.log(1 + math.exp(-s))
    value = distillation_loss(
        torch.tensor([s]), torch.tensor([t]), torch.tensor([y]), DistillConfig(0.5, temperature)
    )
    assert value.item() == pytest.approx(0.5 * hard + 0.5 * temperature**2 * soft, rel=1e-5)
    for bad in ({"weight": 0.0}, {"weight": 1.5}, {"temperature": 0.0}):
        with pytest.raises(ConfigError, match="distillation"):
            DistillConfig(**bad)


def test_a_128_px_student_distilled_from_a_224_px_teacher_learns(
    face_items: list[MediaItem], cache: CropCache
) -> None:
    """The distilled recipe: the teacher reads the 224 px crops, the student the same crops
    shrunk to 128 px; the student's loss above what the teacher's uncertainty leaves falls."""
    torch.manual_seed(0)
    pool = build_pool(face_items[2:], cache)
    images, labels = PairSampler(pool, train=False).batch(4, np.random.default_rng(0))
    y = torch.from_numpy(labels)
    teacher = SwapDetector()
    load_imagenet(teacher)
    losses_of_a_few_steps(teacher, to_tensor(images, "cpu"), y)
    teacher.eval()
    with torch.no_grad():
        taught = teacher(to_tensor(images, "cpu"))
    assert roc_auc(taught.numpy(), labels) == 1.0
    student = SwapDetector()
    load_imagenet(student)
    student.train()
    x = to_tensor(shrunk(images, 128), "cpu")
    optimiser = torch.optim.AdamW(student.parameters(), lr=1e-3)
    losses = []
    for _ in range(12):
        loss = distillation_loss(student(x), taught, y, DistillConfig())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    # The teacher's softened scores are not 0 or 1, so the loss cannot fall below w T^2 times
    # their entropy; what is above that floor must halve.
    config = DistillConfig()
    softened = taught / config.temperature
    entropy = torch.nn.functional.binary_cross_entropy_with_logits(
        softened, torch.sigmoid(softened)
    )
    floor = config.weight * config.temperature**2 * entropy.item()
    assert losses[-1] - floor < 0.5 * (losses[0] - floor), (floor, losses)


def test_a_run_distils_from_a_teacher_of_its_own_split_and_keeps_it_through_a_resume(
    face_items: list[MediaItem],
    cache: CropCache,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    common = tiny_run_options(face_items, cache)
    teacher_run = tmp_path / "teacher"
    assert main(["train", *common, "--out", str(teacher_run), "--steps", "2"]) == 0
    teacher = teacher_run / "last.pt"
    # Each step the frozen teacher reads the batch at its own 224 px and every loss the step
    # takes (two with sharpness-aware steps) is distilled from what it said.
    import swapwatch.training.train as training

    seen: list[tuple[tuple[int, ...], bool]] = []
    losses: list[torch.Tensor] = []
    read, distil = Teacher.logits, training.distillation_loss

    def watched_read(self: Teacher, x: Any) -> Any:
        seen.append((tuple(x.shape[1:]), self.model.training))
        return read(self, x)

    def watched_distil(student: Any, taught: Any, *args: Any) -> Any:
        losses.append(taught)
        return distil(student, taught, *args)

    monkeypatch.setattr(Teacher, "logits", watched_read)
    monkeypatch.setattr(training, "distillation_loss", watched_distil)
    sharp = [*common, "--out", str(tmp_path / "sharp"), "--input-size", "128", "--sam", "0.05"]
    assert main(["train", *sharp, "--teacher", str(teacher), "--steps", "1"]) == 0
    assert seen == [((3, CROP_SIZE, CROP_SIZE), False)]
    assert len(losses) == 2 and torch.equal(losses[0], losses[1])
    monkeypatch.undo()

    student_run = tmp_path / "student"
    student = [*common, "--out", str(student_run), "--input-size", "128"]
    assert main(["train", *student, "--teacher", str(teacher), "--steps", "2"]) == 0
    record = json.loads((student_run / "training.json").read_text())
    assert record["teacher"]["sha256"] == hashlib.sha256(teacher.read_bytes()).hexdigest()
    assert record["teacher"]["input_size"] == CROP_SIZE and record["teacher"]["step"] == 2
    assert record["config"]["distill_weight"] == 0.5
    assert record["config"]["distill_temperature"] == 2.0
    assert main(["train", *student, "--teacher", str(teacher), "--steps", "3", "--resume"]) == 0
    capsys.readouterr()
    # A resume that drops the teacher, changes its settings or finds another file at its path
    # would change the recipe halfway: refused.
    assert main(["train", *student, "--steps", "4", "--resume"]) == 2
    assert f"started with --teacher {teacher.resolve()}" in capsys.readouterr().err
    reweighted = [*student, "--teacher", str(teacher), "--distill-weight", "0.7"]
    assert main(["train", *reweighted, "--steps", "4", "--resume"]) == 2
    assert "started with --distill-weight 0.5" in capsys.readouterr().err
    warmer = [*student, "--teacher", str(teacher), "--distill-temperature", "4"]
    assert main(["train", *warmer, "--steps", "4", "--resume"]) == 2
    assert "started with --distill-temperature 2" in capsys.readouterr().err
    taught_late = [*common, "--out", str(teacher_run), "--teacher", str(teacher)]
    assert main(["train", *taught_late, "--steps", "3", "--resume"]) == 2
    assert "started with --teacher (none)" in capsys.readouterr().err
    # The exported student names the run it learned from.
    exported = tmp_path / "student.onnx"
    export(student_run / "last.pt", exported, [], cache)
    metadata = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    assert json.loads(metadata["swapwatch"])["training"]["teacher"] == record["teacher"]
    assert main(["train", *common, "--out", str(teacher_run), "--steps", "3", "--resume"]) == 0
    capsys.readouterr()
    assert main(["train", *student, "--teacher", str(teacher), "--steps", "4", "--resume"]) == 2
    assert "has changed since this run started" in capsys.readouterr().err
    # A teacher trained on another split (here without talking heads) may have learned this
    # run's held-out groups or lacks what it trains on: refused before any step.
    other = tmp_path / "other"
    leave_out = ["--leave-out", "talking-head", "--steps", "1"]
    assert main(["train", *common, "--out", str(other), *leave_out]) == 0
    capsys.readouterr()
    fresh = [*common, "--out", str(tmp_path / "fresh"), "--steps", "1"]
    assert main(["train", *fresh, "--teacher", str(other / "last.pt")]) == 2
    err = capsys.readouterr().err
    assert "the teacher" in err and "on another split" in err and "--teacher" in err
    assert not (tmp_path / "fresh" / "last.pt").exists()
    assert main(["train", *fresh, "--distill-temperature", "4"]) == 2
    assert "need --teacher" in capsys.readouterr().err


def test_train_resumes_from_its_checkpoint_and_export_matches_pytorch(
    face_items: list[MediaItem],
    cache: CropCache,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "run"
    listing, *options = tiny_run_options(face_items, cache)
    common = [listing, "--out", str(out), *options]
    assert main(["train", *common, "--steps", "2"]) == 0
    first = torch.load(out / "last.pt", weights_only=False)
    assert first["step"] == 2
    assert main(["train", *common, "--steps", "3", "--resume"]) == 0
    resumed = torch.load(out / "last.pt", weights_only=False)
    assert resumed["step"] == 3
    record = json.loads((out / "training.json").read_text())
    assert record["steps_done"] == 3 and "swapwatch train" in record["command"]

    # A fine-tune starts from the run's exported weights, not ImageNet's, and says so.
    tuned = tmp_path / "tuned"
    tune = [*common[:2], str(tuned), *common[3:], "--lr", "1e-12"]
    source = out / "last.pt"
    assert main(["train", *tune, "--steps", "1", "--init", str(source)]) == 0
    start = torch.load(tuned / "last.pt", weights_only=False)
    for name, tensor in start["model"].items():
        if name.endswith("weight") and tensor.dim() == 4:  # conv kernels: BN statistics move
            torch.testing.assert_close(tensor, resumed["model"][name], rtol=0, atol=1e-6)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    expected_init = {"checkpoint": str(source.resolve()), "sha256": digest, "step": 3}
    # A resumed fine-tune keeps its start, given --init again or not; another start is refused.
    assert main(["train", *tune, "--steps", "2", "--resume"]) == 0
    record = json.loads((tuned / "training.json").read_text())
    assert record["steps_done"] == 2
    assert {k: record["init"][k] for k in expected_init} == expected_init
    assert main(["train", *tune, "--steps", "3", "--resume", "--init", str(source)]) == 0
    assert main(["train", *tune, "--steps", "4", "--resume", "--init", str(out / "x.pt")]) == 2
    assert "this run started from" in capsys.readouterr().err

    # Early stages frozen: recorded with the run, kept through a resume, never changed by it.
    frozen_run = tmp_path / "frozen"
    frozen = [*common[:2], str(frozen_run), *common[3:], "--frozen-stages", "2"]
    assert main(["train", *frozen, "--steps", "2"]) == 0
    assert main(["train", *frozen, "--steps", "3", "--resume"]) == 0
    kept = torch.load(frozen_run / "last.pt", weights_only=False)
    assert kept["config"]["frozen_stages"] == 2 and kept["step"] == 3
    imagenet = SwapDetector()
    load_imagenet(imagenet)
    for name, tensor in imagenet.state_dict().items():
        if name.startswith(("stem.", "blocks.2.")):
            assert torch.equal(kept["model"][name], tensor), name
            assert torch.equal(kept["training_model"][name], tensor), name
    capsys.readouterr()
    unfrozen = [*common[:2], str(frozen_run), *common[3:]]
    assert main(["train", *unfrozen, "--steps", "4", "--resume"]) == 2
    assert "started with --frozen-stages 2" in capsys.readouterr().err
    # A smaller input: trained on crops shrunk to it, exported at it, fed 224 crops by the engine.
    small_run = tmp_path / "small"
    small = [*common[:2], str(small_run), *common[3:], "--input-size", "128"]
    assert main(["train", *small, "--steps", "2"]) == 0
    assert (
        main(["train", *common[:2], str(small_run), *common[3:], "--steps", "3", "--resume"]) == 2
    )
    assert "started with --input-size 128" in capsys.readouterr().err
    small_model = tmp_path / "small.onnx"
    export(small_run / "last.pt", small_model, [], cache)  # checks ONNX against PyTorch
    dims = onnx.load(str(small_model)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[1:]] == [3, 128, 128]
    engine = OnnxRuntimeEngine(small_model, device="cpu", threads=1)
    try:
        assert (engine.info.input_size, engine.info.cut_size) == (128, CROP_SIZE)
        assert engine.infer(np.zeros((2, CROP_SIZE, CROP_SIZE, 3), np.uint8)).shape == (2,)
    finally:
        engine.close()
    # Sharpness-aware steps: each step moves every trainable weight uphill before the second
    # pass and back exactly before the optimiser; recorded with the run; a resume with another
    # radius is refused.
    import swapwatch.training.train as training

    moves: list[tuple[bool, bool]] = []

    class Spy(training.SharpnessAware):
        def ascend(self) -> None:
            self.before = [p.detach().clone() for p in self.parameters]
            super().ascend()
            moved = any(
                not torch.equal(p, b) for p, b in zip(self.parameters, self.before, strict=True)
            )
            moves.append((moved, False))

        def descend(self) -> None:
            super().descend()
            back = all(torch.equal(p, b) for p, b in zip(self.parameters, self.before, strict=True))
            moves[-1] = (moves[-1][0], back)

    monkeypatch.setattr(training, "SharpnessAware", Spy)
    sam_run = tmp_path / "sam"
    with_sam = [*common[:2], str(sam_run), *common[3:], "--sam", "0.05"]
    assert main(["train", *with_sam, "--steps", "2"]) == 0
    assert moves == [(True, True), (True, True)]
    assert json.loads((sam_run / "training.json").read_text())["config"]["sam_rho"] == 0.05
    capsys.readouterr()
    without = [*common[:2], str(sam_run), *common[3:], "--steps", "3", "--resume"]
    assert main(["train", *without]) == 2
    assert "started with --sam 0.05" in capsys.readouterr().err
    random_start = [*common[:2], str(tmp_path / "random"), *common[3:], "--no-imagenet"]
    assert main(["train", *random_start, "--steps", "1", "--frozen-stages", "1"]) == 2
    assert "needs ImageNet's or --init's" in capsys.readouterr().err
    tuned_model = tmp_path / "tuned.onnx"
    export(tuned / "last.pt", tuned_model, [], cache)
    tuned_engine = OnnxRuntimeEngine(tuned_model, device="cpu")
    try:
        recorded = tuned_engine.info.training["init"]
        assert {k: recorded[k] for k in expected_init} == expected_init
    finally:
        tuned_engine.close()

    not_a_checkpoint = tmp_path / "notes.pt"
    not_a_checkpoint.write_text("not a checkpoint")
    other_shapes = tmp_path / "other.pt"
    torch.save({"model": {"head.weight": torch.zeros(3, 3)}}, other_shapes)
    for bad, message in (
        (not_a_checkpoint, "cannot read checkpoint"),
        (other_shapes, "does not fit the detector:"),
        (tmp_path / "missing.pt", "no such checkpoint"),
    ):
        fresh = [*common[:2], str(tmp_path / "never"), *common[3:], "--steps", "1"]
        assert main(["train", *fresh, "--init", str(bad)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("swapwatch: error: ") and message in err[0]
    assert not (tmp_path / "never").exists()

    model_path = tmp_path / "model.onnx"
    report = export(out / "last.pt", model_path, [], cache)
    assert report.parity_max_difference < 1e-3
    engine = OnnxRuntimeEngine(model_path, device="cpu")
    try:
        assert engine.info.input_size == CROP_SIZE and engine.info.trained
        assert engine.info.training["steps"] == 3
        crops = np.random.default_rng(1).integers(0, 256, (2, CROP_SIZE, CROP_SIZE, 3), np.uint8)
        model = SwapDetector()
        model.load_state_dict(resumed["model"])
        model.eval()
        with torch.no_grad():
            expected = model(to_tensor(crops, "cpu")).numpy()
        np.testing.assert_allclose(engine.infer(crops), expected, atol=1e-3)
        assert math.isfinite(float(engine.infer(crops[:1])[0]))
    finally:
        engine.close()

    # The int8 version: smaller, QDQ, close to the float model, its check in its metadata.
    pool = build_pool(face_items[2:], cache)
    sampler = PairSampler(pool, train=False)
    images, labels = sampler.batch(12, np.random.default_rng(5))
    int8_path = tmp_path / "model-int8.onnx"
    with pytest.raises(ModelError, match="int8 quantization costs too much"):
        quantize(model_path, int8_path, images[::2], images, labels, fit_temperature, -1.0)
    assert not int8_path.exists() and not list(tmp_path.glob("*.partial.onnx"))
    # A 3-step model ranks at chance, so its AUC may move either way: no gate here.
    quantized = quantize(model_path, int8_path, images[::2], images, labels, fit_temperature, 1.0)
    assert int8_path.stat().st_size < model_path.stat().st_size / 3
    ops = {node.op_type for node in onnx.load(str(int8_path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # The first convolutions, which read the finest detail, keep float weights; the rest int8.
    int8_weights = int8_conv_weights(int8_path)
    assert len(int8_weights) > FLOAT_LEADING_CONVS
    assert int8_weights[:FLOAT_LEADING_CONVS] == [False] * FLOAT_LEADING_CONVS
    assert all(int8_weights[FLOAT_LEADING_CONVS:])
    every_layer = tmp_path / "model-int8-all.onnx"
    quantize(model_path, every_layer, images[::2], images, labels, fit_temperature, 1.0, 0)
    assert all(int8_conv_weights(every_layer))
    for count, message in ((-1, "must not be negative"), (1000, "1000 float convolutions asked")):
        with pytest.raises(ModelError, match=message):
            quantize(
                model_path, every_layer, images[::2], images, labels, fit_temperature, 1.0, count
            )
    float_engine = OnnxRuntimeEngine(model_path, device="cpu")
    int8_engine = OnnxRuntimeEngine(int8_path, device="cpu")
    try:
        a, b = float_engine.infer(images), int8_engine.infer(images)
        # Logit units: this barely trained model's logits sit near 0, so compare absolutely.
        assert np.abs(a - b).max() < 0.1
        recorded = int8_engine.info.training["quantization"]
        assert recorded["check_crops"] == len(images)
        assert len(recorded["float_convs"]) == FLOAT_LEADING_CONVS == quantized.float_convs
        assert recorded["auc_int8"] == pytest.approx(quantized.auc_int8, abs=1e-4)
        assert int8_engine.info.temperature == pytest.approx(quantized.temperature, abs=1e-3)
    finally:
        float_engine.close()
        int8_engine.close()


def int8_conv_weights(model: Path) -> list[bool]:
    """For each convolution of an ONNX file in graph order: whether its weights are int8."""
    graph = onnx.load(str(model)).graph
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    return [n.input[1] in dequantized for n in graph.node if n.op_type == "Conv"]


def test_weights_trained_at_224_are_exported_at_a_smaller_input_with_refit_statistics(
    face_items: list[MediaItem],
    cache: CropCache,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    names = [f"person-{i}" for i in range(100)]
    held_out = next(n for n in names if part_of(n) is Part.VALIDATION)
    trained_on = next(n for n in names if part_of(n) is Part.TRAIN)
    pair, real = face_items[0].path, face_items[2].path
    listing = tmp_path / "list.csv"
    listing.write_text(
        "file,label,group,family,crop\n"
        f"{pair},pair,{trained_on},rec,\n{real},real,{trained_on},video,\n"
        f"{real},real,{held_out},video,\n"
    )
    data = ["--list", str(listing), "--cache-dir", str(cache.directory), "--every", "3"]
    run = tmp_path / "run"
    train = ["train", "--out", str(run), "--steps", "1", "--pairs", "2", "--threads", "1"]
    assert main([*train, *data[2:], str(listing)]) == 0
    resized = tmp_path / "resized.onnx"
    export_cli = ["export", str(run / "last.pt"), "--out", str(resized), *data]
    assert main([*export_cli, "--input-size", "96", "--refit-batch-norm", "8"]) == 0
    engine = OnnxRuntimeEngine(resized, device="cpu", threads=1)
    try:
        assert (engine.info.input_size, engine.info.cut_size) == (96, CROP_SIZE)
        assert engine.info.training["input_size_trained"] == CROP_SIZE
        assert engine.info.training["batch_norm_refit_crops"] == 8
        assert engine.infer(np.zeros((1, CROP_SIZE, CROP_SIZE, 3), np.uint8)).shape == (1,)
    finally:
        engine.close()
    capsys.readouterr()
    assert main([*export_cli, "--input-size", "300"]) == 2
    assert "--input-size must be within 64-224" in capsys.readouterr().err
    assert main([*export_cli, "--int8", str(tmp_path / "i8.onnx"), "--int8-float-convs", "-1"]) == 2
    assert "--int8-float-convs must not be negative" in capsys.readouterr().err


def test_batch_norm_statistics_are_refit_to_the_crops_at_the_input_size() -> None:
    model = SwapDetector()
    model.input_size = 96
    crops = np.random.default_rng(3).integers(0, 256, (16, CROP_SIZE, CROP_SIZE, 3), np.uint8)
    norm = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    seen: list[torch.Tensor] = []
    hook = norm.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].detach()))
    try:
        model.eval()
        with torch.no_grad():  # what the first batch-norm layer is given at 96 px
            model(to_tensor(shrunk(crops, 96), "cpu"))
    finally:
        hook.remove()
    momentum = norm.momentum
    refit_batch_norm(model, crops, batch=8)
    inputs = seen[0]
    torch.testing.assert_close(norm.running_mean, inputs.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    # The variance is the average of the two batches' unbiased variances.
    halves = [inputs[:8], inputs[8:]]
    unbiased = torch.stack([h.var(dim=(0, 2, 3), unbiased=True) for h in halves]).mean(0)
    torch.testing.assert_close(norm.running_var, unbiased, rtol=1e-4, atol=1e-5)
    assert norm.momentum == momentum and not model.training and not norm.training


def test_a_checkpoint_runs_no_code_when_exported(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[str, str]]:
            return (open, (str(marker), "w"))

    bad = tmp_path / "bad.pt"
    torch.save({"model": Payload()}, bad)
    with pytest.raises(ConfigError, match="cannot read checkpoint"):
        export(bad, tmp_path / "model.onnx", [], CropCache(tmp_path / "cache"))
    assert not marker.exists() and not (tmp_path / "model.onnx").exists()


def test_export_calibrates_on_the_groups_its_run_held_out(caplog: pytest.LogCaptureFixture) -> None:
    state = {"config": {"validation_fraction": 0.4, "split_seed": "other"}}
    old = TrainingSplit("family-fraction", 0.4, "other")
    assert training_split(state, None) == old  # runs from before the scheme was recorded
    assert training_split({}, None) == TrainingSplit("family-fraction", 0.25, "swapwatch")
    assert not caplog.records
    assert training_split(state, 0.2) == TrainingSplit("family-fraction", 0.2, "other")
    assert "may fit the temperature on groups the model trained on" in caplog.text
    caplog.clear()
    # A run on the fixed three-way split, leaving talking heads out: export splits alike.
    recorded = TrainingSplit(leave_out=FakeKind.TALKING_HEAD)
    state = {"config": {**recorded.to_json()}}
    assert training_split(state, None) == recorded
    assert not caplog.records


def test_the_larger_backbone_is_lite1_and_reads_images_as_imagenet_taught_it() -> None:
    # Built wrongly (a stage's depth, a kernel), the published weights would not fit, or would
    # fit and compute something else: their own ImageNet classifier must still name the picture.
    lite0, lite1 = SwapDetector(backbone="lite0").eval(), SwapDetector(backbone="lite1").eval()
    load_imagenet(lite1)
    assert len(lite1.blocks) == 21 and len(lite0.blocks) == 16
    published = torch.load(
        imagenet_weights_path(lite1.backbone), map_location="cpu", weights_only=True
    )
    imagenet_classifier = torch.nn.Linear(1280, 1000)
    imagenet_classifier.load_state_dict(
        {"weight": published["_fc.weight"], "bias": published["_fc.bias"]}
    )
    picture = skimage.data.coffee()[:, 100:500]  # a cup of coffee, the middle square of it
    x = to_tensor(cv2.resize(picture, (224, 224), interpolation=cv2.INTER_AREA)[None], "cpu")
    with torch.no_grad():
        classes = imagenet_classifier(lite1.features(x).mean(dim=(2, 3)))[0]
    assert int(classes.argmax()) == 967  # ImageNet's "espresso"
    # A stride in the wrong stage fits the weights and still names the picture; the sides of
    # the stages' outputs (EfficientNet's strides 2, 4, 8, 16, 16, 32, 32) do not.
    for model in (lite0, lite1):
        sides = []
        with torch.no_grad():
            y = model.stem(torch.zeros(1, 3, 224, 224))
            for i, block in enumerate(model.blocks):
                y = block(y)
                if i in {model.last_block_of(stage) for stage in range(1, 8)}:
                    sides.append(y.shape[-1])
        assert sides == [112, 56, 28, 14, 14, 7, 7], model.backbone.name
    with pytest.raises(RuntimeError, match="wants"):  # Lite0's weights do not fit Lite1
        load_imagenet(lite1, imagenet_weights_path(lite0.backbone))
    with pytest.raises(ConfigError, match="unknown backbone 'lite7'; one of lite0, lite1"):
        SwapDetector(backbone="lite7")


def test_a_lite1_run_starts_from_its_own_weights_keeps_its_backbone_and_exports(
    face_items: list[MediaItem],
    cache: CropCache,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    listing, *options = tiny_run_options(face_items, cache)
    run = tmp_path / "lite1"
    lite1 = [listing, "--out", str(run), *options, "--backbone", "lite1"]
    # Its stem and first two stages frozen, so that what it started from can be read back.
    assert main(["train", *lite1, "--steps", "2", "--frozen-stages", "2"]) == 0
    state = torch.load(run / "last.pt", weights_only=False)
    assert state["config"]["backbone"] == "lite1"
    imagenet = SwapDetector(backbone="lite1")
    load_imagenet(imagenet)
    for name, tensor in imagenet.state_dict().items():
        if name.startswith(("stem.", "blocks.3.")):  # stage 2 ends at block 3 in Lite1
            assert torch.equal(state["model"][name], tensor), name
    # A resume without the option would build Lite0 on Lite1's weights: refused, with the reason.
    capsys.readouterr()
    lite0 = [listing, "--out", str(run), *options]
    assert main(["train", *lite0, "--steps", "3", "--frozen-stages", "2", "--resume"]) == 2
    assert "started with --backbone lite1" in capsys.readouterr().err
    elsewhere = [listing, "--out", str(tmp_path / "tuned"), *options, "--steps", "1"]
    assert main(["train", *elsewhere, "--init", str(run / "last.pt")]) == 2
    refusal = capsys.readouterr().err
    assert "is a lite1 detector and this run trains lite0" in refusal
    assert "(add --backbone lite1)" in refusal
    exported = tmp_path / "lite1.onnx"
    export(run / "last.pt", exported, [], cache)  # checks ONNX Runtime against PyTorch
    engine = OnnxRuntimeEngine(exported, device="cpu", threads=1)
    try:
        assert engine.info.training["backbone"] == "lite1"
        assert engine.info.description.startswith("EfficientNet-Lite1,")
        assert engine.infer(np.zeros((2, CROP_SIZE, CROP_SIZE, 3), np.uint8)).shape == (2,)
    finally:
        engine.close()


def test_resume_and_init_refuse_a_run_made_on_another_split() -> None:
    without_talking = TrainingSplit(leave_out=FakeKind.TALKING_HEAD)
    state = {"config": without_talking.to_json()}
    _check_same_split(without_talking, state, "this run was started", "--resume")
    # Resumed without --leave-out, the run would go on training on talking heads.
    with pytest.raises(ConfigError, match=r"on another split .* --resume would mix them"):
        _check_same_split(TrainingSplit(), state, "this run was started", "--resume")
    # A run from before the fixed split (family-fraction) may have trained on lockbox groups.
    with pytest.raises(ConfigError, match="family-fraction"):
        _check_same_split(TrainingSplit(), {}, "v5 was trained", "--init")


def test_training_without_real_faces_or_with_bad_options_gets_one_line(
    face_items: list[MediaItem],
    cache: CropCache,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    common = ["train", "--out", str(tmp_path / "run"), "--steps", "1", "--threads", "1"]
    common += ["--cache-dir", str(cache.directory), "--validation-fraction", "0", "--every", "3"]
    # Every face labelled fake: nothing to make self-blends from.
    assert main([*common, "--fake", str(face_items[0].path.parent)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no real face found" in err[0], err
    for option, value, message in (
        ("--every", "0", "must be at least 1"),
        ("--validation-fraction", "1", "must be below 1"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main([*common, "--real", str(face_items[0].path.parent), option, value])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_self_blends_mask_follows_its_crop_through_shifts_and_mirrors(
    face_items: list[MediaItem], cache: CropCache
) -> None:
    pool = build_pool(face_items[2:], cache)  # reals only: every fake is a self-blend
    # Geometry only (window shifts and scales, the pair's flip, the plan's mirror every time),
    # so that a crop differs from its real exactly where the blend reached.
    sampler = PairSampler(pool, dataclasses.replace(AugmentConfig.none(), flip_p=1.0))
    rng = np.random.default_rng(5)
    mirrored_would_fail = []
    for _ in range(8):
        real, fake, region = sampler.sample_with_mask(rng)
        assert region is not None and (region.uncovered == 1).all()  # no occluder drawn
        mask = region.mask
        assert mask.shape == (CROP_SIZE, CROP_SIZE)
        assert mask.dtype == np.float32 and mask.min() >= 0.0 and mask.max() <= 1.0
        difference = np.abs(real.astype(int) - fake).max(axis=2)
        assert difference[mask == 0].max() == 0  # nothing blended where the mask says none
        assert difference[mask > 0.5 * mask.max()].mean() > 0  # and something where it says so
        mirrored_would_fail.append(difference[mask[:, ::-1] == 0].max() > 0)
    assert any(mirrored_would_fail)  # the check above would see a mask left unmirrored


def test_a_batch_with_masks_draws_the_batch_a_plain_one_draws(
    face_items: list[MediaItem], cache: CropCache
) -> None:
    pool = build_pool(face_items, cache)  # a recorded pair too: its fake's mask is unknown
    sampler = PairSampler(
        pool,
        dataclasses.replace(AugmentConfig(), reencode_p=0.0),
        config=PairConfig(recorded_pair_share=0.5),
    )
    images, labels = sampler.batch(12, np.random.default_rng(9))
    blended = sampler.batch_with_masks(12, np.random.default_rng(9))
    # The same crops: a run with the boundary task draws what a run without it draws.
    assert np.array_equal(blended.images, images) and np.array_equal(blended.labels, labels)
    assert blended.known[:12].all() and not blended.masks[:12].any()  # reals: nothing blended
    assert blended.uncovered.shape == blended.masks.shape
    fakes_known = blended.known[12:]
    assert fakes_known.any() and not fakes_known.all()
    assert all(m.max() > 0 for m in blended.masks[12:][fakes_known])  # self-blends
    assert not blended.masks[12:][~fakes_known].any()  # recorded fakes: no mask claimed


def test_the_boundary_map_marks_where_two_faces_mix_and_nowhere_else() -> None:
    ramp = np.tile(np.linspace(0.0, 1.0, CROP_SIZE, dtype=np.float32), (CROP_SIZE, 1))
    soft, hard = ramp[None], (ramp[None] > 0.5).astype(np.float32)
    covered = np.ones((1, CROP_SIZE, CROP_SIZE), np.float32)
    covered[0, :112] = 0.0  # an occluder over the top half
    masks = np.concatenate([soft, hard, soft])
    uncovered = np.concatenate([np.ones_like(soft), np.ones_like(hard), covered])
    maps = boundary_maps(masks, uncovered, 14)
    assert maps.shape == (3, 14, 14)
    across = maps[0].mean(axis=0)  # left to right: M rises from 0 to 1
    assert across[6:8].min() > 0.95 and across[0] < 0.3 and across[-1] < 0.3
    assert int(np.argmax(across)) in (6, 7)
    assert maps[1].max() < 0.2  # a hard paste has no mixed band (Face X-ray needs soft masks)
    assert not maps[2][:7].any() and np.allclose(maps[2][7:], maps[0][7:])  # hidden: untaught
    logits = torch.zeros(2, 14, 14, requires_grad=True)
    nothing_known = boundary_loss(logits, torch.from_numpy(maps[:2]), torch.tensor([False, False]))
    nothing_known.backward()
    assert nothing_known.item() == 0.0 and logits.grad is not None and not logits.grad.any()


def test_with_the_boundary_task_the_detector_learns_and_its_head_finds_the_blend(
    face_items: list[MediaItem], cache: CropCache
) -> None:
    torch.manual_seed(0)
    pool = build_pool(face_items[2:], cache)
    batch = PairSampler(pool, train=False).batch_with_masks(4, np.random.default_rng(0))
    x, y = to_tensor(batch.images, "cpu"), torch.from_numpy(batch.labels)
    targets = torch.from_numpy(boundary_maps(batch.masks, batch.uncovered, 14))
    floor = torch.nn.functional.binary_cross_entropy(targets, targets).item()
    model = SwapDetector()
    load_imagenet(model)
    task = BoundaryTask(1.0, model, "cpu")
    trained = torch.nn.ModuleList([model, task.head]).train()
    optimiser = torch.optim.AdamW(trained.parameters(), lr=1e-3)
    labels_loss, excess = [], []  # the boundary loss above what the soft maps make unavoidable
    for _ in range(15):
        logits, extra = task.logits_and_loss(model, x, batch)
        label = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
        optimiser.zero_grad()
        (label + extra).backward()
        optimiser.step()
        labels_loss.append(label.item())
        excess.append(extra.item() - floor)
    assert labels_loss[-1] < 0.5 * labels_loss[0]
    assert excess[-1] < 0.5 * excess[0]
    trained.eval()
    with torch.no_grad(), tapped_features(model) as taken:
        model(x)
        with_head = torch.sigmoid(task.head(taken[-1]))
    on_fakes, on_reals = with_head[4:], with_head[:4]
    assert torch.corrcoef(torch.stack([on_fakes.flatten(), targets[4:].flatten()]))[0, 1] > 0.5
    assert on_reals.mean() < on_fakes.mean()


def test_a_run_with_the_boundary_task_keeps_its_head_through_a_resume_and_exports_without_it(
    face_items: list[MediaItem],
    cache: CropCache,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = tmp_path / "boundary"
    listing, *options = tiny_run_options(face_items, cache)
    common = [listing, "--out", str(run), *options]
    assert main(["train", *common, "--boundary-weight", "1", "--steps", "2"]) == 0
    first = torch.load(run / "last.pt", weights_only=False)
    assert first["config"]["boundary_weight"] == 1.0
    head = first["boundary_head"]
    assert head is not None and set(first["model"]).isdisjoint(head)  # not in the detector
    # A resumed run goes on with its head: one step at a negligible rate leaves its kernels.
    still = ["--boundary-weight", "1", "--steps", "3", "--resume", "--lr", "1e-12"]
    assert main(["train", *common, *still]) == 0
    resumed = torch.load(run / "last.pt", weights_only=False)
    assert resumed["step"] == 3
    for name in ("body.0.0.weight", "out.weight"):
        torch.testing.assert_close(resumed["boundary_head"][name], head[name], rtol=0, atol=1e-6)
    capsys.readouterr()
    assert main(["train", *common, "--steps", "4", "--resume"]) == 2
    assert "started with --boundary-weight 1" in capsys.readouterr().err
    assert main(["train", *common, "--boundary-weight", "-1", "--steps", "1"]) == 2
    assert "--boundary-weight must be within 0-100" in capsys.readouterr().err
    frozen = [*common[:2], str(tmp_path / "frozen"), *common[3:], "--frozen-stages", "5"]
    assert main(["train", *frozen, "--boundary-weight", "1", "--steps", "1"]) == 2
    assert "would teach the detector nothing" in capsys.readouterr().err
    exported = tmp_path / "boundary.onnx"
    export(run / "last.pt", exported, [], cache)  # checks ONNX against PyTorch
    graph = onnx.load(str(exported)).graph
    assert len(graph.output) == 1
    assert not any("boundary" in i.name for i in graph.initializer)


def test_an_augmentation_plan_moves_a_map_with_its_pixels_and_says_what_an_occluder_hides() -> None:
    black = np.zeros((3, 3, 3), np.uint8)
    occluder = Occlusion((0.3, 0.4), 0.1, 1.5, 20.0, False, "solid", black, 0.03)
    plan = Plan((horizontal_flip, occluder))
    image = np.random.default_rng(1).integers(1, 256, (CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    out = plan(image)
    plane = np.arange(CROP_SIZE * CROP_SIZE, dtype=np.float32).reshape(CROP_SIZE, CROP_SIZE)
    assert np.array_equal(plan.moved(plane), plane[:, ::-1])  # mirrored as the picture
    assert np.array_equal(Plan((horizontal_flip, horizontal_flip)).moved(plane), plane)
    uncovered = plan.uncovered(CROP_SIZE, CROP_SIZE)
    covered = (out != image[:, ::-1]).any(axis=2)  # where the occluder changed the output
    assert covered.sum() > 1000
    assert uncovered[covered].max() < 1.0 and (uncovered[~covered] > 0.9).all()
    assert (uncovered == 0).sum() > 0.9 * covered.sum()


def test_on_the_unit_sphere_the_detector_learns_and_its_terms_fall(
    face_items: list[MediaItem], cache: CropCache
) -> None:
    torch.manual_seed(0)
    x, y = fixed_pairs(face_items, cache)
    model = SwapDetector(unit_features=True)
    load_imagenet(model)
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sphere = SphereLoss(0.5, 0.1)
    # The terms reach the backbone through the unit features, and not the classifier.
    _, parts = batch_loss(model, x, y, None, None, ExtraTasks(sphere=sphere))
    parts["sphere"].backward()
    assert model.head[0][0].weight.grad is not None and model.head[0][0].weight.grad.any()
    assert model.classifier.weight.grad is None or not model.classifier.weight.grad.any()
    label_losses, sphere_losses = [], []
    for _ in range(12):
        loss, parts = batch_loss(model, x, y, None, None, ExtraTasks(sphere=sphere))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        sphere_losses.append(parts["sphere"].item())
        label_losses.append(loss.item() - sphere_losses[-1])
    # Its logits are bounded by the classifier's norm, which grows step by step: the loss falls
    # slower than without the sphere, but the batch is ranked all the same.
    assert label_losses[-1] < 0.9 * label_losses[0]
    assert sphere_losses[-1] < sphere_losses[0]
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert logits[y == 1].min() > logits[y == 0].max()


def test_a_batch_norm_spreads_the_unit_features_over_the_sphere_and_the_detector_learns(
    face_items: list[MediaItem], cache: CropCache
) -> None:
    """Pooled ReLU6 features are never negative: on the sphere they crowd in one corner, where
    crops differ little in direction (v19 did not train). A batch norm first centres them."""
    x, y = fixed_pairs(face_items, cache)

    def mean_cosine(model: SwapDetector) -> float:
        model.eval()
        model.embedding.train()  # the batch's own statistics, as in a training step
        with torch.no_grad(), captured_unit_features(model) as seen:
            model(x)
        (features,) = seen
        similarity = features @ features.T
        return float(similarity[~torch.eye(len(features), dtype=torch.bool)].mean())

    torch.manual_seed(0)
    corner = SwapDetector(unit_features=True)
    load_imagenet(corner)
    torch.manual_seed(0)
    spread = SwapDetector(unit_features=True, feature_batch_norm=True)
    load_imagenet(spread)
    assert mean_cosine(corner) > 0.5 and mean_cosine(spread) < 0.1
    # A logit on unit features is bounded by the classifier's norm, so both learn slower than
    # the plain detector; spread out, the features are told apart sooner.
    torch.manual_seed(1)
    spread_losses = losses_of_a_few_steps(spread, x, y)
    torch.manual_seed(1)
    corner_losses = losses_of_a_few_steps(corner, x, y)
    assert spread_losses[-1] < 0.7 * spread_losses[0]
    assert spread_losses[-1] < corner_losses[-1]
    spread.eval()
    spread.embedding.train()
    with torch.no_grad():
        logits = spread(x)
    assert logits[y == 1].min() > logits[y == 0].max()


def test_a_run_with_a_batch_norm_before_the_sphere_keeps_it_through_a_resume_and_export(
    face_items: list[MediaItem],
    cache: CropCache,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = tmp_path / "bn-sphere"
    listing, *options = tiny_run_options(face_items, cache)
    common = [listing, "--out", str(run), *options]
    bn_sphere = ["--unit-features", "--feature-batch-norm"]
    assert main(["train", *common, *bn_sphere, "--steps", "2"]) == 0
    assert torch.load(run / "last.pt", weights_only=False)["config"]["feature_batch_norm"]
    capsys.readouterr()
    assert main(["train", *common, "--unit-features", "--steps", "3", "--resume"]) == 2
    assert "started with --feature-batch-norm; --resume needs the same" in capsys.readouterr().err
    other = [*common[:2], str(tmp_path / "other"), *common[3:]]
    assert main(["train", *other, "--feature-batch-norm", "--steps", "1"]) == 2
    assert "add --unit-features" in capsys.readouterr().err
    model, _ = load_checkpoint(run / "last.pt")
    assert model.feature_batch_norm
    exported = tmp_path / "bn-sphere.onnx"
    export(run / "last.pt", exported, [], cache)  # checks ONNX against PyTorch
    ops = {node.op_type for node in onnx.load(str(exported)).graph.node}
    assert "BatchNormalization" in ops or "Sub" in ops, ops
    # Its int8 version runs and keeps the features' normalisation (logits bounded alike).
    images, labels = PairSampler(build_pool(face_items[2:], cache), train=False).batch(
        6, np.random.default_rng(5)
    )
    int8_path = tmp_path / "bn-sphere-int8.onnx"
    quantize(exported, int8_path, images[::2], images, labels, fit_temperature, 1.0)
    float_engine = OnnxRuntimeEngine(exported, device="cpu")
    int8_engine = OnnxRuntimeEngine(int8_path, device="cpu")
    try:
        a, b = float_engine.infer(images), int8_engine.infer(images)
        assert np.isfinite(b).all() and np.abs(a - b).max() < 0.1
    finally:
        float_engine.close()
        int8_engine.close()


def test_a_run_on_the_unit_sphere_keeps_it_through_a_resume_and_export(
    face_items: list[MediaItem],
    cache: CropCache,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = tmp_path / "sphere"
    listing, *options = tiny_run_options(face_items, cache)
    common = [listing, "--out", str(run), *options]
    sphere = ["--unit-features", "--uniformity", "0.5", "--alignment", "0.1"]
    # With the boundary task beside it: each part of the loss is trained and logged apart.
    with caplog.at_level(logging.INFO, logger="swapwatch.training.train"):
        assert main(["train", *common, *sphere, "--boundary-weight", "1", "--steps", "10"]) == 0
    assert re.search(r"step 10/10 loss [\d.]+ \(boundary [\d.]+, sphere -?[\d.]+\)", caplog.text)
    sphere.extend(["--boundary-weight", "1"])
    config = torch.load(run / "last.pt", weights_only=False)["config"]
    assert (config["unit_features"], config["uniformity_weight"], config["alignment_weight"]) == (
        True,
        0.5,
        0.1,
    )
    assert main(["train", *common, *sphere, "--steps", "11", "--resume"]) == 0
    capsys.readouterr()
    assert main(["train", *common, "--boundary-weight", "1", "--steps", "12", "--resume"]) == 2
    assert "started with --unit-features; --resume needs the same" in capsys.readouterr().err
    other = [*common[:2], str(tmp_path / "other"), *common[3:]]
    assert main(["train", *other, "--uniformity", "0.5", "--steps", "1"]) == 2
    assert "add --unit-features" in capsys.readouterr().err
    assert main(["train", *other, *sphere[:3], "--alignment", "nan", "--steps", "1"]) == 2
    assert "--alignment must be within 0-100" in capsys.readouterr().err
    # The exported model puts its features on the sphere too (export checks ONNX against
    # PyTorch on real crops; a model without the normalisation would not match).
    model, _ = load_checkpoint(run / "last.pt")
    assert model.unit_features
    exported = tmp_path / "sphere.onnx"
    export(run / "last.pt", exported, [], cache)
    ops = {node.op_type for node in onnx.load(str(exported)).graph.node}
    assert "ReduceL2" in ops or "LpNormalization" in ops, ops


def pairs_sharpness_ratio(sampler: PairSampler, draws: int = 6) -> list[float]:
    rng = np.random.default_rng(5)
    drawn = [sampler.sample(rng) for _ in range(draws)]
    return [sharpness(fake) / sharpness(real) for real, fake in drawn]


def test_matched_recorded_pairs_leave_softness_nothing_to_teach(
    face_items: list[MediaItem], cache: CropCache
) -> None:
    """Most recorded swaps here are much softer than their real faces: unmatched, softness
    alone tells the fake of a pair; matched, the pair is equally sharp."""
    pool = build_pool(face_items, cache)
    for _, fake in pool.pairs:  # a swap generated at a third of the real face's resolution
        pool.crops[fake] = soften(pool.crops[fake], 3.0)

    def sampler(match: bool) -> PairSampler:
        config = PairConfig(recorded_pair_share=1.0, match_sharpness=match)
        return PairSampler(pool, AugmentConfig.none(), config=config)

    assert max(pairs_sharpness_ratio(sampler(False))) < 0.6
    matched = pairs_sharpness_ratio(sampler(True))
    assert all(0.85 < ratio < 1.15 for ratio in matched), matched


def test_a_fake_sharper_than_its_real_is_the_one_softened(
    face_items: list[MediaItem], cache: CropCache
) -> None:
    """Talking heads are sharper than their real faces: there the fake is softened, and the
    real face is left as it was."""
    crop = np.ascontiguousarray(build_pool(face_items[2:], cache).crops[0][:CROP_SIZE, :CROP_SIZE])
    real = soften(crop, 2.5)
    matched_real, matched_fake = match_sharpness(real, crop)
    assert matched_real is real
    assert sharpness(crop) > 1.5 * sharpness(real)
    assert abs(sharpness(matched_fake) / sharpness(real) - 1) < 0.15
    # And the other way round: the sharper real face is softened, the soft fake kept.
    matched_real, matched_fake = match_sharpness(crop, real)
    assert matched_fake is real and abs(sharpness(matched_real) / sharpness(real) - 1) < 0.15


def test_a_partner_a_little_softer_is_matched_closely(
    face_items: list[MediaItem], cache: CropCache
) -> None:
    """Resampling a crop at all costs it much of its finest detail: a partner only a little
    softer must still be matched closely, not overshot to a crop much softer than it."""
    crop = np.ascontiguousarray(build_pool(face_items[2:], cache).crops[0][:CROP_SIZE, :CROP_SIZE])
    for share in (0.9, 0.7, 0.4):
        target = share * sharpness(crop)
        assert abs(sharpness(soften_to(crop, target)) / target - 1) < 0.1, share


def test_matched_self_blends_are_as_sharp_as_their_real_faces(
    face_items: list[MediaItem], cache: CropCache
) -> None:
    """A self-blend softens or sharpens the face it blends, and with it the whole crop: unmatched,
    the crop's overall softness tells the blend; matched, each blend is as sharp as its face."""
    pool = build_pool(face_items, cache)

    def sampler(match: bool) -> PairSampler:
        config = PairConfig(recorded_pair_share=0.0, match_blend_sharpness=match)
        return PairSampler(pool, AugmentConfig.none(), config=config)

    unmatched = pairs_sharpness_ratio(sampler(False), draws=12)
    assert min(unmatched) < 0.8 and max(unmatched) > 1.2, unmatched
    matched = pairs_sharpness_ratio(sampler(True), draws=12)
    assert all(0.9 < ratio < 1.1 for ratio in matched), matched


Draw = tuple[np.ndarray, np.ndarray, BlendRegion | None]


def draws_without_and_with(pool: CropPool, option: str) -> tuple[list[Draw], list[Draw]]:
    """12 mixed draws (half recorded) without and with a PairConfig flag, from one seed; the
    random state after them must not depend on the flag."""
    drawn, states = [], []
    for match in (False, True):
        config = PairConfig(recorded_pair_share=0.5, **{option: match})
        sampler = PairSampler(pool, AugmentConfig.none(), config=config)
        rng = np.random.default_rng(2)
        drawn.append([sampler.sample_with_mask(rng) for _ in range(12)])
        states.append(rng.bit_generator.state)
    assert states[0] == states[1]
    return drawn[0], drawn[1]


def test_self_blends_are_drawn_alike_with_matching_on(
    face_items: list[MediaItem], cache: CropCache
) -> None:
    """--match-sharpness changes recorded pairs only: the self-blends of a mixed run and the
    draws after them are those of a run without it."""
    plain, matched = draws_without_and_with(build_pool(face_items, cache), "match_sharpness")
    recorded = [region is None for _, _, region in plain]
    assert any(recorded) and not all(recorded)
    for (real, fake, region), (real_m, fake_m, _) in zip(plain, matched, strict=True):
        if region is not None:  # a self-blend
            assert np.array_equal(real, real_m) and np.array_equal(fake, fake_m)


def test_blend_matching_changes_self_blends_only_and_keeps_their_regions(
    face_items: list[MediaItem], cache: CropCache
) -> None:
    """--match-blend-sharpness changes self-blend pairs only, moves no blend region, and leaves
    the draws after them as they were."""
    pool = build_pool(face_items, cache)
    plain, matched = draws_without_and_with(pool, "match_blend_sharpness")
    changed = 0
    for (real, fake, region), (real_m, fake_m, region_m) in zip(plain, matched, strict=True):
        if region is None:  # a recorded pair
            assert region_m is None
            assert np.array_equal(real, real_m) and np.array_equal(fake, fake_m)
        else:
            assert region_m is not None
            assert np.array_equal(region.mask, region_m.mask)
            changed += not (np.array_equal(real, real_m) and np.array_equal(fake, fake_m))
    assert changed, "no self-blend pair was matched"


def test_a_run_matching_sharpness_keeps_it_through_a_resume(
    face_items: list[MediaItem],
    cache: CropCache,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = tmp_path / "matched"
    listing, *options = tiny_run_options(face_items, cache)
    common = [listing, "--out", str(run), *options]
    assert main(["train", *common, "--match-sharpness", "--steps", "2"]) == 0
    assert torch.load(run / "last.pt", weights_only=False)["config"]["match_sharpness"] is True
    capsys.readouterr()
    assert main(["train", *common, "--steps", "3", "--resume"]) == 2
    assert "started with --match-sharpness; --resume needs the same" in capsys.readouterr().err
    blends = [listing, "--out", str(tmp_path / "blends"), *options]
    assert main(["train", *blends, "--match-blend-sharpness", "--steps", "2"]) == 0
    state = torch.load(tmp_path / "blends" / "last.pt", weights_only=False)
    assert state["config"]["match_blend_sharpness"] is True
    capsys.readouterr()
    assert main(["train", *blends, "--steps", "3", "--resume"]) == 2
    assert "started with --match-blend-sharpness; --resume needs the same" in (
        capsys.readouterr().err
    )
