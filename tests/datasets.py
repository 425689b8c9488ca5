"""Read avgrid's Parquet output the way a user would (pyarrow.dataset, hive partitions)."""

import os

import pyarrow.dataset as ds


def read_kind(out, kind) -> list[dict]:
    """All records of one kind under ``<out>/<kind>/`` as dicts; [] when the kind was never written."""
    path = os.path.join(out, kind)
    if not os.path.isdir(path):
        return []
    return ds.dataset(path, format="parquet", partitioning="hive").to_table().to_pylist()
