"""What a data set's labels ``y`` mean, in the words the pages use.

For the digit and clothing data sets ``y`` is a class; for ``patches`` it is the photograph a
patch was cut from (``dlgm.data.PATCH_PHOTOS``), not a class. Every caption, hover and legend
that names a label goes through this module.
"""

from __future__ import annotations

from collections import Counter

from dlgm.data import PATCH_PHOTOS

FASHION = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
NAMES = {  # data set -> the name of each label (default: the label's number)
    "fashion-mnist": dict(enumerate(FASHION)),
    "patches": dict(enumerate(PATCH_PHOTOS)),
}
KINDS = {"patches": "photo"}  # data set -> what a label is (default "class")


def label_kind(data_name: str) -> str:
    """``"photo"`` for patches (y is the source photograph), ``"class"`` otherwise."""
    return KINDS.get(data_name, "class")


def label_name(data_name: str, y: int) -> str:
    """A label as a page shows it, e.g. ``"class 3"``, ``"Trouser"`` or ``"photo china.jpg"``."""
    y = int(y)
    kind = label_kind(data_name)
    name = NAMES.get(data_name, {}).get(y)
    if name is None:
        return f"{kind} {y}"
    return f"{kind} {name}" if kind != "class" else name


def label_names(data_name: str, labels) -> dict[int, str]:
    """``label_name`` of each distinct label in ``labels``."""
    return {c: label_name(data_name, c) for c in {int(v) for v in labels}}


def label_counts(data_name: str, labels) -> str:
    """``"class 3: 5, class 7: 2"``: how many of each label, in label order."""
    counts = Counter(int(v) for v in labels)
    return ", ".join(f"{label_name(data_name, c)}: {n}" for c, n in sorted(counts.items()))
