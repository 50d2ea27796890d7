"""A small paired dataset made from real photographs that ship with scikit-image.

Used by `pix2pix demo` and by the tests: no download, no network. Each pair is a random
crop of a photo (B, the target) and a label-like rendering of it (A, the input):
superpixels filled with their mean colour, the way a semantic label map looks, or an
edge sketch. Written in any of the layouts `pix2pix prepare` reads.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipelines.common.errors import UserError
from pipelines.common.storage import Location

PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
)
RENDERINGS = ("labels", "edges")


@dataclass(frozen=True)
class SamplePair:
    key: str
    a: np.ndarray  # uint8 H x W x 3, the input rendering
    b: np.ndarray  # uint8 H x W x 3, the photo


def _photos() -> list[np.ndarray]:
    try:  # scikit-image is the optional `demo` extra
        import skimage.data
    except ImportError:
        raise UserError("sample data needs scikit-image: pip install 'pix2pix[demo]'") from None
    return [getattr(skimage.data, name)()[..., :3] for name in PHOTOS]


def render(photo: np.ndarray, kind: str = "labels") -> np.ndarray:
    """The input side of a pair: a label-like map or an edge sketch of `photo`."""
    from skimage import color, feature, segmentation  # the optional `demo` extra

    if kind == "labels":
        n_segments = max(16, photo.shape[0] * photo.shape[1] // 48)
        labels = segmentation.slic(photo, n_segments=n_segments, compactness=10, start_label=1)
        return color.label2rgb(labels, photo, kind="avg", bg_label=0).astype(np.uint8)
    if kind == "edges":
        edges = feature.canny(color.rgb2gray(photo), sigma=1.5)
        sketch = np.where(edges, 0, 255).astype(np.uint8)
        return np.repeat(sketch[..., None], 3, axis=2)
    raise ValueError(f"unknown rendering {kind!r}; choose one of {', '.join(RENDERINGS)}")


def make_pairs(n: int, size: int = 64, *, seed: int = 0, kind: str = "labels") -> list[SamplePair]:
    """`n` pairs of `size` x `size` from random crops of the sample photos."""
    rng = np.random.default_rng(seed)
    photos = _photos()
    pairs = []
    for i in range(n):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        side = int(rng.integers(min(h, w) // 3, min(h, w) + 1))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(photo[y : y + side, x : x + side]).resize(
            (size, size), Image.Resampling.BICUBIC
        )
        b = np.asarray(crop)
        pairs.append(SamplePair(key=f"{PHOTOS[i % len(PHOTOS)]}_{i:05d}", a=render(b, kind), b=b))
    return pairs


def encode(image: np.ndarray, fmt: str = "png") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG" if fmt == "jpg" else fmt.upper(), quality=95)
    return buf.getvalue()


def write_dataset(
    splits: dict[str, list[SamplePair]],
    root: Location,
    layout: str = "aligned",
    fmt: str = "jpg",
) -> Location:
    """Write `{split: pairs}` under `root` in a layout `pix2pix prepare` reads.

    aligned:  root/{split}/{key}.jpg, A|B side by side (the official datasets' form)
    folders:  root/A/{split}/{key}.png and root/B/{split}/{key}.png
    manifest: the folders layout plus root/manifest.csv with columns a, b, split, key
    Returns the location to give `pix2pix prepare` (the manifest file for `manifest`).
    """
    if layout not in ("aligned", "folders", "manifest"):
        raise ValueError(f"unknown layout {layout!r}")
    rows = []
    for split, pairs in splits.items():
        for pair in pairs:
            if layout == "aligned":
                both = np.concatenate([pair.a, pair.b], axis=1)
                root.join(split, f"{pair.key}.{fmt}").write_bytes(encode(both, fmt))
                continue
            a_loc = root.join("A", split, f"{pair.key}.{fmt}")
            b_loc = root.join("B", split, f"{pair.key}.{fmt}")
            a_loc.write_bytes(encode(pair.a, fmt))
            b_loc.write_bytes(encode(pair.b, fmt))
            rows.append({"a": a_loc.url, "b": b_loc.url, "split": split, "key": pair.key})
    if layout != "manifest":
        return root
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["a", "b", "split", "key"])
    writer.writeheader()
    writer.writerows(rows)
    manifest = root.join("manifest.csv")
    manifest.write_bytes(buf.getvalue().encode())
    return manifest
