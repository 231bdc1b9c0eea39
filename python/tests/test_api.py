"""The Python API against the command line: the same records for paths, bytes and arrays, the
same features, errors that are records or exceptions, and no input that can crash it."""

import os
import signal
import struct
import threading
import time
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

import googlenet

from conftest import ROOT, SAMPLES, assert_same_predictions, cli_records, googlenet_cli

CAT = ROOT / "assets" / "chelsea.png"
COFFEE = ROOT / "assets" / "coffee.png"


def test_paths_give_the_command_lines_records_for_the_1100_photos(classifier, all_photos,
                                                                  cli_answers):
    records = classifier.classify([str(path) for path in all_photos])
    assert len(records) == 1100
    for record in records:
        theirs = cli_answers[record["path"]]
        assert_same_predictions(record["predictions"], theirs["predictions"])


def test_bytes_and_arrays_are_the_files_answers(classifier, all_photos):
    some = all_photos[::55]
    by_path = classifier.classify([str(path) for path in some])
    by_bytes = classifier.classify([path.read_bytes() for path in some])
    for path_record, bytes_record in zip(by_path, by_bytes):
        assert bytes_record["path"] == "-"
        assert bytes_record["predictions"] == path_record["predictions"]
    # A lossless PNG as an array is the file, pixel for pixel.
    for png in (CAT, COFFEE):
        rgb = np.asarray(Image.open(png).convert("RGB"))
        assert classifier.classify(rgb)["predictions"] == classifier.classify(png)["predictions"]
        rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
        assert classifier.classify(rgba)["predictions"] == classifier.classify(png)["predictions"]
    grey = np.asarray(Image.open(CAT).convert("L"))
    assert classifier.classify(grey)["predictions"][0]["name"] == "Egyptian cat"


def test_embed_is_what_googlenet_embed_writes(classifier, tmp_path):
    photos = sorted(SAMPLES.glob("*.JPEG"))[:12]
    npy = tmp_path / "features.npy"
    done = googlenet_cli("embed", "--quiet", "-o", npy, *photos)
    assert done.returncode == 0, done.stderr.decode()
    theirs = np.load(npy)
    ours = classifier.embed([str(path) for path in photos])
    assert ours.shape == (12, 1024) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    unit = classifier.embed(str(photos[0]), normalize=True)
    assert unit.shape == (1, 1024)
    assert abs(float(np.linalg.norm(unit)) - 1.0) < 1e-5


def test_a_bad_file_in_a_list_is_a_record_and_alone_an_image_error(classifier, tmp_path):
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(CAT.read_bytes()[:2000])
    records = classifier.classify([str(CAT), str(truncated)])
    assert records[0]["predictions"][0]["name"] == "Egyptian cat"
    cli_error = cli_records([truncated])[str(truncated)]["error"]
    assert records[1] == {"path": str(truncated), "error": cli_error}
    with pytest.raises(googlenet.ImageError) as raised:
        classifier.classify(str(truncated))
    assert str(raised.value) == f"{truncated}: {cli_error}"
    assert isinstance(raised.value, ValueError)
    with pytest.raises(googlenet.ImageError):
        classifier.embed([str(CAT), str(truncated)])


def png_header(width, height):
    """A PNG whose header claims `width` x `height` RGB pixels, with no pixel data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) \
        + chunk(b"IEND", b"")


def grey_png(width, height):
    """A mid-grey 8-bit PNG of `width` x `height` pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = (b"\x00" + b"\x80" * width) * height
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 1)) \
        + chunk(b"IEND", b"")


def test_photos_of_extreme_shape_are_classified(classifier):
    for width, height in [(20_000_000, 1), (1, 20_000_000), (10_000_000, 2)]:
        record = classifier.classify(grey_png(width, height))
        assert len(record["predictions"]) == 5, (width, height)


def test_hostile_inputs_raise_or_answer_errors_and_the_interpreter_lives(classifier, tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    truncated_jpeg = SAMPLES.joinpath(sorted(os.listdir(SAMPLES))[0]).read_bytes()[:5000]
    records = classifier.classify([truncated_jpeg, str(empty), png_header(100_000, 100_000)])
    errors = [record.get("error", "") for record in records]
    assert "truncated" in errors[0] or "cannot decode" in errors[0], errors
    assert errors[1] == "empty file"
    assert "over the limit" in errors[2], errors
    rgb = np.asarray(Image.open(CAT).convert("RGB"))
    for bad, message in [
        (rgb.astype(np.float64), "numpy.uint8, not float64"),
        (np.zeros((8, 8, 5), np.uint8), "not (8, 8, 5)"),
        (np.zeros((0, 8, 3), np.uint8), "has no pixels"),
        (np.zeros((2, 8, 8, 3), np.uint8), "not (2, 8, 8, 3)"),
    ]:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            classifier.classify(bad)
    with pytest.raises(TypeError, match="not int"):
        classifier.classify([3])
    strided = rgb[::2, ::3]
    assert not strided.flags["C_CONTIGUOUS"]
    assert classifier.classify(strided) == classifier.classify(np.ascontiguousarray(strided))
    with pytest.raises(googlenet.SettingError, match="^top_k must be at least 1$"):
        classifier.classify(str(CAT), top_k=0)
    with pytest.raises(googlenet.SettingError, match="^top_k 1001 exceeds the 1000 classes"):
        classifier.classify(str(CAT), top_k=1001)
    assert classifier.classify(str(CAT))["predictions"][0]["name"] == "Egyptian cat"


def test_two_python_threads_at_once_get_the_same_answers(classifier, all_photos):
    halves = [[str(path) for path in all_photos[:60:2]], [str(path) for path in all_photos[1:60:2]]]
    alone = [classifier.classify(half) for half in halves]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(classifier.classify, halves))
    assert together == alone


