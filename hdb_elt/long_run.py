"""The report's long run: median price per square metre by year and region, over as many years
as the marts hold (35 with the whole history since 1990), with an index and one sentence.

Prices per square metre, not prices: the mix of flats sold changed over 35 years (more large
flats in the 1990s' new towns, more 4-room flats since), and per sqm the years compare fairly.
Each point is the median of a year's sales, read from ``fct_resale_transactions`` as the rest of
the report is, with each town's region from ``dim_town``.

A window whose sales fall in one calendar year has no long run: it is drawn month by month,
and the sentence says the window is too short for a trend instead of drawing one point per
region and calling it a line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from tap_hdb_resale.resources import FIRST_MONTH, resources_between

from hdb_elt.chart_style import GRID, MUTED, STYLE, TEXT, month_ticks, new_figure, thousands, titles
from hdb_elt.months import Month
from hdb_elt.report import (
    FACT,
    ReportError,
    format_change,
    markdown_sgd,
    month_label,
    plural,
    window_label,
)
from hdb_elt.warehouse import connect, describe_warehouse

CHART_FILE = "long_run_price_per_sqm.png"
# URA's five planning regions, the values of marts.dim_town.region, in the legend's order.
REGIONS = ("Central", "East", "North", "North-East", "West")
ALL = "All Singapore"
# Fewer calendar years with sales than this: months, not years, are the chart's points.
MIN_YEARS = 2
_REGION_COLOURS = {
    "Central": "#c0392b",
    "East": "#2e86c1",
    "North": "#27ae60",
    "North-East": "#8e44ad",
    "West": "#e67e22",
}

_SALES = f"""
    with sales as (
    select
        f.month_key,
        left(f.month_key, 4) as year,
        coalesce(t.region, 'Unknown') as region,
        -- double, not decimal: DuckDB's median of decimals truncates instead of averaging
        cast(f.price_per_sqm as double) as price_per_sqm
    from {FACT} as f
    left join marts.dim_town as t on t.town = f.town
    where f.month_key between $start and $end
    )
"""


@dataclass(frozen=True)
class LongRun:
    """Median price per sqm of each period (a year, or a month for a one-year window)."""

    start_month: str
    end_month: str
    period: str  # "year" or "month": what one point is
    overall: pd.DataFrame  # period, transactions, median_price_per_sqm, index
    regions: pd.DataFrame  # period, region, transactions, median_price_per_sqm, index

    @property
    def empty(self) -> bool:
        return self.overall.empty

    @property
    def window(self) -> str:
        return window_label(self.start_month, self.end_month)

    @property
    def periods(self) -> list[str]:
        """Every period from the first with sales to the last, with or without sales."""
        if self.empty:
            return []
        first, last = self.overall["period"].iloc[0], self.overall["period"].iloc[-1]
        if self.period == "year":
            return [str(year) for year in range(int(first), int(last) + 1)]
        return [str(m) for m in Month.parse(first).range_to(Month.parse(last))]

    def region_matrix(self, column: str = "median_price_per_sqm") -> pd.DataFrame:
        """Period x region, regions in :data:`REGIONS` order (any other after them)."""
        matrix = self.regions.pivot(index="period", columns="region", values=column)
        order = [r for r in REGIONS if r in matrix.columns]
        order += sorted(set(matrix.columns) - set(order))
        return matrix.reindex(index=self.periods, columns=order)


def read_long_run(
    warehouse_path: Path, start_month: Month | str, end_month: Month | str
) -> LongRun:
    """Aggregate the marts for the long run, read-only; the file is closed when this returns."""
    start, end = str(Month.parse(str(start_month))), str(Month.parse(str(end_month)))
    window = {"start": start, "end": end}
    with connect(Path(warehouse_path), read_only=True) as con:
        columns = {
            name
            for (name,) in con.execute(
                "select column_name from information_schema.columns "
                "where table_schema = 'marts' and table_name = 'dim_town'"
            ).fetchall()
        }
        if columns and "region" not in columns:
            raise ReportError(
                "marts.dim_town has no column region, which the long run groups towns by: "
                "build the marts again with the towns' regions (the seeds in "
                "dbt_resale_flat/seeds/, then the transform stage)."
            )
        try:
            (years,) = con.execute(
                _SALES + "select count(distinct year) from sales", window
            ).fetchone()
            key = "year" if years >= MIN_YEARS else "month_key"
            regions = con.execute(
                _SALES + f"select {key} as period, region, count(*) as transactions, "
                "round(median(price_per_sqm), 2) as median_price_per_sqm "
                "from sales group by all order by period, region",
                window,
            ).df()
            overall = con.execute(
                _SALES + f"select {key} as period, count(*) as transactions, "
                "round(median(price_per_sqm), 2) as median_price_per_sqm "
                "from sales group by all order by period",
                window,
            ).df()
        except duckdb.CatalogException:
            raise ReportError(
                f"The marts are not built in {describe_warehouse(warehouse_path)}: run the "
                "transform stage first (notebook 03, or make run)."
            ) from None
    # The index: each median relative to the first period's (all Singapore, or the region's).
    if not overall.empty:
        medians = overall["median_price_per_sqm"]
        overall = overall.assign(index=(medians / medians.iloc[0] * 100).round(1))
        first = regions.groupby("region")["median_price_per_sqm"].transform("first")
        regions = regions.assign(index=(regions["median_price_per_sqm"] / first * 100).round(1))
    return LongRun(
        start_month=start,
        end_month=end,
        period="year" if years >= MIN_YEARS else "month",
        overall=overall,
        regions=regions,
    )


# ---------------------------------------------------------------- the sentence


def _fold(first: float, last: float) -> str:
    """``7.0-fold`` for a rise, ``-12.0%`` for a fall."""
    return f"{last / first:.1f}-fold" if last >= first else format_change(first, last)


def long_run_sentence(run: LongRun) -> str:
    """One sentence in markdown: how the median price per sqm moved over the years, and where
    it moved most and least; for a one-year window, that it is too short for a trend."""
    if run.empty:
        return f"No sales in the marts for {run.window}: there is no long run to show."
    first, last = run.overall.iloc[0], run.overall.iloc[-1]
    old, new = first.median_price_per_sqm, last.median_price_per_sqm
    if run.period == "month":
        return (
            f"The sales in the marts for {run.window} fall in one year, too short for a "
            "long-run trend, so the chart shows months: the median price per sqm went from "
            f"{markdown_sgd(old)} in {month_label(first.period)} to {markdown_sgd(new)} in "
            f"{month_label(last.period)} ({format_change(old, new)}). Load the history since "
            f"{FIRST_MONTH[:4]} (`HDB_START_MONTH={FIRST_MONTH} make data`) to see the long run."
        )
    years = int(last.period) - int(first.period)
    rate = ((new / old) ** (1 / years) - 1) * 100
    text = (
        f"The median price per sqm {'rose' if new >= old else 'fell'} from {markdown_sgd(old)} "
        f"in {first.period} to {markdown_sgd(new)} in {last.period}, {_fold(old, new)} "
        f"({rate:+.1f}% a year)"
    )
    matrix = run.region_matrix()
    ends = matrix.loc[[first.period, last.period]].dropna(axis="columns")
    if len(ends.columns) >= 2:
        folds = (ends.iloc[1] / ends.iloc[0]).sort_values(kind="stable")
        low, high = folds.index[0], folds.index[-1]
        least = _fold(ends[low].iloc[0], ends[low].iloc[1])
        most = _fold(ends[high].iloc[0], ends[high].iloc[1])
        if least == most:
            text += f"; alike in every region ({most})"
        else:
            text += f"; by region, from {least} in {low} to {most} in {high}"
    return text + "."


# ---------------------------------------------------------------- the chart


def _year_ticks(years: list[str], max_ticks: int = 12) -> tuple[list[int], list[str]]:
    step = next((s for s in (1, 2, 5, 10) if len(years) / s <= max_ticks), 10)
    picked = [(i, y) for i, y in enumerate(years) if int(y) % step == 0] or [(0, years[0])]
    return [i for i, _ in picked], [y for _, y in picked]


def _basis_note(run: LongRun) -> str:
    """Before March 2012 a row's month is its approval month: say so when the window spans it."""
    bases = {r.date_basis for r in resources_between(run.start_month, run.end_month)}
    if len(bases) < 2:
        return ""
    return (
        "\nUp to Feb 2012 a sale counts in the month its resale was approved, from Mar 2012 "
        "in the month it was registered."
    )


