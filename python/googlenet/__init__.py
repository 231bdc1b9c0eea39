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

Every error the package raises is a ``googlenet.Error``, of the library's kinds:
``SettingError`` (a setting out of range), ``ImageError`` (an image that cannot be read or
decoded) and its ``DownloadError`` (a URL that cannot be downloaded), ``ModelError`` (a model
that cannot be found or loaded) and ``FileError``. Their messages name settings as the
arguments here do (``top_k``, ``max_pixels``).
"""

from __future__ import annotations

import json
import os
import warnings
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Type, Union

import numpy as np

from . import _googlenet

__all__ = [
    "Classifier",
    "Image",
    "Error",
    "SettingError",
    "ImageError",
    "DownloadError",
    "ModelError",
    "FileError",
]

#: What one image may be.
Image = Union[str, "os.PathLike[str]", bytes, np.ndarray]


class Error(Exception):
    """Any error of googlenet; its message is one line."""


class SettingError(Error, ValueError):
    """A setting out of range, or one that does not fit the model (``top_k`` over its classes)."""


class ImageError(Error, ValueError):
    """An image that could not be read, downloaded or decoded; the message is the command
    line's one-line error for it."""


class DownloadError(ImageError):
    """An image named by URL that could not be downloaded."""


class ModelError(Error, ValueError):
    """A model that could not be found, read or loaded, or that cannot do what was asked."""


class FileError(Error, OSError):
    """A file other than an image that could not be read or written."""


#: The exception class of each kind of the library's errors.
_CLASSES: Dict[str, Type[Error]] = {
    "setting": SettingError,
    "image": ImageError,
    "download": DownloadError,
    "model": ModelError,
    "file": FileError,
}


def __dir__() -> List[str]:
    """The package's API: what ``__all__`` names, and the ``ray`` module."""
    return sorted(__all__ + ["ray"])


@contextmanager
def _raising() -> Iterator[None]:
    """Raises the library's errors as the classes of their kinds."""
    try:
        yield
    except _googlenet.LibraryError as error:
        kind, message = error.args
        raise _CLASSES.get(kind, Error)(message) from None


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
        precision: the convolutions' precision: ``"f32"``, ``"int8"`` (faster, at a small cost
            in accuracy), or ``"bf16"`` where the CPU multiplies bf16 (AMX or AVX512-BF16).
            Where it has no kernel for the one asked for, the model runs at f32 with a
            ``RuntimeWarning`` that says why; ``model["precision"]`` is the one it runs at.
        top_k: classes each record keeps unless ``classify`` is told otherwise.

    Raises:
        SettingError: a setting is wrong (a ``ValueError``).
        ModelError: the model cannot be found or loaded (a ``ValueError``).
    """

    def __init__(
        self,
        model: Optional[Union[str, "os.PathLike[str]"]] = None,
        preset: Optional[str] = None,
        threads: Optional[int] = None,
        precision: str = "f32",
        top_k: int = 5,
    ) -> None:
        with _raising():
            self._engine = _googlenet.Engine(model, preset, threads, precision, top_k)
            note = self._engine.note()
        if note is not None:
            warnings.warn(note, RuntimeWarning, stacklevel=2)

    def classify(
        self, images: Union[Image, Sequence[Image]], top_k: Optional[int] = None
    ) -> Union[Dict[str, Any], List[Dict[str, Any]]]:
        """The most probable classes of one image (a dict) or of a list of them (a list).

        Each dict is the command line's JSON record: ``path``, then ``predictions``, a list
        of ``{"rank", "index", "synset", "name", "probability"}``, most probable first; in a
        list, an image that cannot be used has ``error`` instead. A path's record keeps the
        path as given; bytes and arrays are named ``-``.

        Raises:
            ImageError: the one image given cannot be used (``DownloadError`` for a URL that
                cannot be downloaded).
            ValueError: an array of the wrong dtype or shape.
            SettingError: ``top_k`` out of range.
            TypeError: something that is not an image.
        """
        if _is_one(images):
            records, kinds = self._records([images], top_k)
            record, kind = records[0], kinds[0]
            if kind is not None:
                raise _CLASSES.get(kind, ImageError)(f"{record['path']}: {record['error']}")
            return record
        return self._records(list(images), top_k)[0]

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
            ValueError: an array of the wrong dtype or shape.
            ModelError: no such layer.
        """
        batch = [images] if _is_one(images) else list(images)
        rows, paths, errors, kinds = self._embed_rows([_native(i) for i in batch], layer, normalize)
        for path, error, kind in zip(paths, errors, kinds):
            if error is not None:
                raise _CLASSES.get(kind or "image", ImageError)(f"{path}: {error}")
        return rows

    @property
    def model(self) -> Dict[str, Any]:
        """The model's facts, as the service's ``GET /v1/model`` gives them: ``name``,
        ``source``, ``input`` (``name``, ``width``, ``height``), ``output``, ``classes``,
        ``features``, ``preset``, ``top_k``, ``precision`` and ``kernel``."""
        with _raising():
            return json.loads(self._engine.model())

    def _records(
        self, natives: List[Any], top_k: Optional[int]
    ) -> Tuple[List[Dict[str, Any]], List[Optional[str]]]:
        """The records of images, each checked and converted first, and each one's error kind
        (None where it has predictions)."""
        natives = [_native(image) for image in natives]
        with _raising():
            answers = self._engine.classify(natives, top_k)
        return [json.loads(record) for record, _ in answers], [kind for _, kind in answers]

    def _embed_rows(
        self, natives: List[Any], layer: Optional[str], normalize: bool
    ) -> Tuple[np.ndarray, List[str], List[Optional[str]], List[Optional[str]]]:
        """Features of converted images: the (N, D) array (zero rows where an image failed),
        each image's path, each one's error or None, and each error's kind."""
        with _raising():
            values, width, paths, failures = self._engine.embed(natives, layer, normalize)
        rows = np.frombuffer(values, dtype="<f4").reshape(len(natives), width).copy()
        errors = [failure[1] if failure else None for failure in failures]
        kinds = [failure[0] if failure else None for failure in failures]
        return rows, paths, errors, kinds