def test_ctrl_c_stops_a_long_call(classifier, all_photos):
    # A process started in the background (`nohup scripts/test &`) inherits SIGINT as ignored,
    # and Python then installs no handler for it: the test installs Python's own, and puts back
    # what was there.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
        started = time.monotonic()
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            classifier.classify([str(path) for path in all_photos] * 4)
        assert time.monotonic() - started < 20
    finally:
        signal.signal(signal.SIGINT, previous)
    assert classifier.classify(str(CAT))["predictions"][0]["name"] == "Egyptian cat"


def test_the_model_and_the_settings(classifier):
    model = classifier.model
    assert (model["classes"], model["features"], model["preset"], model["top_k"]) == \
        (1000, 1024, "caffe", 5)
    assert model["input"] == {"name": "data_0", "width": 224, "height": 224}
    three = googlenet.Classifier(top_k=3, threads=1)
    assert len(three.classify(str(CAT))["predictions"]) == 3
    for settings, error, message in [
        ({"precision": "fp16"}, googlenet.SettingError, "^precision `fp16` is not f32, bf16 or int8$"),
        ({"preset": "keras"}, googlenet.SettingError, "^preset \"keras\" is unknown"),
        ({"threads": 0}, googlenet.SettingError, "^threads must be at least 1$"),
        ({"model": "/no/such/model.onnx"}, googlenet.ModelError, "/no/such/model.onnx"),
        ({"top_k": 0}, googlenet.SettingError, "^top_k must be at least 1$"),
        ({"top_k": 1001}, googlenet.SettingError, "^top_k 1001 exceeds the 1000 classes"),
    ]:
        with pytest.raises(error, match=message) as raised:
            googlenet.Classifier(**settings)
        assert isinstance(raised.value, (googlenet.Error, ValueError)), settings
        assert "--" not in str(raised.value), "settings are named as the arguments are"


def cpu_flags():
    """The CPU's feature flags, as /proc/cpuinfo names them."""
    return set(next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split())


def test_int8_runs_and_bf16_runs_where_the_cpu_multiplies_it_else_at_f32_with_a_warning():
    int8 = googlenet.Classifier(precision="int8", threads=1)
    assert int8.model["precision"] == "int8"
    assert int8.classify(str(CAT))["predictions"][0]["name"] == "Egyptian cat"
    flags = cpu_flags()
    if "avx512f" in flags and {"amx_bf16", "avx512_bf16"} & flags:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            bf16 = googlenet.Classifier(precision="bf16", threads=1)
        kernel = "amx" if "amx_bf16" in flags else "avx512bf16"
        assert (bf16.model["precision"], bf16.model["kernel"]) == ("bf16", kernel)
        assert bf16.classify(str(CAT))["predictions"][0]["name"] == "Egyptian cat"
    else:
        with pytest.warns(RuntimeWarning, match="^precision bf16: no bf16 kernel for this CPU"):
            bf16 = googlenet.Classifier(precision="bf16", threads=1)
        assert bf16.model["precision"] == "f32"


def test_a_forced_kernel_path_runs_bf16(monkeypatch):
    if not {"avx2", "fma"} <= cpu_flags():
        pytest.skip("the avx2 kernel path needs AVX2 and FMA")
    monkeypatch.setenv("GOOGLENET_ISA", "avx2")
    bf16 = googlenet.Classifier(precision="bf16", threads=1)
    assert (bf16.model["precision"], bf16.model["kernel"]) == ("bf16", "avx2")
    assert bf16.classify(str(CAT))["predictions"][0]["name"] == "Egyptian cat"


def test_the_package_exports_its_api_only():
    assert dir(googlenet) == sorted(googlenet.__all__ + ["ray"])
    for name in googlenet.__all__:
        assert hasattr(googlenet, name), name
    for kind in (googlenet.SettingError, googlenet.ImageError, googlenet.ModelError):
        assert issubclass(kind, googlenet.Error) and issubclass(kind, ValueError)
    assert issubclass(googlenet.DownloadError, googlenet.ImageError)


def test_a_url_that_cannot_be_downloaded_is_a_download_error(classifier):
    url = "http://127.0.0.1:9/photo.jpg"
    with pytest.raises(googlenet.DownloadError, match="^http://127.0.0.1:9/photo.jpg: cannot"):
        classifier.classify(url)
    assert "cannot download" in classifier.classify([url])[0]["error"]