def chart_long_run(run: LongRun) -> Figure:
    """Lines of the median price per sqm by region (and for all of Singapore) over the years,
    with the all-Singapore index on the right axis; month by month for a one-year window."""
    title = "Median resale price per square metre by region"
    with mpl.rc_context(STYLE):
        if run.empty:
            fig = new_figure(9, 3)
            ax = fig.add_subplot()
            ax.set_axis_off()
            ax.set_title(f"{title}, {run.window}")
            ax.text(0.5, 0.5, "No sales in the marts for this window.", ha="center",
                    va="center", color=MUTED, fontsize=12, transform=ax.transAxes)  # fmt: skip
            return fig
        periods = run.periods
        x = np.arange(len(periods))
        matrix = run.region_matrix()
        overall = run.overall.set_index("period")["median_price_per_sqm"].reindex(periods)
        marker = "o" if len(periods) <= 24 else None
        fig = new_figure(11, 5.5)
        ax = fig.add_subplot()
        for region in matrix.columns:
            ax.plot(x, matrix[region].to_numpy(dtype=float), marker=marker, markersize=4,
                    linewidth=1.6, color=_REGION_COLOURS.get(region, MUTED),
                    label=region)  # fmt: skip
        ax.plot(x, overall.to_numpy(dtype=float), marker=marker, markersize=5, linewidth=3,
                color=TEXT, label=ALL)  # fmt: skip
        positions, labels = _year_ticks(periods) if run.period == "year" else month_ticks(periods)
        ax.set_xticks(positions, labels)
        ax.set_xlim(-0.5, len(periods) - 0.5)
        ax.set_ylim(bottom=0)
        thousands(ax.yaxis)
        ax.set_ylabel("Median price per sqm (SGD)")
        ax.grid(axis="y", color=GRID)
        ax.set_axisbelow(True)
        base, base_period = overall.dropna().iloc[0], run.overall["period"].iloc[0]
        if run.period == "month":
            base_period = month_label(base_period)
        index = ax.secondary_yaxis(
            "right", functions=(lambda v: v / base * 100, lambda i: i * base / 100)
        )
        index.set_ylabel(f"{ALL}, index ({base_period} = 100)", color=MUTED)
        ax.legend(loc="upper left", bbox_to_anchor=(1.09, 1), alignment="left", title="Region")
        if run.period == "year":
            what = "Each point: the median of a year's sales, SGD per sqm of floor area."
        else:
            what = (
                "The window's sales fall in one year, too short for a long run: each point "
                "is a month's median."
            )
        sales = plural(int(run.overall["transactions"].sum()), "sale")
        titles(ax, f"{title}, {run.window}", f"{what} {sales}.{_basis_note(run)}")
    return fig
