"""The report stage: charts and a short written summary of the marts for one window.

The figures are read from the marts through one read-only connection, closed at once, so an
open notebook never blocks a run. Medians are computed from ``fct_resale_transactions`` rather
than from ``agg_monthly_town_prices``: that aggregate is also split by flat type, and medians
of groups do not combine into the median of the whole.

Charts are matplotlib ``Figure`` objects drawn on the Agg canvas, never through pyplot: they
need no display (Dagster, tests, ``make run``) and leave a notebook kernel's own backend alone.
A notebook shows one by ending a cell with it (after ``%matplotlib inline``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator
from tap_hdb_resale.resources import resources_between

from hdb_elt.chart_style import (
    DASH,
    GRID,
    MONTH_NAMES,
    MUTED,
    NO_DATA,
    STYLE,
    TEXT,
    month_ticks,
    new_figure,
    thousands,
    titles,
)
from hdb_elt.months import Month
from hdb_elt.warehouse import connect, describe_warehouse

FACT = "marts.fct_resale_transactions"
REPORT_DIR_NAME = "report"
SUMMARY_FILE = "summary.md"
# Flat types with fewer sales than this are drawn as their individual sales, not as a box: a
# box of three sales would pretend to a distribution that is not there.
FEW_SALES = 30
DPI = 150


def attribution(start_month: str, end_month: str) -> str:
    """The notice the Singapore Open Data Licence asks for wherever the data is shown, naming
    each data.gov.sg resource the window's months come from."""
    titles = " and ".join(f'"{r.title}"' for r in resources_between(start_month, end_month))
    return (
        f"Contains information from {titles} accessed from data.gov.sg, under the Singapore "
        "Open Data Licence version 1.0."
    )


class ReportError(RuntimeError):
    """The marts cannot be read; the message says what to run first."""


# ---------------------------------------------------------------- reading the marts


@dataclass(frozen=True)
class ReportData:
    """What the report shows, aggregated from the marts for the window ``start..end``."""

    start_month: str
    end_month: str
    transactions: int
    median_price: float | None
    months: pd.DataFrame  # month_key, transactions, median_price
    month_flat_types: pd.DataFrame  # month_key, flat_type, transactions
    town_months: pd.DataFrame  # month_key, town, region, transactions, median_price_per_sqm
    towns: pd.DataFrame  # town, region, transactions, share, median_price_per_sqm, median_price
    flat_types: pd.DataFrame  # flat_type, transactions, share, p5, q1, median_price, q3, p95
    few_sales: pd.DataFrame  # flat_type, resale_price: every sale of a type with few sales

    @property
    def empty(self) -> bool:
        return self.transactions == 0

    @property
    def window(self) -> str:
        """The window for people: ``Jan-Dec 2023`` (with an en dash)."""
        return window_label(self.start_month, self.end_month)

    @property
    def month_keys(self) -> list[str]:
        """Every month of the window, with or without sales."""
        return [str(m) for m in Month.parse(self.start_month).range_to(Month.parse(self.end_month))]

    def describe(self) -> str:
        """One line: the window and how much it holds."""
        if self.empty:
            return f"{self.start_month}..{self.end_month}: no sales in the marts."
        return (
            f"{self.start_month}..{self.end_month}: {plural(self.transactions, 'sale')} in "
            f"{plural(len(self.towns), 'town')} and {plural(len(self.months), 'month')}."
        )


# Every query reads the window's sales through this CTE, with region and flat type order.
_SALES = f"""
    with sales as (
    select
        f.month_key,
        f.town,
        coalesce(t.region, 'Unknown') as region,
        f.flat_type,
        coalesce(ft.sort_order, 999) as flat_type_order,
        cast(f.resale_price as double) as resale_price,
        -- double, not decimal: DuckDB's median of decimals truncates instead of averaging
        cast(f.price_per_sqm as double) as price_per_sqm
    from {FACT} as f
    left join marts.dim_town as t on t.town = f.town
    left join marts.dim_flat_type as ft on ft.flat_type = f.flat_type
    where f.month_key between $start and $end
    )
"""

