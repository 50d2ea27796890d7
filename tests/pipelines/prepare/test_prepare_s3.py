"""`prepare` with SRC and DST on a real S3 server (SeaweedFS on loopback)."""

import pyarrow.parquet as pq
import pytest

from pipelines.common.dataset import PAIR_SCHEMA, read_info
from pipelines.demo.sample_data import encode, write_dataset
from pipelines.prepare import PrepareOptions, prepare
from pipelines.prepare.sources import source_fingerprint
from tests.bad_inputs import bad_files


@pytest.mark.s3
def test_folders_from_s3_to_s3(ray_cluster, s3_store, photo_pairs):
    src, dst = s3_store.location(), s3_store.location()
    write_dataset({"train": photo_pairs[:5]}, src, "folders", fmt="png")
    src.join("A", "train", "only_a.png").write_bytes(encode(photo_pairs[0].a, "png"))
    src.join("A", "train", "bomb.png").write_bytes(bad_files()["bomb.png"])
    src.join("B", "train", "bomb.png").write_bytes(encode(photo_pairs[0].b, "png"))

    summary = prepare(src, dst, PrepareOptions(load_size=32, val_fraction=0.2))

    assert (summary.inputs, summary.ready, summary.quarantined) == (7, 5, 2)
    assert summary.counts == {"train": 4, "val": 1, "test": 0}
    quarantine = pq.read_table(dst.join("quarantine.parquet").path, filesystem=dst.arrow_fs)
    reasons = dict(zip(*quarantine.to_pydict().values(), strict=True))
    assert "A without B" in reasons[src.join("A", "train", "only_a.png").url]
    assert "decompression bomb" in reasons[src.join("A", "train", "bomb.png").url]
    train = pq.read_table(dst.join("train").path, filesystem=dst.arrow_fs)
    assert train.schema.remove_metadata().equals(PAIR_SCHEMA)
    assert all(url.startswith("s3://") for url in train["a_url"].to_pylist())
    info = read_info(dst)
    assert info["counts"] == {"train": 4, "val": 1}
    # The fingerprint comes from the listing (ETags), so it can be checked without reading.
    assert info["fingerprint"] == source_fingerprint(src)
    src.join("B", "train", "bomb.png").write_bytes(encode(photo_pairs[1].b, "png"))
    assert source_fingerprint(src) != info["fingerprint"]
