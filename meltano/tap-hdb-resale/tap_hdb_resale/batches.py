"""BATCH files: a run's rows written as one Parquet file, which the loader reads in bulk.

Singer's BATCH message (singer-sdk's ``batch_config``: an encoding and a storage root) names
files instead of carrying rows, so a million rows are not a million JSON lines for the tap to
write, Meltano to relay and the loader to parse. The values stay text, exactly as delivered;
the loader removes the file once its load has committed.
"""

from __future__ import annotations

from uuid import uuid4

import pyarrow as pa
import pyarrow.parquet as pq
from singer_sdk.helpers._batch import BatchConfig
from upath import UPath

# Rows per Parquet row group: DuckDB reads row groups in parallel, so a file of one group
# would be read on one core.
ROW_GROUP_ROWS = 122_880


def write_parquet_batch(
    table: pa.Table, batch_config: BatchConfig, tap_name: str, stream: str
) -> str:
    """Write ``table`` to a new file under the batch storage root; return its ``file://`` URL.

    The file name follows singer-sdk's own Parquet batches (``<prefix><tap>--<stream>-<uuid>``);
    ``compression: gzip`` compresses the file's pages with gzip, anything else with snappy. A
    file cut short by an error is removed: a run never leaves half a batch behind.
    """
    storage = batch_config.storage
    name = f"{storage.prefix or ''}{tap_name}--{stream}-{uuid4()}.parquet"
    compression = "gzip" if batch_config.encoding.compression == "gzip" else "snappy"
    path = UPath(storage.root, **storage.params) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("wb") as handle:
            pq.write_table(table, handle, compression=compression, row_group_size=ROW_GROUP_ROWS)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return storage.get_url(name)