_QUERIES = {
    "months": """
        select month_key, count(*) as transactions,
               round(median(resale_price), 2) as median_price
        from sales group by month_key order by month_key""",
    "month_flat_types": """
        select month_key, flat_type, count(*) as transactions
        from sales group by month_key, flat_type, flat_type_order
        order by month_key, flat_type_order, flat_type""",
    "town_months": """
        select month_key, town, any_value(region) as region, count(*) as transactions,
               round(median(price_per_sqm), 2) as median_price_per_sqm
        from sales group by month_key, town order by month_key, town""",
    "towns": """
        select town, any_value(region) as region, count(*) as transactions,
               count(*) / sum(count(*)) over () as share,
               round(median(price_per_sqm), 2) as median_price_per_sqm,
               round(median(resale_price), 2) as median_price
        from sales group by town order by median_price_per_sqm desc, town""",
    "flat_types": """
        select flat_type, count(*) as transactions,
               count(*) / sum(count(*)) over () as share,
               round(quantile_cont(resale_price, 0.05), 2) as p5,
               round(quantile_cont(resale_price, 0.25), 2) as q1,
               round(median(resale_price), 2) as median_price,
               round(quantile_cont(resale_price, 0.75), 2) as q3,
               round(quantile_cont(resale_price, 0.95), 2) as p95
        from sales group by flat_type, flat_type_order order by flat_type_order, flat_type""",
    "few_sales": """
        select flat_type, resale_price from sales
        where flat_type in (select flat_type from sales group by flat_type having count(*) < $few)
        order by flat_type_order, flat_type, resale_price""",
}


def read_report_data(
    warehouse_path: Path, start_month: Month | str, end_month: Month | str
) -> ReportData:
    """Aggregate the marts for the window, read-only; the file is closed when this returns."""
    start, end = str(Month.parse(str(start_month))), str(Month.parse(str(end_month)))
    frames: dict[str, pd.DataFrame] = {}
    window = {"start": start, "end": end}
    with connect(Path(warehouse_path), read_only=True) as con:
        try:
            for name, sql in _QUERIES.items():
                params = {**window, "few": FEW_SALES} if "$few" in sql else window
                frames[name] = con.execute(_SALES + sql, params).df()
            total, median = con.execute(
                _SALES + "select count(*), median(resale_price) from sales", window
            ).fetchone()
        except duckdb.CatalogException:
            raise ReportError(
                f"The marts are not built in {describe_warehouse(warehouse_path)}: run the "
                "transform stage first (notebook 03, or make run)."
            ) from None
    return ReportData(
        start_month=start,
        end_month=end,
        transactions=int(total),
        median_price=None if median is None else round(float(median), 2),
        **frames,
    )


# ---------------------------------------------------------------- words and numbers for people


def month_label(month_key: str) -> str:
    """``2023-01`` -> ``Jan 2023``."""
    month = Month.parse(month_key)
    return f"{MONTH_NAMES[month.month - 1]} {month.year}"


def window_label(start_month: str, end_month: str) -> str:
    """``Jan-Dec 2023``, ``Nov 2022 - Feb 2023`` (en dashes), or ``Mar 2023`` for one month."""
    start, end = Month.parse(start_month), Month.parse(end_month)
    if start == end:
        return month_label(start_month)
    if start.year == end.year:
        return f"{MONTH_NAMES[start.month - 1]}{DASH}{MONTH_NAMES[end.month - 1]} {end.year}"
    return f"{month_label(start_month)} {DASH} {month_label(end_month)}"


def format_sgd(value: float) -> str:
    """``S$ 560,000``: whole dollars with thousands separators."""
    return f"S$ {value:,.0f}"


def markdown_sgd(value: float) -> str:
    """``S\\$ 560,000``: :func:`format_sgd` for markdown. JupyterLab (and GitHub) read the text
    between two ``$`` as maths; a backslash keeps the dollar sign a dollar sign (CommonMark)."""
    return format_sgd(value).replace("$", "\\$")


def format_change(old: float, new: float) -> str:
    """The relative change from ``old`` to ``new``, signed: ``+3.2%``, ``-0.8%``."""
    change = (new - old) / old * 100
    return f"{change:+.1f}%".replace("-0.0%", "+0.0%")


def plural(count: int, noun: str) -> str:
    """``1 sale``, ``2,085 sales``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def town_label(town: str) -> str:
    """``KALLANG/WHAMPOA`` -> ``Kallang/Whampoa``."""
    return town.title()


def flat_type_label(flat_type: str) -> str:
    """``4 ROOM`` -> ``4-room``, ``EXECUTIVE`` -> ``executive``: as Singaporeans write them."""
    return flat_type.lower().replace(" room", "-room")


# ---------------------------------------------------------------- the written summary


def _recorded(data: ReportData) -> str:
    """How the window's sales are dated: approved before March 2012, registered after."""
    bases = {r.date_basis for r in resources_between(str(data.start_month), str(data.end_month))}
    return " or ".join(
        word
        for basis, word in (("approval", "approved"), ("registration", "registered"))
        if basis in bases
    )


