"""Classify and embed images with GoogLeNet (Inception v1) on the CPU.

The Python face of the `googlenet` Rust library: the same model, preprocessing and answers as
the `googlenet` command line. ::

    import googlenet

    classifier = googlenet.Classifier()               # the embedded BVLC GoogLeNet
    record = classifier.classify("photo.jpg")         # {"path", "predictions": [...]}
    records = classifier.classify(["a.jpg", b"...", array])
    features = classifier.embed(["a.jpg", "b.png"])   # numpy float32, shape (2, 1024)

An image is a path (``str`` or ``os.PathLike``; an ``http(s)://`` URL is downloaded), the
``bytes`` of an encoded file, or a ``numpy.uint8`` array of shape (H, W, 3) in RGB, as PIL and
Ray Data's ``read_images`` give, or (H, W) grey, or (H, W, 4) RGBA (composited over white).
The work runs with the interpreter's lock released, on ``threads`` threads; Ctrl-C stops it.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _googlenet

__all__ = ["Classifier", "ImageError", "Image"]

#: What one image may be.
Image = Union[str, "os.PathLike[str]", bytes, np.ndarray]


class ImageError(ValueError):
    """An image that could not be read, downloaded or decoded; the message is the command
    line's one-line error for it."""


def _native(image: Any) -> Any:
    """`image` as the native module takes it, or ValueError naming what is wrong with it."""
    if isinstance(image, np.ndarray):
        return _pixels(image)
    if isinstance(image, (bytearray, memoryview)):
        return bytes(image)
    return image


def _pixels(array: np.ndarray) -> Tuple[bytes, int, int, int]:
    """An image array as (pixels, height, width, channels)."""
    if array.dtype != np.uint8:
        raise ValueError(f"an image array must be numpy.uint8, not {array.dtype}")
    if array.ndim == 2:
        height, width = array.shape
        channels = 1
    elif array.ndim == 3 and array.shape[2] in (1, 3, 4):
        height, width, channels = array.shape
    else:
        raise ValueError(
            f"an image array has shape (H, W), (H, W, 3) or (H, W, 4), not {array.shape}"
        )
    if array.size == 0:
        raise ValueError(f"an image array of shape {array.shape} has no pixels")
    return (np.ascontiguousarray(array).tobytes(), height, width, channels)


def _is_one(images: Any) -> bool:
    """Whether `images` is one image rather than a sequence of them."""
    return isinstance(images, (str, bytes, bytearray, memoryview, np.ndarray, os.PathLike))


class Classifier:
    """GoogLeNet (or another ONNX image classifier) loaded once.

    Args:
        model: an ONNX file; by default ``$GOOGLENET_MODEL``, else the model embedded in the
            package, else the cache of ``googlenet fetch-model``.
        preset: ``"caffe"`` or ``"torchvision"`` preprocessing; by default the one the model
            suggests (caffe for GoogLeNet).
        threads: worker threads for a list of images; by default one per core.
        precision: ``"f32"``, the only one this build computes in.
        top_k: classes each record keeps unless ``classify`` is told otherwise.

    Raises:
        ValueError: a setting is wrong, or the model cannot be loaded.
    """

    def __init__(
        self,
        model: Optional[Union[str, "os.PathLike[str]"]] = None,
        preset: Optional[str] = None,
        threads: Optional[int] = None,
        precision: str = "f32",
        top_k: int = 5,
    ) -> None:
        self._engine = _googlenet.Engine(model, preset, threads, precision, top_k)

    def classify(
        self, images: Union[Image, Sequence[Image]], top_k: Optional[int] = None
    ) -> Union[Dict[str, Any], List[Dict[str, Any]]]:
        """The most probable classes of one image (a dict) or of a list of them (a list).

        Each dict is the command line's JSON record: ``path``, then ``predictions``, a list
        of ``{"rank", "index", "synset", "name", "probability"}``, most probable first; in a
        list, an image that cannot be used has ``error`` instead. A path's record keeps the
        path as given; bytes and arrays are named ``-``.

        Raises:
            ImageError: the one image given cannot be used.
            ValueError: an array of the wrong dtype or shape, or ``top_k`` out of range.
            TypeError: something that is not an image.
        """
        if _is_one(images):
            record = self._records([images], top_k)[0]
            if "error" in record:
                raise ImageError(f"{record['path']}: {record['error']}")
            return record
        return self._records(list(images), top_k)

    def embed(
        self,
        images: Union[Image, Sequence[Image]],
        layer: Optional[str] = None,
        normalize: bool = False,
    ) -> np.ndarray:
        """The features of the images: a float32 array of shape (N, D), a row an image, as
        ``googlenet embed`` writes them (for GoogLeNet the 1024 values of ``pool5/7x7_s1``;
        ``layer`` names any node). ``normalize`` scales each row to unit length.

        Raises:
            ImageError: an image cannot be used (the first such, with its path).
            ValueError: an array of the wrong dtype or shape, or no such layer.
        """
        batch = [images] if _is_one(images) else list(images)
        rows, paths, errors = self._embed_rows([_native(i) for i in batch], layer, normalize)
        for path, error in zip(paths, errors):
            if error is not None:
                raise ImageError(f"{path}: {error}")
        return rows

    @property
    def model(self) -> Dict[str, Any]:
        """The model's facts, as the service's ``GET /v1/model`` gives them: ``name``,
        ``source``, ``input`` (``name``, ``width``, ``height``), ``output``, ``classes``,
        ``features``, ``preset`` and ``top_k``."""
        return json.loads(self._engine.model())

    def _records(self, natives: List[Any], top_k: Optional[int]) -> List[Dict[str, Any]]:
        """The records of images, each checked and converted first."""
        natives = [_native(image) for image in natives]
        return [json.loads(record) for record in self._engine.classify(natives, top_k)]

    def _embed_rows(
        self, natives: List[Any], layer: Optional[str], normalize: bool
    ) -> Tuple[np.ndarray, List[str], List[Optional[str]]]:
        """Features of converted images: the (N, D) array (zero rows where an image failed),
        each image's path and each one's error or None."""
        values, width, paths, errors = self._engine.embed(natives, layer, normalize)
        rows = np.frombuffer(values, dtype="<f4").reshape(len(natives), width).copy()
        return rows, paths, errors
