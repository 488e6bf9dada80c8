"""The numpy MesoNet against straightforward computations, on weight files the tests write in
the authors' Keras layout (random weights: nothing from ../shared/data)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from swapwatch.cli.main import main
from swapwatch.errors import ModelError
from swapwatch.evaluation.mesonet import (
    BN_EPSILON,
    LEAKY_SLOPE,
    MesoNet,
    MesoNetEngine,
    conv2d_same,
    max_pool_same,
)

Weights = list[tuple[str, np.ndarray]]
Layer = tuple[str, Weights]


def conv_layer(rng: np.random.Generator, name: str, k: int, cin: int, cout: int) -> Layer:
    kernel = rng.normal(0, 1 / np.sqrt(k * k * cin), (k, k, cin, cout)).astype(np.float32)
    return name, [("kernel", kernel), ("bias", rng.normal(0, 0.1, cout).astype(np.float32))]


def norm_layer(rng: np.random.Generator, name: str, c: int) -> Layer:
    return name, [
        ("gamma", rng.uniform(0.5, 1.5, c).astype(np.float32)),
        ("beta", rng.normal(0, 0.1, c).astype(np.float32)),
        ("moving_mean", rng.normal(0.2, 0.1, c).astype(np.float32)),
        ("moving_variance", rng.uniform(0.5, 2.0, c).astype(np.float32)),
    ]


def dense_layer(rng: np.random.Generator, name: str, cin: int, cout: int) -> Layer:
    kernel = rng.normal(0, 1 / np.sqrt(cin), (cin, cout)).astype(np.float32)
    return name, [("kernel", kernel), ("bias", rng.normal(0, 0.1, cout).astype(np.float32))]


def write_keras_weights(path: Path, layers: list[Layer], file_order: list[str]) -> Path:
    """A Keras 2 `save_weights` file: root attribute layer_names, one group per layer with
    attribute weight_names, arrays at <layer>/<layer>/<weight>:0."""
    by_name = dict(layers)
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in file_order])
        f.attrs["backend"] = b"tensorflow"
        for name in file_order:
            group = f.create_group(name)
            weights = by_name.get(name, [])
            group.attrs["weight_names"] = (
                np.array([f"{name}/{w}:0".encode() for w, _ in weights])
                if weights
                else np.array([])
            )
            for w, array in weights:
                group.create_dataset(f"{name}/{w}:0", data=array)
    return path


def meso4_file(path: Path, seed: int = 0) -> Path:
    """Named as in the authors' Meso4_DF.h5 (conv2d_5..8, dense_3..4)."""
    rng = np.random.default_rng(seed)
    layers = [
        conv_layer(rng, "conv2d_5", 3, 3, 8),
        norm_layer(rng, "batch_normalization_5", 8),
        conv_layer(rng, "conv2d_6", 5, 8, 8),
        norm_layer(rng, "batch_normalization_6", 8),
        conv_layer(rng, "conv2d_7", 5, 8, 16),
        norm_layer(rng, "batch_normalization_7", 16),
        conv_layer(rng, "conv2d_8", 5, 16, 16),
        norm_layer(rng, "batch_normalization_8", 16),
        dense_layer(rng, "dense_3", 1024, 16),
        dense_layer(rng, "dense_4", 16, 1),
    ]
    order = ["input_2"]
    for i in range(5, 9):
        order += [f"conv2d_{i}", f"batch_normalization_{i}", f"max_pooling2d_{i}"]
    order += ["flatten_2", "dropout_3", "dense_3", "dropout_4", "dense_4"]
    return write_keras_weights(path, layers, order)