def summary_markdown(data: ReportData, extra: Sequence[str] = ()) -> str:
    """A few sentences in markdown: volume, prices and their move, towns, flat types; then
    each of ``extra`` as one more point (such as the long run, ``hdb_elt.long_run``)."""
    if data.empty:
        return (
            f"**No resale transactions in the marts for {data.window} "
            f"({data.start_month}..{data.end_month}).** Run the pipeline for this window "
            f"first (`make run HDB_START_MONTH={data.start_month} "
            f"HDB_END_MONTH={data.end_month}`), or choose months that have been loaded."
        )
    lines = [f"### HDB resale flats, {data.window}", ""]
    towns = data.towns
    volume = (
        f"- **{plural(data.transactions, 'resale transaction')}** "
        f"{'was' if data.transactions == 1 else 'were'} {_recorded(data)} in {data.window}, "
        f"in {plural(len(towns), 'town')}."
    )
    if len(data.months) < len(data.month_keys):
        held = window_label(data.months.month_key.iloc[0], data.months.month_key.iloc[-1])
        volume += (
            f" The marts hold sales for {len(data.months)} of the window's "
            f"{len(data.month_keys)} months ({held})."
        )
    lines.append(volume)

    price = f"- The **median resale price** was {markdown_sgd(data.median_price)}."
    first, last = data.months.iloc[0], data.months.iloc[-1]
    if len(data.months) > 1:
        price += (
            f" The monthly median moved from {markdown_sgd(first.median_price)} in "
            f"{month_label(first.month_key)} to {markdown_sgd(last.median_price)} in "
            f"{month_label(last.month_key)} "
            f"({format_change(first.median_price, last.median_price)})."
        )
    lines.append(price)

    top, bottom = towns.iloc[0], towns.iloc[-1]
    if len(towns) > 1:
        lines.append(
            f"- By median price per square metre, **{town_label(top.town)}** was the most "
            f"expensive town ({markdown_sgd(top.median_price_per_sqm)} per sqm, "
            f"{plural(top.transactions, 'sale')}) and **{town_label(bottom.town)}** the least "
            f"({markdown_sgd(bottom.median_price_per_sqm)} per sqm, "
            f"{plural(bottom.transactions, 'sale')})."
        )
    else:
        lines.append(
            f"- All sales were in **{town_label(top.town)}**, at a median of "
            f"{markdown_sgd(top.median_price_per_sqm)} per sqm."
        )

    busiest = towns.sort_values(["transactions", "town"], ascending=[False, True]).iloc[0]
    if len(towns) > 1:
        lines.append(
            f"- **{town_label(busiest.town)}** was the busiest town, with "
            f"{plural(busiest.transactions, 'sale')} ({busiest.share:.1%} of the total)."
        )

    shares = data.flat_types.sort_values(["transactions", "flat_type"], ascending=[False, True])
    first, *others = shares.itertuples()
    sentence = f"- **{flat_type_label(first.flat_type)}** flats made up {first.share:.1%} of sales"
    rest = [f"{flat_type_label(row.flat_type)} {row.share:.1%}" for row in others[:2]]
    if rest:
        sentence += ", " + " and ".join(rest)
    lines.append(sentence + ".")
    lines += [f"- {line}" for line in extra]
    lines += [
        "",
        f"*Window {data.start_month}..{data.end_month}, from `{FACT}`. "
        f"{attribution(str(data.start_month), str(data.end_month))}*",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- charts


def flat_type_colours(flat_types: list[str]) -> dict[str, tuple]:
    """One colour per flat type in display order, light (small flats) to dark (large)."""
    cmap = mpl.colormaps["YlGnBu"]
    n = len(flat_types)
    return {ft: cmap(0.2 + 0.8 * i / max(n - 1, 1)) for i, ft in enumerate(flat_types)}


def _no_data_figure(data: ReportData, title: str) -> Figure:
    with mpl.rc_context(STYLE):
        fig = new_figure(9, 3)
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.set_title(f"{title}, {data.window}")
        ax.text(0.5, 0.5, "No sales in the marts for this window.", ha="center", va="center",
                color=MUTED, fontsize=12, transform=ax.transAxes)  # fmt: skip
    return fig


def price_per_sqm_matrix(data: ReportData) -> pd.DataFrame:
    """Town x month median price per sqm, towns sorted by their window median (highest first)."""
    matrix = data.town_months.pivot(
        index="town", columns="month_key", values="median_price_per_sqm"
    )
    return matrix.reindex(index=list(data.towns["town"]), columns=data.month_keys)


def chart_price_per_sqm_by_town(data: ReportData) -> Figure:
    """Heatmap of the median price per sqm, town x month, with each town's window median."""
    title = "Median resale price per square metre by town"
    if data.empty:
        return _no_data_figure(data, title)
    matrix = price_per_sqm_matrix(data)
    towns = data.towns.set_index("town")
    n_towns = len(matrix)
    with mpl.rc_context(STYLE):
        fig = new_figure(11, max(2.4 + 0.3 * n_towns, 4.5))
        ax, side = fig.subplots(1, 2, sharey=True, width_ratios=[3, 1])
        cmap = mpl.colormaps["viridis"].with_extremes(bad=NO_DATA)
        image = ax.imshow(np.ma.masked_invalid(matrix.to_numpy(dtype=float)), cmap=cmap,
                          aspect="auto", interpolation="nearest")  # fmt: skip
        ax.set_yticks(range(n_towns), [town_label(t) for t in matrix.index])
        positions, labels = month_ticks(data.month_keys)
        ax.set_xticks(positions, labels)
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        # Beside each row: the town's median over the whole window, its sales and its region
        # (a town with few sales has noisy months).
        side.set_axis_off()
        side.set_xlim(0, 1)
        for x, header in ((0.14, "median"), (0.4, "sales"), (0.46, "region")):
            side.text(x, -0.9, header, ha="right" if x < 0.45 else "left", va="bottom",
                      color=MUTED, fontsize=9)  # fmt: skip
        for row, town in enumerate(matrix.index):
            values = towns.loc[town]
            side.text(0.14, row, f"{values['median_price_per_sqm']:,.0f}", ha="right",
                      va="center", fontsize=9, fontweight="bold")  # fmt: skip
            side.text(0.4, row, f"{values['transactions']:,}", ha="right", va="center",
                      fontsize=9, color=MUTED)  # fmt: skip
            side.text(0.46, row, values["region"], ha="left", va="center", fontsize=9,
                      color=MUTED)  # fmt: skip
        bar = fig.colorbar(image, ax=ax, location="bottom", shrink=0.6, aspect=40, pad=0.02)
        bar.set_label("Median price per sqm (SGD)")
        # Set on the colour bar itself (not its axis), so they survive a change of colour map.
        bar.locator = MaxNLocator(nbins=6)
        bar.formatter = FuncFormatter(lambda value, _: f"{value:,.0f}")
        bar.outline.set_visible(False)
        subtitle = (
            "SGD per sqm of floor area, highest median first.\n"
            "Right: each town's median and number of sales over the whole window."
        )
        if matrix.isna().to_numpy().any():
            subtitle += "\nGrey: no sales in that town and month."
        titles(ax, f"{title}, {data.window}", subtitle)
    return fig


def chart_price_by_flat_type(data: ReportData) -> Figure:
    """Box plot of resale prices by flat type, smallest type on top, sales counted."""
    title = "Resale prices by flat type"
    if data.empty:
        return _no_data_figure(data, title)
    stats = data.flat_types.reset_index(drop=True)
    colours = flat_type_colours(list(stats["flat_type"]))
    with mpl.rc_context(STYLE):
        fig = new_figure(11, 1.8 + 0.75 * len(stats))
        ax = fig.add_subplot()
        ends = []  # where each row's drawing ends, for its median label
        for i, row in stats.iterrows():
            few = data.few_sales.loc[data.few_sales["flat_type"] == row.flat_type, "resale_price"]
            if row.transactions >= FEW_SALES or few.empty:
                box = {"med": row.median_price, "q1": row.q1, "q3": row.q3,
                       "whislo": row.p5, "whishi": row.p95, "fliers": []}  # fmt: skip
                drawn = ax.bxp([box], positions=[i], orientation="horizontal", widths=0.6,
                               patch_artist=True, showfliers=False,
                               medianprops={"color": TEXT, "linewidth": 2},
                               whiskerprops={"color": MUTED}, capprops={"color": MUTED},
                               boxprops={"edgecolor": MUTED})  # fmt: skip
                drawn["boxes"][0].set_facecolor(colours[row.flat_type])
                ends.append(row.p95)
            else:
                # A handful of sales: show each one and their median, not a box.
                ax.scatter(few, np.full(len(few), i), s=40, color=colours[row.flat_type],
                           edgecolors=MUTED, linewidths=0.8, zorder=3)  # fmt: skip
                ax.vlines(row.median_price, i - 0.3, i + 0.3, color=TEXT, linewidth=2)
                ends.append(few.max())
        ax.set_yticks(
            range(len(stats)),
            [f"{flat_type_label(ft).capitalize()}\n{plural(n, 'sale')}"
             for ft, n in zip(stats["flat_type"], stats["transactions"], strict=True)],
        )  # fmt: skip
        ax.set_ylim(len(stats) - 0.5, -0.5)  # smallest type on top
        ax.tick_params(axis="y", length=0)
        ax.spines["left"].set_visible(False)
        thousands(ax.xaxis)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=8))
        ax.set_xlabel("Resale price (SGD)")
        ax.grid(axis="x", color=GRID)
        ax.set_axisbelow(True)
        left, right = ax.get_xlim()
        ax.set_xlim(right=right + (right - left) * 0.12)
        for i, (end, median) in enumerate(zip(ends, stats["median_price"], strict=True)):
            ax.text(end + (right - left) * 0.012, i, f"median {format_sgd(median)}",
                    va="center", fontsize=9, color=TEXT)  # fmt: skip
        titles(ax, f"{title}, {data.window}",
                "Box: middle half of the sales; bar: median; whiskers: 5th to 95th "
                f"percentile. Types with fewer than {FEW_SALES} sales: every sale.")  # fmt: skip
    return fig


