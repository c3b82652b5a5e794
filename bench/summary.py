"""What the benchmark's figures say: the slope of time against rows, the targets met or not,
and the Markdown table written beside the JSON (``bench.scale`` measures, this module reads).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

from hdb_elt.stage_notebooks import STAGE_NAMES

PIPELINE_PATH = "papermill: the five notebooks (hdb_elt.stage_notebooks.run_stages)"
FLOOR_PATH = "DuckDB only, one process (bench.floor)"
DAGSTER_PATH = "Dagster in process, as make run (bench.dagster)"

# Targets of issue 8, checked against the figures.
TARGET_ONE_MONTH_S = 30.0
TARGET_BACKFILL_S = 180.0
TARGET_MILLION_S = 300.0
TARGET_MILLION_MIB = 2048.0
TARGET_EL_RATIO = 10.0
MAX_EXPONENT = 1.1
# Targets of issue 17: through Dagster, against the same notebooks run directly.
TARGET_DAGSTER_RATIO = 1.5
TARGET_BACKFILL_RATIO = 2.0


def fit(rows: Sequence[float], seconds: Sequence[float]) -> dict:
    """Least squares ``seconds = fixed + per_million * rows / 1e6``, and the log-log exponent
    between the smallest and largest points (1: linear; under 1: fixed costs still weigh)."""
    n = len(rows)
    mean_x, mean_y = sum(rows) / n, sum(seconds) / n
    sxx = sum((x - mean_x) ** 2 for x in rows)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(rows, seconds, strict=True)) / sxx
    first, last = min(range(n), key=rows.__getitem__), max(range(n), key=rows.__getitem__)
    exponent = math.log(seconds[last] / seconds[first]) / math.log(rows[last] / rows[first])
    return {
        "per_million_rows_s": slope * 1e6,
        "fixed_s": mean_y - slope * mean_x,
        "exponent": exponent,
    }


def slopes(points: list[dict]) -> dict | None:
    """Time against rows over the points with at least 12 months (one month is start-up)."""
    used = [p for p in points if p["rows"] > 20_000]
    if len(used) < 2:
        return None
    rows = [p["rows"] for p in used]
    result = {
        "points": [p["name"] for p in used],
        "pipeline": fit(rows, [p["pipeline"]["total_s"]["median"] for p in used]),
        "floor": fit(rows, [p["floor"]["total_s"]["median"] for p in used]),
        "stages": {
            stage: fit(rows, [p["pipeline"]["stages"][stage]["seconds"]["median"] for p in used])
            for stage in STAGE_NAMES
        },
    }
    return result


def targets(points: dict[str, dict], dagster: dict[str, dict], slope: dict | None) -> list[dict]:
    """Each target of issue 8 with its measured value and whether it is met (None: not
    measured in this run)."""
    one, year = dagster.get("one_month"), dagster.get("twelve_months")
    million = points.get("synthetic_1m")
    measured = [
        # (target, goal, value, met when: value and limit compared, limit, note)
        (
            "one month end to end through Dagster",
            f"< {TARGET_ONE_MONTH_S:.0f} s",
            one and one["wall_s"]["median"],
            operator.lt,
            TARGET_ONE_MONTH_S,
            "median wall of one partition run",
        ),
        (
            "12-month backfill through Dagster",
            f"< {TARGET_BACKFILL_S:.0f} s",
            year and year["wall_s"]["median"],
            operator.lt,
            TARGET_BACKFILL_S,
            "an asset backfill: its months in ranges, one run per range, one after the other",
        ),
        (
            "one month through Dagster against the direct path",
            f"<= {TARGET_DAGSTER_RATIO}x",
            _dagster_ratio(one, points.get("one_month")),
            operator.le,
            TARGET_DAGSTER_RATIO,
            f"median wall through Dagster / {PIPELINE_PATH}, median",
        ),
        (
            "12-month asset backfill through Dagster against the direct path",
            f"<= {TARGET_BACKFILL_RATIO}x",
            _dagster_ratio(year, points.get("twelve_months")),
            operator.le,
            TARGET_BACKFILL_RATIO,
            "the backfill's runs (months in ranges, bench.dagster) / the 12 months by papermill",
        ),
        (
            "1M rows through the whole pipeline",
            f"< {TARGET_MILLION_S:.0f} s",
            million and million["pipeline"]["total_s"]["median"],
            operator.lt,
            TARGET_MILLION_S,
            PIPELINE_PATH,
        ),
        (
            "1M rows: peak memory",
            f"< {TARGET_MILLION_MIB:.0f} MiB",
            million and million["pipeline"]["peak_rss_mib"],
            operator.lt,
            TARGET_MILLION_MIB,
            "resident memory of the whole process tree, this benchmark's process included",
        ),
        (
            "time grows no worse than linearly",
            f"exponent <= {MAX_EXPONENT}",
            slope and slope["pipeline"]["exponent"],
            operator.le,
            MAX_EXPONENT,
            "log-log slope of total time between the smallest and largest point",
        ),
        (
            "extract-load within 10x of the floor at 1M rows",
            f"<= {TARGET_EL_RATIO:.0f}x",
            million and million["ratios"]["extract_load"],
            operator.le,
            TARGET_EL_RATIO,
            "extract-load stage (notebook) median / floor's read_csv into raw",
        ),
    ]
    checks = []
    for name, goal, value, compare, limit, note in measured:
        met = None if value is None else compare(value, limit)
        checks.append({"target": name, "goal": goal, "value": value, "met": met, "note": note})
    return checks


def _dagster_ratio(dagster: dict | None, point: dict | None) -> float | None:
    """Wall through Dagster over the direct path (the notebooks by papermill) of one window."""
    if not dagster or not point:
        return None
    return dagster["wall_s"]["median"] / point["pipeline"]["total_s"]["median"]


def _s(value: float) -> str:
    return f"{value:.1f}" if value >= 0.95 else f"{value:.2f}"


def markdown(result: dict) -> str:
    meta = result["meta"]
    lines = [
        f"# Benchmark {meta['finished']} ({'quick' if meta['quick'] else 'full'}, "
        f"{meta['repeat']} run(s) per figure)",
        "",
        f"Machine: {meta['machine']['cpus']} cores, {meta['machine']['memory_gib']:.1f} GiB, "
        f"{meta['machine']['platform']}, Python {meta['machine']['python']}. Load average "
        f"(1, 5, 15 min) at the start {meta['loadavg_start']}, at the end "
        f"{meta['loadavg_end']}. Commit {meta['commit']}.",
        "",
        "## Per stage: pipeline and floor",
        "",
        f"Pipeline: {PIPELINE_PATH}, a new warehouse per run; seconds min / median / max; work "
        "= the notebook's cells (median), the rest is the kernel starting and papermill. "
        f"Floor: {FLOOR_PATH}. Peak: resident memory of the process tree (this benchmark's "
        f"process included, {meta['bench_rss_mib']:.0f} MiB at rest), the largest of the runs.",
        "",
        "| point | rows | stage | pipeline s (min / median / max) | work s | peak MiB "
        "| floor s | floor MiB | ratio |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for point in result["points"]:
        pipe, floor = point["pipeline"], point["floor"]
        for stage in (*STAGE_NAMES, "total"):
            if stage == "total":
                seconds, work = pipe["total_s"], None
                peak, fsec, fpeak = pipe["peak_rss_mib"], floor["total_s"]["median"], None
                fpeak = floor["peak_rss_mib"]
            else:
                data = pipe["stages"][stage]
                seconds, work, peak = (
                    data["seconds"],
                    data["work_s"]["median"],
                    data["peak_rss_mib"],
                )
                fsec = floor["stages"][stage]["seconds"]["median"]
                fpeak = floor["stages"][stage]["peak_rss_mib"]
            label = f"**{stage}**" if stage == "total" else stage
            lines.append(
                f"| {point['label']} | {point['rows']:,} | {label} | "
                f"{_s(seconds['min'])} / **{_s(seconds['median'])}** / {_s(seconds['max'])} | "
                f"{'' if work is None else _s(work)} | {peak:,.0f} | {_s(fsec)} | {fpeak:,.0f} | "
                f"{point['ratios'][stage]:,.0f}x |"
            )
    lines.append("")
    lines.append(
        "Extract-load throughput (rows/s, median): "
        + "; ".join(
            f"{p['label']}: pipeline {p['extract_load_rows_per_s']:,.0f}, floor "
            f"{p['floor_extract_load_rows_per_s']:,.0f}"
            for p in result["points"]
        )
        + "."
    )
    if result["dagster"]:
        lines += [
            "",
            f"## End to end through Dagster ({DAGSTER_PATH})",
            "",
            "| window | runs | wall s (min / median / max) | per run s (min / median / max) "
            "| kernels s | dagstermill s | stage work s | Dagster s | peak MiB |",
            "|---|---:|---|---|---:|---:|---:|---:|---:|",
        ]
        for name, d in result["dagster"].items():
            split, wall, run = d["split_s"], d["wall_s"], d["run_s"]
            lines.append(
                f"| {d['window']} ({name}) | {d['runs']} | {_s(wall['min'])} / "
                f"**{_s(wall['median'])}** / {_s(wall['max'])} | {_s(run['min'])} / "
                f"{_s(run['median'])} / {_s(run['max'])} | {_s(split['kernels'])} | "
                f"{_s(split['dagstermill'])} | {_s(split['stage_work'])} | "
                f"{_s(split['dagster'])} | {d['peak_rss_mib']:,.0f} |"
            )
    costs = result["start_up"]
    lines += [
        "",
        "## Start-up costs (median s; every run pays them, whatever its size)",
        "",
        "| kernel | python | meltano CLI | dbt CLI | Dagster code location (new process) |",
        "|---:|---:|---:|---:|---:|",
        "| "
        + " | ".join(
            _s(costs[k]["median"])
            for k in (
                "kernel_start_s",
                "python_start_s",
                "meltano_cli_start_s",
                "dbt_cli_start_s",
                "dagster_process_start_s",
            )
        )
        + " |",
    ]
    slope = result["slope"]
    if slope:
        pipe, floor = slope["pipeline"], slope["floor"]
        lines += [
            "",
            f"## Time against rows ({', '.join(slope['points'])})",
            "",
            f"Pipeline: {pipe['fixed_s']:.1f} s + {pipe['per_million_rows_s']:.1f} s per million "
            f"rows, exponent {pipe['exponent']:.2f}. Floor: {floor['fixed_s']:.1f} s + "
            f"{floor['per_million_rows_s']:.1f} s per million rows, exponent "
            f"{floor['exponent']:.2f}. Per stage, s per million rows: "
            + ", ".join(
                f"{stage} {fit_['per_million_rows_s']:.1f}"
                for stage, fit_ in slope["stages"].items()
            )
            + ".",
        ]
    lines += ["", "## Targets", "", "| target | goal | measured | met |", "|---|---|---:|---|"]
    for t in result["targets"]:
        value = "not measured" if t["value"] is None else f"{t['value']:,.2f}"
        met = "-" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {t['goal']} | {value} | {met} |")
    return "\n".join(lines) + "\n"