def inception_file(path: Path, seed: int = 1) -> Path:
    """Named and ordered as in the authors' MesoInception_DF.h5: Keras lists each inception
    block's convs in topological order, not in the order they were created."""
    rng = np.random.default_rng(seed)
    layers: list[Layer] = []
    order = ["input_1"]
    cin = 3
    for block, (a, b, c, d) in enumerate(((1, 4, 4, 2), (2, 4, 4, 2))):
        n = 7 * block  # conv2d_{n+1} .. conv2d_{n+7}: x1 1x1, x2 1x1, x2 3x3, x3 1x1, ...
        layers += [
            conv_layer(rng, f"conv2d_{n + 1}", 1, cin, a),
            conv_layer(rng, f"conv2d_{n + 2}", 1, cin, b),
            conv_layer(rng, f"conv2d_{n + 3}", 3, b, b),
            conv_layer(rng, f"conv2d_{n + 4}", 1, cin, c),
            conv_layer(rng, f"conv2d_{n + 5}", 3, c, c),
            conv_layer(rng, f"conv2d_{n + 6}", 1, cin, d),
            conv_layer(rng, f"conv2d_{n + 7}", 3, d, d),
        ]
        cin = a + b + c + d
        layers.append(norm_layer(rng, f"batch_normalization_{block + 1}", cin))
        order += [f"conv2d_{n + i}" for i in (2, 4, 6, 1, 3, 5, 7)]
        order += [f"concatenate_{block + 1}", f"batch_normalization_{block + 1}"]
        order += [f"max_pooling2d_{block + 1}"]
    layers += [
        conv_layer(rng, "conv2d_15", 5, 12, 16),
        norm_layer(rng, "batch_normalization_3", 16),
        conv_layer(rng, "conv2d_16", 5, 16, 16),
        norm_layer(rng, "batch_normalization_4", 16),
        dense_layer(rng, "dense_1", 1024, 16),
        dense_layer(rng, "dense_2", 16, 1),
    ]
    order += ["conv2d_15", "batch_normalization_3", "max_pooling2d_3"]
    order += ["conv2d_16", "batch_normalization_4", "max_pooling2d_4"]
    order += ["flatten_1", "dropout_1", "dense_1", "leaky_re_lu_1", "dropout_2", "dense_2"]
    return write_keras_weights(path, layers, order)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mesonet")


@pytest.fixture(scope="module")
def meso4(weights_dir: Path) -> Path:
    return meso4_file(weights_dir / "Meso4_test.h5")


@pytest.fixture(scope="module")
def inception(weights_dir: Path) -> Path:
    return inception_file(weights_dir / "MesoInception_test.h5")


# Straightforward references -------------------------------------------------------------


def loop_conv(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, dilation: int = 1) -> np.ndarray:
    """One (H, W, Cin) image, pixel by pixel, zeros outside: Keras Conv2D 'same'."""
    kh, kw, _, cout = kernel.shape
    h, w, _ = x.shape
    x, kernel = x.astype(np.float64), kernel.astype(np.float64)
    ph, pw = dilation * (kh - 1) // 2, dilation * (kw - 1) // 2
    out = np.zeros((h, w, cout))
    for i in range(h):
        for j in range(w):
            for a in range(kh):
                for b in range(kw):
                    y, z = i + a * dilation - ph, j + b * dilation - pw
                    if 0 <= y < h and 0 <= z < w:
                        out[i, j] += x[y, z] @ kernel[a, b]
    return out + bias


