"""googlenet on Ray Data: callable classes for ``Dataset.map_batches``. ::

    import ray, googlenet.ray
    ds = ray.data.read_binary_files("photos/", include_paths=True)  # or read_images(...)
    ds = ds.map_batches(googlenet.ray.Classify, fn_constructor_kwargs={"top_k": 5},
                        batch_size=32, concurrency=4, num_cpus=1)
    ds.write_parquet("out/")   # path, predictions, error

Each actor loads the model once and runs as many threads as the CPUs Ray gave it (at least
one). A batch takes its images from a ``bytes`` column (``read_binary_files``) or an
``image`` column (``read_images``), and its names from ``path`` when there is one. A photo that
cannot be used is a row with ``error`` (and no predictions or embedding), never a failed job.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import ray

from . import Classifier, _native

__all__ = ["Classify", "Embed"]


def _threads() -> int:
    """The CPUs Ray gave this actor, as whole threads (at least one)."""
    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    except Exception:  # not in a Ray worker
        cpus = 1.0
    return max(1, int(cpus))


def _images(batch: Dict[str, Any]) -> Tuple[List[Any], List[str]]:
    """A batch's images and their names."""
    if "bytes" in batch:
        images: List[Any] = [bytes(image) for image in batch["bytes"]]
    elif "image" in batch:
        images = [np.asarray(image) for image in batch["image"]]
    else:
        raise ValueError(
            "a batch needs a `bytes` column (read_binary_files) or an `image` column "
            f"(read_images); it has {sorted(batch)}"
        )
    if "path" in batch:
        paths = [str(path) for path in batch["path"]]
    else:
        paths = ["-"] * len(images)
    return images, paths


def _convert(images: List[Any]) -> Tuple[List[Any], List[Optional[str]]]:
    """Each image as the native module takes it (None where it cannot be), and why not."""
    natives: List[Any] = []
    errors: List[Optional[str]] = []
    for image in images:
        try:
            natives.append(_native(image))
            errors.append(None)
        except (ValueError, TypeError) as error:
            natives.append(None)
            errors.append(str(error))
    return natives, errors


class Classify:
    """Adds ``predictions`` (rank, index, synset, name, probability) and ``error`` to each
    row, beside its ``path``."""

    def __init__(
        self,
        top_k: int = 5,
        model: Optional[str] = None,
        preset: Optional[str] = None,
        threads: Optional[int] = None,
        precision: str = "f32",
    ) -> None:
        self._classifier = Classifier(
            model=model,
            preset=preset,
            threads=threads or _threads(),
            precision=precision,
            top_k=top_k,
        )

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, list]:
        images, paths = _images(batch)
        natives, errors = _convert(images)
        usable = [native for native in natives if native is not None]
        records = iter(self._classifier._records(usable, None)[0] if usable else [])
        predictions: List[Optional[list]] = []
        for at, native in enumerate(natives):
            record = next(records) if native is not None else {}
            predictions.append(record.get("predictions"))
            errors[at] = errors[at] or record.get("error")
        return {"path": paths, "predictions": predictions, "error": errors}


class Embed:
    """Adds ``embedding`` (float32 features; ``layer`` names any node, ``normalize`` scales to
    unit length) and ``error`` to each row, beside its ``path``."""

    def __init__(
        self,
        layer: Optional[str] = None,
        normalize: bool = False,
        model: Optional[str] = None,
        preset: Optional[str] = None,
        threads: Optional[int] = None,
        precision: str = "f32",
    ) -> None:
        self._classifier = Classifier(
            model=model, preset=preset, threads=threads or _threads(), precision=precision
        )
        self._layer = layer
        self._normalize = normalize

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, list]:
        images, paths = _images(batch)
        natives, errors = _convert(images)
        usable = [native for native in natives if native is not None]
        rows, _, row_errors, _ = (
            self._classifier._embed_rows(usable, self._layer, self._normalize)
            if usable
            else (np.zeros((0, 0), np.float32), [], [], [])
        )
        embeddings: List[Optional[np.ndarray]] = []
        found = iter(zip(rows, row_errors))
        for at, native in enumerate(natives):
            row, error = next(found) if native is not None else (None, None)
            errors[at] = errors[at] or error
            embeddings.append(None if errors[at] else row)
        return {"path": paths, "embedding": embeddings, "error": errors}
