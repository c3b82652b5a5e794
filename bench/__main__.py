"""``make bench``: per-stage time and memory from one month to a million rows, beside the
DuckDB-only floor, and the pipeline through Dagster (see bench/scale.py).

python -m bench                  # every point, 3 runs each
python -m bench --quick          # one month, 12 months, 0.1M rows, once (CI)

The focused benchmarks each run on their own:
python -m bench.extract_load --repeat 5     # Meltano alone
python -m bench.dbt_build --repeat 5        # dbt build, start-up share
python -m bench.notebooks                   # the notebooks, kernel start-up apart
python -m bench.dagster --months 3          # Dagster runs, split
python -m bench.floor --data-dir ... --database ... --start ... --end ...
"""

from __future__ import annotations

import sys

from bench.scale import main

sys.exit(main())