def loop_pool(x: np.ndarray, size: int) -> np.ndarray:
    """One (H, W, C) image; windows that overhang the bottom/right edge see only what is in."""
    h, w, c = x.shape
    out = np.zeros((-(-h // size), -(-w // size), c))
    pad_top, pad_left = (out.shape[0] * size - h) // 2, (out.shape[1] * size - w) // 2
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            y0, z0 = max(i * size - pad_top, 0), max(j * size - pad_left, 0)
            out[i, j] = x[y0 : i * size - pad_top + size, z0 : j * size - pad_left + size].max(
                axis=(0, 1)
            )
    return out


def shift_conv(
    x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, dilation: int = 1
) -> np.ndarray:
    """The same convolution as a sum of shifted copies: fast enough for a 256x256 image."""
    kh, kw, _, cout = kernel.shape
    h, w, _ = x.shape
    ph, pw = dilation * (kh - 1) // 2, dilation * (kw - 1) // 2
    padded = np.pad(x.astype(np.float64), ((ph, ph), (pw, pw), (0, 0)))
    out = np.zeros((h, w, cout)) + bias
    kernel = kernel.astype(np.float64)
    for a in range(kh):
        for b in range(kw):
            out += (
                padded[a * dilation : a * dilation + h, b * dilation : b * dilation + w]
                @ kernel[a, b]
            )
    return out


def keras_arrays(path: Path) -> dict[str, list[np.ndarray]]:
    """Each layer's arrays by name, read directly."""
    with h5py.File(path, "r") as f:
        return {
            name: [np.asarray(f[name][w]) for w in f[name].attrs["weight_names"]]
            for name in f
            if len(f[name].attrs["weight_names"])
        }


def keras_norm(x: np.ndarray, arrays: list[np.ndarray]) -> np.ndarray:
    gamma, beta, mean, variance = arrays
    return gamma * (x - mean) / np.sqrt(variance + BN_EPSILON) + beta


def reference_meso4(path: Path, image: np.ndarray) -> float:
    """Meso4 as the published Keras code reads, for one (256, 256, 3) image in 0-1."""
    w = keras_arrays(path)
    x = image.astype(np.float64)
    for i, pool in zip(range(5, 9), (2, 2, 2, 4), strict=True):
        x = np.maximum(shift_conv(x, *w[f"conv2d_{i}"]), 0)
        x = loop_pool(keras_norm(x, w[f"batch_normalization_{i}"]), pool)
    return reference_head(x, w["dense_3"], w["dense_4"])


def reference_inception(path: Path, image: np.ndarray) -> float:
    w = keras_arrays(path)

    def relu_conv(x: np.ndarray, name: str, dilation: int = 1) -> np.ndarray:
        return np.maximum(shift_conv(x, *w[name], dilation), 0)

    x = image.astype(np.float64)
    for block in range(2):
        n = 7 * block
        branches = [
            relu_conv(x, f"conv2d_{n + 1}"),
            relu_conv(relu_conv(x, f"conv2d_{n + 2}"), f"conv2d_{n + 3}"),
            relu_conv(relu_conv(x, f"conv2d_{n + 4}"), f"conv2d_{n + 5}", 2),
            relu_conv(relu_conv(x, f"conv2d_{n + 6}"), f"conv2d_{n + 7}", 3),
        ]
        x = np.concatenate(branches, axis=-1)
        x = loop_pool(keras_norm(x, w[f"batch_normalization_{block + 1}"]), 2)
    for conv, norm, pool in (("conv2d_15", 3, 2), ("conv2d_16", 4, 4)):
        x = loop_pool(keras_norm(relu_conv(x, conv), w[f"batch_normalization_{norm}"]), pool)
    return reference_head(x, w["dense_1"], w["dense_2"])


def reference_head(x: np.ndarray, hidden: list[np.ndarray], output: list[np.ndarray]) -> float:
    y = x.reshape(-1) @ hidden[0] + hidden[1]  # Keras Flatten: (H, W, C) row-major
    y = np.where(y >= 0, y, LEAKY_SLOPE * y)
    return float((y @ output[0] + output[1])[0])


# Tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dilation", [1, 2, 3])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_conv_matches_a_pixel_loop(k: int, dilation: int) -> None:
    rng = np.random.default_rng(k * 10 + dilation)
    x = rng.normal(size=(2, 9, 11, 3)).astype(np.float32)
    kernel = rng.normal(size=(k, k, 3, 4)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    got = conv2d_same(x, kernel, bias, dilation)
    assert got.shape == (2, 9, 11, 4)
    for n in range(2):
        expected = loop_conv(x[n], kernel, bias, dilation)
        np.testing.assert_allclose(got[n], expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(shift_conv(x[n], kernel, bias, dilation), expected, atol=1e-9)


@pytest.mark.parametrize(("h", "w", "size"), [(8, 8, 2), (5, 7, 2), (9, 6, 4)])
def test_max_pool_same_matches_a_loop(h: int, w: int, size: int) -> None:
    x = np.random.default_rng(h * w).normal(size=(1, h, w, 3)).astype(np.float32)
    np.testing.assert_array_equal(max_pool_same(x, size)[0], loop_pool(x[0], size))


def test_first_block_conv_norm_pool(meso4: Path) -> None:
    """conv 8@3x3 + ReLU, batch norm (epsilon 1e-3), max pool 2: by hand from the file."""
    network = MesoNet.load(meso4)
    image = np.random.default_rng(5).uniform(size=(1, 10, 12, 3)).astype(np.float32)
    w = keras_arrays(meso4)
    conv = np.maximum(loop_conv(image[0], *w["conv2d_5"]), 0)
    expected = loop_pool(keras_norm(conv, w["batch_normalization_5"]), 2)
    got = network.features(image, stages=1)
    assert got.shape == (1, 5, 6, 8)
    np.testing.assert_allclose(got[0], expected, rtol=1e-4, atol=1e-5)


def test_meso4_forward_pass(meso4: Path) -> None:
    network = MesoNet.load(meso4)
    assert network.architecture == "Meso4"
    images = np.random.default_rng(2).uniform(size=(2, 256, 256, 3)).astype(np.float32)
    logits = network.real_logit(images)
    assert logits.shape == (2,) and np.all(np.isfinite(logits))
    assert logits[0] == pytest.approx(reference_meso4(meso4, images[0]), rel=1e-3, abs=1e-4)
    assert logits[0] != pytest.approx(logits[1])  # it looks at its input
    p = network.real_probability(images)
    assert np.all((p > 0) & (p < 1))


def test_inception_forward_pass_and_layer_order(inception: Path) -> None:
    network = MesoNet.load(inception)
    assert network.architecture == "MesoInception4"
    first = network.stages[0][0]
    w = keras_arrays(inception)
    # The file lists conv2d_2 first, but the 1x1@1 branch is conv2d_1, as Keras created it.
    np.testing.assert_array_equal(first.branches[0][0].kernel, w["conv2d_1"][0])  # type: ignore[union-attr]
    image = np.random.default_rng(3).uniform(size=(1, 256, 256, 3)).astype(np.float32)
    expected = reference_inception(inception, image[0])
    assert network.real_logit(image)[0] == pytest.approx(expected, rel=1e-3, abs=1e-4)


def test_engine_gives_fake_logits(meso4: Path) -> None:
    engine = MesoNetEngine(meso4, batch=2)
    assert engine.info.input_size == 256 and engine.info.temperature == 1.0
    assert engine.info.name == "mesonet:Meso4_test"
    crops = np.random.default_rng(4).integers(0, 256, (3, 256, 256, 3), dtype=np.uint8)
    logits = engine.infer(crops)  # two batches: 2 + 1
    assert logits.shape == (3,) and logits.dtype == np.float32
    real = engine.network.real_logit(crops.astype(np.float32) / 255)
    np.testing.assert_allclose(logits, -real, rtol=1e-5, atol=1e-5)  # logit(1 - p) = -logit(p)
    engine.warmup()
    with pytest.raises(ModelError, match="do not fit"):
        engine.infer(crops[:, :224, :224])


def test_bad_weight_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        MesoNet.load(tmp_path / "absent.h5")
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(ModelError, match="cannot load"):
        MesoNet.load(text)
    rng = np.random.default_rng(0)
    three = [conv_layer(rng, f"conv2d_{i}", 3, 3, 3) for i in range(3)]
    other = write_keras_weights(tmp_path / "other.h5", three, [n for n, _ in three])
    with pytest.raises(ModelError, match="not a Meso4 or MesoInception4"):
        MesoNet.load(other)


@pytest.fixture
def chdir_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def test_eval_with_the_baseline(
    capsys: pytest.CaptureFixture[str], chdir_tmp: Path, meso4: Path, one_face_video: Path
) -> None:
    listing = chdir_tmp / "list.csv"
    listing.write_text(f"file,label\n{one_face_video},fake\n")
    code = main(
        [
            "eval",
            str(listing),
            "--baseline",
            f"mesonet:{meso4}",
            "--max-seconds",
            "1",
            "--bootstrap",
            "0",
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert report["model"]["name"] == "mesonet:Meso4_test" and report["baseline"] == "mesonet"
    assert "not the face crops MesoNet was trained on" in report["model"]["description"]
    (item,) = report["items"]
    assert item["status"] == "scored" and item["faces_scored"] == 15  # 1 s at 15 fps
