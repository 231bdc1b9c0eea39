"""Type stubs of the native module: the thin binding that `googlenet.Classifier` wraps."""

import os
from typing import Any, List, Optional, Sequence, Tuple, Union

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
    def classify(self, images: Sequence[Any], top_k: Optional[int] = None) -> List[str]:
        """Each image's record as the command line's JSON."""
    def embed(
        self, images: Sequence[Any], layer: Optional[str] = None, normalize: bool = False
    ) -> Tuple[bytes, int, List[str], List[Optional[str]]]:
        """Little-endian float32 rows, their width, each image's path and each one's error."""
    def model(self) -> str:
        """The model's facts as JSON."""
