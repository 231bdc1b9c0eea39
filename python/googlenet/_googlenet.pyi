"""Type stubs of the native module: the thin binding that `googlenet.Classifier` wraps."""

import os
from typing import Any, List, Optional, Sequence, Tuple, Union

class LibraryError(Exception):
    """An error of the library, as ``(kind, message)``: ``googlenet`` raises it as its class."""

class Engine:
    """The network loaded once, with its preprocessing, labels and threads."""

    def __init__(
        self,
        model: Optional[Union[str, "os.PathLike[str]"]] = None,
        preset: Optional[str] = None,
        threads: Optional[int] = None,
        precision: str = "f32",
        top_k: int = 5,
    ) -> None: ...
    def classify(
        self, images: Sequence[Any], top_k: Optional[int] = None
    ) -> List[Tuple[str, Optional[str]]]:
        """Each image's record as the command line's JSON, and its error's kind (or None)."""
    def embed(
        self, images: Sequence[Any], layer: Optional[str] = None, normalize: bool = False
    ) -> Tuple[bytes, int, List[str], List[Optional[Tuple[str, str]]]]:
        """Little-endian float32 rows, their width, each image's path and each one's error as
        (kind, message)."""
    def model(self) -> str:
        """The model's facts as JSON."""
    def note(self) -> Optional[str]:
        """Why the model runs at another precision than the one asked for, or None."""
