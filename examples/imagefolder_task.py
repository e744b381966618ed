"""Your own image folder and your own model, compared by optbench.

The folder has one sub-folder per class under ``train`` and ``test``::

    photos/train/cat/0001.png  photos/train/dog/0001.png  ...
    photos/test/cat/0101.png   photos/test/dog/0101.png   ...

Run it with:

    optbench compare --task "examples/imagefolder_task.py:make_task[root=photos]" \
        --optimizers adam,momentum --epochs 5 --lr 0.01

(with no code at all, ``--task "imagefolder_cnn[root=photos,size=32]"`` trains the reference 3-conv CNN on
the same folder). Images are decoded with Pillow one batch at a time by ``DataLoader`` workers
(:class:`~optbench.core.splits.StreamSplit`), so the folder may be larger than memory; the harness still
owns data order and seeding, so runs are reproducible and resumable. ``python examples/imagefolder_task.py
DIR`` writes a small two-class folder (horizontal and vertical bars) to try it on.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from torch import nn

from optbench.core.spec import Dataset, StreamSplit, Task
from optbench.data.readers import ImageFolder
from optbench.tasks.classification import classification_task

SIZE = 16  # pixels; every image is resized to SIZE x SIZE


class SmallConvNet(nn.Module):
    """(B, 1, 16, 16) -> logits (B, classes): two 3x3 conv + ReLU + 2x2 max-pool blocks, a linear layer."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Flatten(), nn.Linear(16 * (SIZE // 4) ** 2, classes))

    def forward(self, x):
        return self.net(x)


def make_task(root: str = "photos") -> Task:
    """A grayscale image folder ``root/{train,test}/<class>/`` classified by :class:`SmallConvNet`."""
    train = ImageFolder(Path(root) / "train", size=SIZE, mode="L")

    def load() -> Dataset:
        test = ImageFolder(Path(root) / "test", size=SIZE, mode="L", classes=train.classes)
        classes = len(train.classes)
        return Dataset(StreamSplit(train, name=f"{root}/train", classes=classes),
                       StreamSplit(test, name=f"{root}/test", classes=classes))

    return classification_task("imagefolder_smallconv", f"small CNN on the image folder {root}",
                               lambda: SmallConvNet(len(train.classes)), load, target_accuracy=0.9,
                               valid_size=max(1, len(train) // 10),
                               recipe={"optimizer": "adam", "hyperparams": {"lr": 0.01}, "batch_size": 32,
                                       "epochs": 5})


def write_shapes(root: str | Path, per_class: int = 150, seed: int = 0) -> None:
    """Write a two-class folder of 24x24 grayscale PNGs, a bright horizontal or vertical bar of random
    position and length on noise, to ``root/{train,test}/{horizontal,vertical}/`` (``per_class`` training
    and ``per_class // 3`` test images each)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for part, count in (("train", per_class), ("test", max(1, per_class // 3))):
        for shape in ("horizontal", "vertical"):
            folder = Path(root) / part / shape
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.normal(60, 25, (24, 24))
                at, start, length = rng.integers(3, 21), rng.integers(0, 8), rng.integers(10, 16)
                bar = (slice(at - 1, at + 2), slice(start, start + length))
                pixels[bar if shape == "horizontal" else bar[::-1]] += 150
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L").save(folder / f"{i:04d}.png")


if __name__ == "__main__":
    write_shapes(sys.argv[1] if len(sys.argv) > 1 else "photos")