def chart_transactions_per_month(data: ReportData) -> Figure:
    """Bars of sales per month, stacked by flat type, with each month's total."""
    title = "HDB resale transactions per month"
    if data.empty:
        return _no_data_figure(data, title)
    counts = (
        data.month_flat_types.pivot(index="month_key", columns="flat_type", values="transactions")
        .reindex(index=data.month_keys, columns=list(data.flat_types["flat_type"]))
        .fillna(0)
    )
    colours = flat_type_colours(list(counts.columns))
    x = np.arange(len(counts))
    with mpl.rc_context(STYLE):
        fig = new_figure(11, 5.5)
        ax = fig.add_subplot()
        bottom = np.zeros(len(counts))
        # Over years of months, bars touch and lose their white outlines (stripes, else).
        width, edge = (0.8, 0.7) if len(counts) <= 48 else (1.0, 0)
        for ft in counts.columns:
            values = counts[ft].to_numpy(dtype=float)
            ax.bar(x, values, bottom=bottom, width=width, color=colours[ft], edgecolor="white",
                   linewidth=edge, label=flat_type_label(ft).capitalize())  # fmt: skip
            bottom += values
        if len(counts) <= 24:
            for xi, total in zip(x, bottom, strict=True):
                if total:
                    ax.text(xi, total, f"{total:,.0f}", ha="center", va="bottom", fontsize=8.5,
                            color=TEXT)  # fmt: skip
        positions, labels = month_ticks(data.month_keys)
        ax.set_xticks(positions, labels)
        ax.tick_params(axis="x", length=0)
        ax.set_xlim(-0.6, len(counts) - 0.4)
        thousands(ax.yaxis)
        ax.set_ylabel("Transactions (sales registered)")
        ax.set_ylim(top=bottom.max() * 1.08)
        ax.grid(axis="y", color=GRID)
        ax.set_axisbelow(True)
        handles, names = ax.get_legend_handles_labels()
        ax.legend(handles[::-1], names[::-1], title="Flat type", loc="upper left",
                  bbox_to_anchor=(1.01, 1), alignment="left")  # fmt: skip
        titles(ax, f"{title}, {data.window}",
                f"{data.transactions:,} sales in total, stacked by flat type.")  # fmt: skip
    return fig


CHARTS: dict[str, Callable[[ReportData], Figure]] = {
    "median_price_per_sqm_by_town.png": chart_price_per_sqm_by_town,
    "price_by_flat_type.png": chart_price_by_flat_type,
    "transactions_per_month.png": chart_transactions_per_month,
}


# ---------------------------------------------------------------- files


def report_dir(warehouse_path: Path) -> Path:
    """Where the report's files go: ``report/`` beside the warehouse file."""
    return Path(warehouse_path).parent / REPORT_DIR_NAME


def save_report(directory: Path, charts: Mapping[str, Figure], summary: str) -> list[Path]:
    """Write each chart as a PNG and the summary as ``summary.md``; return the files written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in charts.items():
        path = directory / name
        fig.savefig(path, dpi=DPI, facecolor="white")
        written.append(path)
    path = directory / SUMMARY_FILE
    path.write_text(summary, encoding="utf-8")
    written.append(path)
    return written
