"""How the report's charts look: colours, type, titles and time axes, shared by every chart.

Figures are matplotlib ``Figure`` objects drawn on the Agg canvas, never through pyplot: they
need no display (Dagster, tests, ``make run``) and leave a notebook kernel's own backend alone.
"""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from hdb_elt.months import Month

MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
                "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")  # fmt: skip
DASH = "\u2013"  # an en dash: "Jan-Dec 2023" reads as a range
TEXT = "#222222"
MUTED = "#6b6b6b"
GRID = "#e4e4e4"
NO_DATA = "#f0f0f0"
STYLE = {
    "font.size": 10,
    "text.color": TEXT,
    "axes.labelcolor": TEXT,
    "axes.edgecolor": "#bbbbbb",
    "axes.titlesize": 14,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "xtick.labelcolor": TEXT,
    "ytick.labelcolor": TEXT,
    "legend.frameon": False,
}


# Tick spacings in months: a month, a quarter ... up to a decade for the whole history.
_TICK_STEPS = (1, 2, 3, 6, 12, 24, 60, 120)


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # draw and save with Agg, whatever backend the process has
    return fig


def titles(ax, title: str, subtitle: str) -> None:
    """A bold title with a muted subtitle of one or more lines under it."""
    lines = subtitle.count("\n") + 1
    ax.set_title(title, pad=16 + 14 * lines)
    ax.text(0, 1.015, subtitle, transform=ax.transAxes, color=MUTED, fontsize=10,
            va="bottom", linespacing=1.4)  # fmt: skip


def thousands(ax_axis) -> None:
    ax_axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))


def month_ticks(month_keys: list[str], max_ticks: int = 16) -> tuple[list[int], list[str]]:
    """Tick positions and labels: ``Jan`` with the year under it where the year starts; over
    many years, only the years (every 2, 5 or 10 years: ``1990``, ``1995``, ...)."""
    step = next((s for s in _TICK_STEPS if len(month_keys) / s <= max_ticks), _TICK_STEPS[-1])
    positions, labels = [], []
    for i, key in enumerate(month_keys):
        month = Month.parse(key)
        if step >= 12:
            if month.month == 1 and month.year % (step // 12) == 0:
                positions.append(i)
                labels.append(str(month.year))
            continue
        if (month.month - 1) % step:
            continue
        name = MONTH_NAMES[month.month - 1]
        first = not labels
        positions.append(i)
        labels.append(f"{name}\n{month.year}" if month.month == 1 or first else name)
    return positions, labels
