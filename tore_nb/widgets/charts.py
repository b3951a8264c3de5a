"""The dashboard's charts: hit rate and latency per tier over time, as inline SVG.

No plotting library: the charts are SVG strings that render in any HTML output, exported
notebooks and the docs site included. A `Sample` holds a cache's cumulative counters at one
moment; the charts plot the differences between consecutive samples.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .tables import FONT, esc

if TYPE_CHECKING:
    from ..stats import MetricsSnapshot

TIER_COLORS = {"memory": "#4c78a8", "disk": "#f58518", "redis": "#e45756", "s3": "#54a24b"}


@dataclass(frozen=True)
class Sample:
    """Cumulative counters at one moment, the raw material of the charts."""

    at: float
    requests: int
    hits: int
    tiers: Mapping[str, tuple[int, int, float | None]]  # hits, misses, p50_ms


def take_sample(snap: MetricsSnapshot, at: float) -> Sample:
    """The counters of a cache's snapshot taken at time `at` (seconds), for the charts.

    >>> import tempfile
    >>> from tore_nb import CacheConfig, MultiLevelCache
    >>> cache = MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp()))
    >>> take_sample(cache.snapshot(), 0.0).requests
    0
    """
    tiers = {n: (t.hits, t.misses, t.p50_ms) for n, t in snap.tiers.items()}
    return Sample(at, snap.total_requests, snap.hits, tiers)


def _span(seconds: float) -> str:
    """A duration for an axis label: 4.2 s, 38 s, 12 min."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _segments(points: Iterable[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    """Split a series at its gaps (None values) into drawable runs."""
    out: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if y is None:
            if out[-1]:
                out.append([])
        else:
            out[-1].append((x, y))
    return [s for s in out if s]


def _chart_svg(
    title: str,
    series: Mapping[str, list[tuple[float, float | None]]],
    *,
    y_range: tuple[float, float],
    log_scale: bool = False,
    unit: str = "",
    width: int = 340,
    height: int = 140,
) -> str:
    """A small line chart as inline SVG: no plotting library, renders in any HTML output."""
    pad_l, pad_r, pad_t, pad_b = 46, 8, 20, 18
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    xs = [x for pts in series.values() for x, y in pts if y is not None]
    lo, hi = y_range
    if log_scale:
        lo, hi = math.log10(lo), math.log10(hi)
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    x1 = x1 if x1 > x0 else x0 + 1.0

    def px(x: float) -> float:
        return pad_l + plot_w * (x - x0) / (x1 - x0)

    def py(y: float) -> float:
        v = math.log10(max(y, 10**lo)) if log_scale else y
        v = min(max(v, lo), hi)
        return pad_t + plot_h * (1.0 - (v - lo) / (hi - lo))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'class="tore-nb-chart" role="img" aria-label="{esc(title)}" '
        f'style="{FONT};background:#fff;margin:4px 12px 4px 0">',
        f'<text x="{pad_l}" y="13" font-size="12" font-weight="600">{esc(title)}</text>',
        f'<rect x="{pad_l}" y="{pad_t}" width="{plot_w}" height="{plot_h}" fill="none" '
        f'stroke="#ccc"/>',
    ]
    ticks = range(math.floor(lo), math.ceil(hi) + 1) if log_scale else (lo, (lo + hi) / 2, hi)
    for tick in ticks:
        value = 10**tick if log_scale else tick
        label = f"{value:.3g}{unit}"
        y = pad_t + plot_h * (1.0 - (tick - lo) / (hi - lo))
        parts.append(
            f'<text x="{pad_l - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end" '
            f'fill="#666">{esc(label)}</text>'
        )
    if not xs:
        parts.append(
            f'<text x="{pad_l + plot_w / 2}" y="{pad_t + plot_h / 2}" font-size="11" '
            f'text-anchor="middle" fill="#999">waiting for cache activity</text>'
        )
    legend_x = pad_l
    for name, pts in series.items():
        color = TIER_COLORS.get(name, "#333")
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
            f'<text x="{legend_x}" y="{height - 4}" font-size="10" fill="{color}">'
            f"&#9632; {esc(name)}</text>"
        )
        legend_x += 8 + 7 * len(name) + 12
    parts.append(
        f'<text x="{width - pad_r}" y="{height - 4}" font-size="10" text-anchor="end" '
        f'fill="#666">last {_span(x1 - x0)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def charts_html(samples: Sequence[Sample]) -> str:
    """Hit rate per tier between consecutive samples, and p50 latency per tier (log scale).

    >>> charts_html([Sample(0.0, 0, 0, {}), Sample(1.0, 2, 1, {})]).count("<svg")
    2
    """
    if not samples:
        return ""
    t0 = samples[0].at
    names = list(samples[-1].tiers)
    rate: dict[str, list[tuple[float, float | None]]] = {"all": []}
    latency: dict[str, list[tuple[float, float | None]]] = {n: [] for n in names}
    rate.update({n: [] for n in names})
    for prev, cur in itertools.pairwise(samples):
        x = cur.at - t0
        looked = cur.requests - prev.requests
        rate["all"].append((x, 100.0 * (cur.hits - prev.hits) / looked if looked > 0 else None))
        for n in names:
            h0, m0, _ = prev.tiers.get(n, (0, 0, None))
            h1, m1, p50 = cur.tiers.get(n, (0, 0, None))
            d = (h1 - h0) + (m1 - m0)
            rate[n].append((x, 100.0 * (h1 - h0) / d if d > 0 else None))
            latency[n].append((x, p50 if p50 is not None and d > 0 else None))
    lat_values = [y for pts in latency.values() for _, y in pts if y is not None and y > 0]
    lo = 10 ** math.floor(math.log10(min(lat_values))) if lat_values else 0.001
    hi = 10 ** math.ceil(math.log10(max(lat_values))) if lat_values else 10.0
    hi = hi if hi > lo else lo * 10
    return (
        '<div class="tore-nb-charts">'
        + _chart_svg("hit rate between refreshes", rate, y_range=(0.0, 100.0), unit="%")
        + _chart_svg("p50 latency (ms)", latency, y_range=(lo, hi), log_scale=True)
        + "</div>"
    )
