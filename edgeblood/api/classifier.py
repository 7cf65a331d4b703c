"""``edgeblood.Classifier``: predictions from Python on files, PIL images or arrays.

    clf = edgeblood.Classifier("se-cnn-28")                    # pretrained name, run, run directory or artifact
    for p in clf.predict(["cell1.png", "cell2.png"]):
        print(p.predicted, p.probability, p.outside)

Every image is framed as the model's training images were (the framing in its contract: run.json
or the artifact's metadata), unless the caller says otherwise (``framing="cell-crop"`` for single-cell
crops), so a capture and a crop of it are not confused. Results are ``edgeblood.inference.Prediction``
rows, the same ones ``edgeblood predict`` writes, with the domain check's ``outside`` flag where the
model carries one. Unlike ``edgeblood predict`` (a folder run that reports bad files and goes on), an
image that cannot be used raises ``DataError``: in code the caller chose each image.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Union

import numpy as np

from edgeblood.errors import DataError, EdgebloodError
from edgeblood.framing import Framing
from edgeblood.imageio import iter_image_files, read_pixels, to_rgb_uint8
from edgeblood.inference import DEFAULT_BATCH, Prediction, PredictModel, classify_batch, open_model

#: One image as ``predict`` takes it: a file path, a PIL image, or an H x W x 3 (or H x W) array.
ImageLike = Union[str, os.PathLike, np.ndarray, Any]


class Classifier:
    """A model ready to classify images: an exported artifact, a run (directory or ``Run``) or a pretrained name.

    ``framing``: None or ``"model"`` frames like the training images; ``"cell-crop"`` for single-cell
    crops; any ``--framing`` spelling (``window:PX``, ``fraction:F``, ``+no-jpeg``) or a ``Framing``.
    """

    def __init__(self, model: Any, device: str = "cpu", *, framing: str | Framing | None = None,
                 top_k: int = 3, threads: int | None = None):
        from edgeblood.runs import Run

        source = model.dir if isinstance(model, Run) else model
        self.model: PredictModel = open_model(source, device=device, threads=threads)
        self.framing = framing if isinstance(framing, Framing) else Framing.parse(framing or "model", self.model.framing)
        self.model.check_framing(self.framing)
        if not 1 <= top_k <= len(self.model.classes):
            raise DataError(f"top_k must be between 1 and {len(self.model.classes)} (the model's class count), got {top_k}")
        self.top_k = top_k

    def __repr__(self) -> str:
        return f"Classifier({self.model.describe()}, framing {self.framing.short()})"

    @property
    def classes(self) -> list[str]:
        return list(self.model.classes)

    @property
    def input_size(self) -> int:
        return self.model.input_size

    def predict(self, images: ImageLike | Iterable[ImageLike], *, batch_size: int = DEFAULT_BATCH) -> list[Prediction]:
        """Classify ``images``: one image or several (a list, a folder path, or an N x H x W x 3 array).

        Always returns a list, one ``Prediction`` per image in input order (a folder's files sorted):
        ``predicted``, ``probability``, ``top_k`` [(class, probability)], ``outside`` (True: unlike the
        training data, by the model's domain check; None: the model has none) and its likely ``cause``.
        Arrays are RGB (uint8, or 16-bit/greyscale as files are read), not BGR.
        """
        items = list(self._items(images))
        if not items:
            raise DataError("no images given; pass image files, a folder, PIL images or H x W x 3 arrays")
        rows: list[Prediction] = []
        pending: list[tuple[Prediction, np.ndarray]] = []
        for name, rgb in items:
            image = self._model_input(rgb, name)
            if pending and (image.shape != pending[0][1].shape or len(pending) >= batch_size):
                self._run(pending)
            row = Prediction(file=name)
            rows.append(row)
            pending.append((row, image))
        self._run(pending)
        return rows

    def _items(self, images: Any) -> Iterable[tuple[str, np.ndarray]]:
        """(name, decoded RGB) per image; file names are the paths, others ``<array i>`` / ``<image i>``."""
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        elif _is_single(images):
            images = [images]
        for i, item in enumerate(images):
            if isinstance(item, (str, os.PathLike)):
                path = Path(item)
                files = list(iter_image_files([path])) if path.is_dir() else [path]
                for file in files:
                    yield str(file), to_rgb_uint8(read_pixels(file), file)
            elif isinstance(item, np.ndarray):
                yield f"<array {i}>", to_rgb_uint8(item, f"array {i}")
            elif hasattr(item, "convert") and hasattr(item, "size"):  # a PIL image (Pillow not imported for the check)
                yield f"<image {i}>", to_rgb_uint8(np.asarray(item.convert("RGBA" if "A" in item.getbands() else "RGB")), f"image {i}")
            else:
                raise DataError(f"image {i} is a {type(item).__name__}; pass a file path, a PIL image or an H x W x 3 RGB array")

    def _model_input(self, rgb: np.ndarray, name: str) -> np.ndarray:
        """Framed to the model's input, or the whole frame for a capture variant (it frames in its graph)."""
        try:
            if self.model.takes_captures:
                self.framing.square_box(rgb.shape[1], rgb.shape[0])
                return rgb
            return self.framing.apply(rgb, self.model.input_size)
        except EdgebloodError as exc:  # the framing's (an image smaller than the window), named by image
            raise DataError(f"{name}: {exc}") from None

    def _run(self, pending: list[tuple[Prediction, np.ndarray]]) -> None:
        if not pending:
            return
        classify_batch(self.model, [row for row, _ in pending], np.stack([img for _, img in pending]), self.top_k, None)
        pending.clear()


def _is_single(images: Any) -> bool:
    """One image rather than a collection of them: a path, an array of 2 or 3 dims, a PIL image."""
    return isinstance(images, (str, os.PathLike, np.ndarray)) or (hasattr(images, "convert") and hasattr(images, "size"))
