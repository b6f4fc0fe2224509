"""Write the test-image samples that the app ships: ``pretrained/samples/<data>-test.npz``.

Each file holds the first ``--n`` (default 5,000) test images of MNIST or Fashion-MNIST, in the
data set's own order, as the original 8-bit grey levels:

- ``x``: uint8, (N, 28, 28), 0 = background;
- ``y``: int64, (N,), class labels;
- ``shape``: int64, (2,), the image shape (28, 28).

Files are written with ``np.savez_compressed`` (about 1-2 MB each). The data come through
``dlgm.data.load_dataset`` (which fetches and checksums them); see pretrained/README.md for the
licences.

Usage::

    python experiments/make_samples.py                 # both data sets, 5000 images each
    python experiments/make_samples.py --data mnist --n 1000
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dlgm.data import load_dataset  # noqa: E402

DATASETS = ("mnist", "fashion-mnist")


def grey_levels(x: np.ndarray) -> np.ndarray:
    """Float grey levels in [0, 1] (k / 255) back to the original uint8 values."""
    u8 = np.rint(np.asarray(x, dtype=np.float64) * 255.0)
    if np.abs(u8 / 255.0 - x).max() > 1e-6:
        raise ValueError("the images are not 8-bit grey levels divided by 255")
    return u8.astype(np.uint8)


def make_sample(name: str, n: int, out_dir: Path) -> dict:
    """Write ``out_dir/<name>-test.npz`` with the first ``n`` test images; return a summary."""
    data = load_dataset(name, "test")
    n = min(n, len(data))
    x = grey_levels(data.x[:n]).reshape(n, *data.shape)  # (N, H, W) uint8
    y = np.asarray(data.y[:n], dtype=np.int64)  # (N,)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}-test.npz"
    np.savez_compressed(path, x=x, y=y, shape=np.asarray(data.shape, dtype=np.int64))
    return {
        "data": name,
        "out": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
        "n": n,
        "shape": list(data.shape),
        "bytes": path.stat().st_size,
        "classes": np.bincount(y, minlength=10).tolist(),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="+", choices=DATASETS, default=list(DATASETS))
    p.add_argument("--n", type=int, default=5000, help="first N test images (default 5000)")
    p.add_argument("--out", default=str(ROOT / "pretrained" / "samples"))
    args = p.parse_args(argv)
    if args.n < 1:
        p.error("--n must be >= 1")
    for name in args.data:
        print(json.dumps(make_sample(name, args.n, Path(args.out))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
