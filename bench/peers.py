"""Other ways to load the same CSV files into DuckDB, run beside ours in ``make bench``.

- **dlt** (PyPI ``dlt[duckdb]``), its Arrow path: ``bench/peer_dlt.py``.
- **target-duckdb** (PyPI, the Singer target Meltano Hub lists for DuckDB), fed by our tap
  sending RECORD messages (it reads no BATCH messages): ``tap-hdb-resale | target-duckdb``.

Neither goes into the project's environment: each is installed on first use into a virtual
environment of its own under ``data/bench/peers/<name>/`` (``uv venv`` and ``uv pip install``
with the project's uv; PyPI must be reachable then, and only then). Delete the folder to
install again. Each peer's rows landed are counted in its DuckDB file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hdb_elt.settings import DATA_DIR, MELTANO_PROJECT_DIR, REPO_ROOT

PEERS_DIR = DATA_DIR / "bench" / "peers"
# Pinned: a peer's figure is comparable from run to run only if the peer is the same.
REQUIREMENTS = {
    "dlt": ["dlt[duckdb]==1.31.0", "pyarrow==26.0.1"],
    "target-duckdb": ["target-duckdb==0.8.0"],
}
TAP = MELTANO_PROJECT_DIR / ".meltano" / "extractors" / "tap-hdb-resale" / "venv" / "bin"


class PeerUnavailable(RuntimeError):
    """A peer could not be installed (no network?): the benchmark goes on without it."""


@dataclass(frozen=True)
class PeerRun:
    seconds: float
    rows: int


def peer_python(name: str, log=print) -> Path:
    """The Python of the peer's own environment, installed on first use."""
    venv = PEERS_DIR / name
    python = venv / "bin" / "python"
    stamp = venv / "requirements.txt"
    wanted = "\n".join(REQUIREMENTS[name]) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    uv = Path(sys.executable).parent / "uv"
    log(f"Installing the peer {name} into {venv} ({', '.join(REQUIREMENTS[name])}) ...")
    for command in (
        [str(uv), "venv", "-q", "--python", sys.executable, str(venv)],
        [str(uv), "pip", "install", "-q", "--python", str(python), *REQUIREMENTS[name]],
    ):
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PeerUnavailable(f"{name}: {' '.join(command[:3])} failed: {done.stderr[-500:]}")
    stamp.write_text(wanted)
    return python


def run_dlt(data_dir: Path, start: str, end: str, work: Path, log=print) -> PeerRun:
    """dlt's Arrow path into ``work/dlt.duckdb``, timed from its process's start."""
    python = peer_python("dlt", log)
    started = time.perf_counter()
    done = subprocess.run(
        [
            str(python),
            str(REPO_ROOT / "bench" / "peer_dlt.py"),
            str(data_dir),
            str(work / "dlt.duckdb"),
            start,
            end,
            str(work / "dlt"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise PeerUnavailable(f"dlt failed: {done.stderr[-1500:]}")
    return PeerRun(seconds, json.loads(done.stdout.strip().splitlines()[-1])["rows"])


def run_target_duckdb(data_dir: Path, start: str, end: str, work: Path, log=print) -> PeerRun:
    """Our tap (RECORD messages) piped into target-duckdb, into ``work/target-duckdb.duckdb``."""
    python = peer_python("target-duckdb", log)
    database = work / "target-duckdb.duckdb"
    tap_config, target_config = work / "tap.json", work / "target-duckdb.json"
    tap_config.write_text(
        json.dumps({"data_dir": str(data_dir), "start_month": start, "end_month": end})
    )
    target_config.write_text(
        json.dumps(
            {"path": str(database), "default_target_schema": "raw", "primary_key_required": False}
        )
    )
    started = time.perf_counter()
    with open(work / "peer-tap.log", "wb") as tap_log:
        tap = subprocess.Popen(
            [str(TAP / "tap-hdb-resale"), "--config", str(tap_config)],
            stdout=subprocess.PIPE,
            stderr=tap_log,
        )
        target = subprocess.run(
            [str(python.parent / "target-duckdb"), "--config", str(target_config)],
            stdin=tap.stdout,
            capture_output=True,
            check=False,
        )
        tap.stdout.close()
        tap.wait()
    seconds = time.perf_counter() - started
    if tap.returncode or target.returncode:
        raise PeerUnavailable(f"tap | target-duckdb failed: {target.stderr[-1500:]!r}")
    counted = subprocess.run(
        [
            str(python),
            "-c",
            "import duckdb, sys; print(duckdb.connect(sys.argv[1], read_only=True).execute("
            "'select count(*) from raw.resale_flat_prices').fetchone()[0])",
            str(database),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return PeerRun(seconds, int(counted.stdout.strip()))
