"""The dashboard's charts: hit rate and latency per tier over wall-clock time, as inline SVG.

No plotting library: the charts are SVG strings that render in any HTML output, exported
notebooks and the docs site included, at no import cost. A `Sample` holds a cache's cumulative
counters at one moment. The charts cut the last `WINDOW_S` seconds into fixed `BUCKET_S`
buckets aligned to the clock and plot, per bucket, the hit rate and the mean latency of the
lookups made in it, each a difference of cumulative counters: refreshes that come seconds or
milliseconds apart no longer make the lines zig-zag, and a burst of slow lookups shows in its
own bucket only (a percentile of the tier's recent samples would carry it into the next ones).
A bucket without lookups leaves a gap.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .figures import TIER_COLORS
from .tables import BORDER, FONT, SURFACE, esc

if TYPE_CHECKING:
    from ..stats import MetricsSnapshot

WINDOW_S = 300.0  # the charts show the last 5 minutes...
BUCKET_S = 5.0  # ...in 5 s buckets
_MIN_SPAN_S = 60.0  # a young dashboard still shows a minute, not a squashed few seconds

Series = dict[str, list[tuple[float, float | None]]]
_NONE = (0, 0, 0, 0.0)  # a tier's counters before it was seen


@dataclass(frozen=True)
class Sample:
    """Cumulative counters at one moment (Unix time `at`), the raw material of the charts."""

    at: float
    requests: int
    hits: int
    # per tier: hits, misses, lookups timed, their summed latency in ms
    tiers: Mapping[str, tuple[int, int, int, float]]


def take_sample(snap: MetricsSnapshot, at: float) -> Sample:
    """The counters of a cache's snapshot taken at Unix time `at`, for the charts.

    >>> import tempfile
    >>> from tore_nb import CacheConfig, MultiLevelCache
    >>> cache = MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp()))
    >>> take_sample(cache.snapshot(), 0.0).requests
    0
    """
    tiers = {
        n: (t.hits, t.misses, t.lookups_timed, t.latency_total_ms) for n, t in snap.tiers.items()
    }
    return Sample(at, snap.total_requests, snap.hits, tiers)


def bucketed(
    samples: Sequence[Sample], *, window: float = WINDOW_S, bucket: float = BUCKET_S
) -> tuple[tuple[float, float], Series, Series]:
    """The x range and, per bucket midpoint, hit rate (%) and mean latency (ms) per tier,
    both of the lookups made during the bucket.

    Hit rates have an "all" series (every lookup of the cache). A value is None where the
    bucket saw no lookups there (no timed lookups, for latency).

    >>> a = Sample(0.0, 0, 0, {"memory": (0, 0, 0, 0.0)})
    >>> s = [a, Sample(3.0, 4, 3, {"memory": (3, 1, 4, 0.4)})]
    >>> _, rate, latency = bucketed(s)
    >>> rate["memory"][0], latency["memory"][0]
    ((2.5, 75.0), (2.5, 0.1))
    """
    if not samples:
        return (0.0, _MIN_SPAN_S), {}, {}
    times = [s.at for s in samples]
    end = times[-1]
    start = max(times[0], end - window)
    start = min(start, end - _MIN_SPAN_S)
    first = math.floor(max(start, times[0]) / bucket) * bucket
    names = list(samples[-1].tiers)
    rate: Series = {"all": [], **{n: [] for n in names}}
    latency: Series = {n: [] for n in names}

    def last_before(t: float) -> Sample | None:
        # strictly before: a sample taken at a bucket's start counts in that bucket
        i = bisect.bisect_left(times, t)
        return samples[i - 1] if i else None

    b = first
    while b <= end:
        before, after = last_before(b), last_before(b + bucket)
        x = b + bucket / 2
        if before is None:  # the first bucket: counted from the first sample
            before = samples[0]
        if after is None or after is before:
            for series in (*rate.values(), *latency.values()):
                series.append((x, None))
            b += bucket
            continue
        looked = after.requests - before.requests
        rate["all"].append((x, 100.0 * (after.hits - before.hits) / looked if looked else None))
        for n in names:
            h0, m0, c0, t0 = before.tiers.get(n, _NONE)
            h1, m1, c1, t1 = after.tiers.get(n, _NONE)
            d, timed = (h1 - h0) + (m1 - m0), c1 - c0
            rate[n].append((x, 100.0 * (h1 - h0) / d if d > 0 else None))
            latency[n].append((x, (t1 - t0) / timed if timed > 0 else None))
        b += bucket
    return (start, end), rate, latency


def _segments(points: Sequence[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    """Split a series at its gaps (None values) into drawable runs."""
    out: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if y is None:
            if out[-1]:
                out.append([])
        else:
            out[-1].append((x, y))
    return [s for s in out if s]


def _time_ticks(x0: float, x1: float) -> tuple[list[float], str]:
    """Round clock times for the x axis, at most 6, and their strftime format."""
    for step in (5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if (x1 - x0) / step <= 5:
            break
    first = float(math.ceil(x0 / step) * step)
    ticks = [first + i * step for i in range(int((x1 - first) // step) + 1)]
    return ticks, "%H:%M" if step >= 60 else "%H:%M:%S"


def _chart_svg(
    title: str,
    series: Series,
    x_range: tuple[float, float],
    *,
    y_label: str,
    y_range: tuple[float, float],
    log_scale: bool = False,
    width: int = 400,
    height: int = 196,
) -> str:
    """A line chart over clock time as inline SVG, its colours from the theme (see tables).

    The y label is a line of its own above the plot, not turned along the axis: it says what
    a point is ("mean lookup latency in each 5 s"), which is longer than the plot is tall.
    """
    pad_l, pad_r, pad_t, pad_b = 58, 10, 38, 44
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    x0, x1 = x_range
    lo, hi = y_range
    if log_scale:
        lo, hi = math.log10(lo), math.log10(hi)

    def px(x: float) -> float:
        return pad_l + plot_w * (x - x0) / (x1 - x0)

    def py(y: float) -> float:
        v = math.log10(max(y, 10**lo)) if log_scale else y
        v = min(max(v, lo), hi)
        return pad_t + plot_h * (1.0 - (v - lo) / (hi - lo))

    # text is filled with currentColor: the SVG's own colour, paired with its background
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'class="tore-nb-chart" role="img" aria-label="{esc(title)}" '
        f'style="{FONT};{SURFACE};margin:4px 12px 4px 0">',
        f'<text x="{pad_l}" y="14" font-size="12" font-weight="600" fill="currentColor">'
        f"{esc(title)}</text>",
        f'<rect x="{pad_l}" y="{pad_t}" width="{plot_w}" height="{plot_h}" fill="none" '
        f'style="stroke:{BORDER}"/>',
        f'<text x="{pad_l}" y="{pad_t - 8}" font-size="10" class="tore-nb-y-label" '
        f'fill="currentColor">{esc(y_label)}</text>',
        f'<text x="{pad_l + plot_w / 2:.0f}" y="{height - 18}" font-size="10" '
        f'text-anchor="middle" fill="currentColor">time (local)</text>',
    ]
    ticks = range(math.floor(lo), math.ceil(hi) + 1) if log_scale else (lo, (lo + hi) / 2, hi)
    for tick in ticks:
        label = f"{10**tick:g}" if log_scale else f"{tick:g}"
        y = pad_t + plot_h * (1.0 - (tick - lo) / (hi - lo))
        parts.append(
            f'<text x="{pad_l - 4}" y="{y + 3.5:.1f}" font-size="10" text-anchor="end" '
            f'fill="currentColor">{esc(label)}</text>'
        )
    xticks, fmt = _time_ticks(x0, x1)
    for tick in xticks:
        x = px(tick)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{pad_t + plot_h}" y2="{pad_t + plot_h + 3}" '
            f'style="stroke:{BORDER}"/><text x="{x:.1f}" y="{pad_t + plot_h + 13}" '
            f'font-size="9" text-anchor="middle" fill="currentColor">'
            f"{time.strftime(fmt, time.localtime(tick))}</text>"
        )
    if not any(y is not None for pts in series.values() for _, y in pts):
        parts.append(
            f'<text x="{pad_l + plot_w / 2}" y="{pad_t + plot_h / 2}" font-size="11" '
            f'text-anchor="middle" fill="currentColor" opacity="0.75">'
            f"waiting for cache activity</text>"
        )
    legend_x = pad_l
    for name, pts in series.items():
        # "all" follows the text colour; the tiers keep the colours of the table
        color = TIER_COLORS.get(name, "currentColor")
        for seg in _segments(pts):
            if len(seg) == 1:
                x, y = seg[0]
                parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2" fill="{color}"/>')
            else:
                coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in seg)
                parts.append(
                    f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.6"/>'
                )
        parts.append(
            f'<rect x="{legend_x}" y="{height - 11}" width="8" height="8" fill="{color}"/>'
            f'<text x="{legend_x + 11}" y="{height - 3}" font-size="10" fill="currentColor">'
            f"{esc(name)}</text>"
        )
        legend_x += 11 + 6 * len(name) + 14
    parts.append("</svg>")
    return "".join(parts)


def charts_html(
    samples: Sequence[Sample], *, window: float = WINDOW_S, bucket: float = BUCKET_S
) -> str:
    """Hit rate and mean lookup latency per tier over the last `window` s, in `bucket` s buckets.

    >>> charts_html([Sample(0.0, 0, 0, {}), Sample(1.0, 2, 1, {})]).count("<svg")
    2
    """
    if not samples:
        return ""
    x_range, rate, latency = bucketed(samples, window=window, bucket=bucket)
    lat_values = [y for pts in latency.values() for _, y in pts if y is not None and y > 0]
    lo = 10 ** math.floor(math.log10(min(lat_values))) if lat_values else 0.001
    hi = 10 ** math.ceil(math.log10(max(lat_values))) if lat_values else 10.0
    hi = hi if hi > lo else lo * 10
    every = f"in each {bucket:g} s"
    return (
        '<div class="tore-nb-charts">'
        + _chart_svg(
            "Hit rate per tier",
            rate,
            x_range,
            y_label=f"hit rate of the lookups {every}, %",
            y_range=(0.0, 100.0),
        )
        + _chart_svg(
            "Lookup latency per tier",
            latency,
            x_range,
            y_label=f"mean lookup latency {every}, ms (log scale)",
            y_range=(lo, hi),
            log_scale=True,
        )
        + "</div>"
    )
