"""``make bench``: every benchmark of the workbook, one after the other.

python -m bench            # extract-load, dbt, the notebooks, then Dagster
python -m bench.extract_load --repeat 5
python -m bench.dbt_build --repeat 5
python -m bench.dagster --months 3
"""

from __future__ import annotations

import sys

from bench import dagster, dbt_build, extract_load, notebooks

BENCHMARKS = (
    ("Extract-load (Meltano)", extract_load),
    ("Transform (dbt)", dbt_build),
    ("Stage notebooks (papermill)", notebooks),
    ("The pipeline through Dagster (one partition, a 12-month backfill)", dagster),
)
for title, module in BENCHMARKS:
    print(f"\n== {title}")
    sys.argv = [sys.argv[0]]
    module.main()
