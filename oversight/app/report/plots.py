"""The report's plots, drawn as inline SVG strings (no plotting library, no network, no fonts to ship).

Every label that comes from a run (protocol labels, job names) is XML-escaped here.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any, Iterable

BINS = 10  # as oversight.metrics.expected_calibration_error
COLORS = ["#3b6ea8", "#c0504d", "#4f9a59", "#8064a2", "#d08a2c", "#2c9aa0", "#7f7f7f", "#b55d9a"]


def reliability_bins(judgments: Iterable[tuple[list[float], float]], bins: int = BINS) -> list[dict[str, float]]:
    """Points of a reliability diagram: confidence is the probability of the chosen option, bucketed
    the way oversight.metrics.expected_calibration_error buckets it."""
    buckets: dict[int, list[tuple[float, float]]] = {}
    for p, correct in judgments:
        confidence = max(p)
        buckets.setdefault(min(int(confidence * bins), bins - 1), []).append((confidence, correct))
    return [{"bin": b, "confidence": sum(c for c, _ in v) / len(v), "accuracy": sum(a for _, a in v) / len(v),
             "count": len(v)} for b, v in sorted(buckets.items())]


def _label(row: dict[str, Any]) -> str:
    return f"{row.get('protocol')} / {row.get('judge')}"


def _text(x: float, y: float, text: str, anchor: str = "start", size: int = 11, cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{klass}>'
            f"{escape(str(text))}</text>")


def _svg(width: float, height: float, body: list[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
            f'height="{height:.0f}" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
            + "".join(body) + "</svg>")


def _interval_plot(rows: list[dict[str, Any]], key: str, low: str, high: str, lo_axis: float, hi_axis: float,
                   reference: float, title: str) -> str:
    """One row per job: a point with its interval on a horizontal axis."""
    label_w, plot_w, row_h, top = 250, 360, 22, 14
    height = top + row_h * len(rows) + 34
    x = lambda v: label_w + (v - lo_axis) / (hi_axis - lo_axis) * plot_w  # noqa: E731
    body = [f'<rect x="{label_w}" y="{top - 6}" width="{plot_w}" height="{row_h * len(rows) + 6}" class="frame"/>']
    for tick in _ticks(lo_axis, hi_axis):
        body.append(f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{top - 6}" y2="{top + row_h * len(rows)}" '
                    f'class="grid"/>')
        body.append(_text(x(tick), top + row_h * len(rows) + 14, f"{tick:g}", "middle", 10))
    body.append(f'<line x1="{x(reference):.1f}" x2="{x(reference):.1f}" y1="{top - 6}" '
                f'y2="{top + row_h * len(rows)}" class="reference"/>')
    for i, row in enumerate(rows):
        y = top + row_h * i + row_h / 2
        body.append(_text(label_w - 8, y + 4, _label(row), "end"))
        value, lo, hi = row.get(key), row.get(low), row.get(high)
        if value is None:
            body.append(_text(label_w + 6, y + 4, "no score", cls="muted"))
            continue
        if lo is not None and hi is not None:
            body.append(f'<line x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="{y:.1f}" y2="{y:.1f}" class="whisker"/>')
        color = COLORS[i % len(COLORS)]
        body.append(f'<circle cx="{x(value):.1f}" cy="{y:.1f}" r="4.5" fill="{color}"><title>'
                    f"{escape(_label(row))}: {value:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None else "")
                    + "</title></circle>")
    return _svg(label_w + plot_w + 20, height, body, title)


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    step = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(step))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= step), default=step)
    start = math.ceil(lo / step) * step
    return [round(start + k * step, 10) for k in range(int((hi - start) / step + 1e-9) + 1)]


def accuracy_plot(rows: list[dict[str, Any]]) -> str:
    return _interval_plot(rows, "accuracy", "ci_low", "ci_high", 0.0, 1.0, 0.5,
                          "Judge accuracy per job with 95% CI; dotted: chance with two options")


def difference_plot(rows: list[dict[str, Any]], baseline: str) -> str:
    values = [abs(r[k]) for r in rows for k in ("diff_vs_baseline", "diff_ci_low", "diff_ci_high")
              if r.get(k) is not None]
    span = max(values + [0.05])
    span = math.ceil(span * 10) / 10
    return _interval_plot(rows, "diff_vs_baseline", "diff_ci_low", "diff_ci_high", -span, span, 0.0,
                          f"Paired difference in accuracy vs {baseline}, 95% CI")


def cost_plot(rows: list[dict[str, Any]]) -> str:
    """Accuracy against calls per question (log axis when the calls span more than a factor 10)."""
    points = [r for r in rows if r.get("calls_per_question") and r.get("accuracy") is not None]
    if not points:
        return ""
    w, h, left, bottom, top, right = 520, 300, 50, 40, 14, 170
    calls = [r["calls_per_question"] for r in points]
    lo, hi = min(calls), max(calls)
    log = hi / lo > 10
    if log:
        lo_axis, hi_axis = 10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi))
        fx = lambda v: (math.log10(v) - math.log10(lo_axis)) / (math.log10(hi_axis) - math.log10(lo_axis))  # noqa: E731
        ticks = [10 ** k for k in range(round(math.log10(lo_axis)), round(math.log10(hi_axis)) + 1)]
    else:
        pad = max(1.0, (hi - lo) * 0.1)
        lo_axis, hi_axis = max(0.0, lo - pad), hi + pad
        fx = lambda v: (v - lo_axis) / (hi_axis - lo_axis)  # noqa: E731
        ticks = _ticks(lo_axis, hi_axis)
    pw, ph = w - left - right, h - top - bottom
    x = lambda v: left + fx(v) * pw  # noqa: E731
    y = lambda v: top + (1 - v) * ph  # noqa: E731
    body = [f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>']
    for t in ticks:
        body.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{top + ph}" class="grid"/>')
        body.append(_text(x(t), top + ph + 14, f"{t:g}", "middle", 10))
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        body.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(t):.1f}" y2="{y(t):.1f}" class="grid"/>')
        body.append(_text(left - 6, y(t) + 4, f"{t:g}", "end", 10))
    body.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(0.5):.1f}" y2="{y(0.5):.1f}" class="reference"/>')
    body.append(_text(left + pw / 2, h - 6, "model calls per question" + (" (log scale)" if log else ""), "middle"))
    body.append(f'<text x="12" y="{top + ph / 2:.0f}" font-size="11" text-anchor="middle" '
                f'transform="rotate(-90 12 {top + ph / 2:.0f})">accuracy</text>')
    for i, r in enumerate(points):
        color = COLORS[i % len(COLORS)]
        cx, cy = x(r["calls_per_question"]), y(r["accuracy"])
        if r.get("ci_low") is not None and r.get("ci_high") is not None:
            body.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(r["ci_low"]):.1f}" y2="{y(r["ci_high"]):.1f}" '
                        f'stroke="{color}" stroke-width="1.5"/>')
        body.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{color}"><title>{escape(_label(r))}: '
                    f'{r["accuracy"]:.3f} at {r["calls_per_question"]:g} calls/question</title></circle>')
        ly = top + 12 + i * 16
        body.append(f'<circle cx="{left + pw + 14}" cy="{ly - 4}" r="4" fill="{color}"/>')
        body.append(_text(left + pw + 22, ly, _label(r), size=10))
    return _svg(w, h, body, "Accuracy against model calls per question")


def reliability_plot(points: list[dict[str, float]], label: str, ece: float | None) -> str:
    size, pad = 190, 30
    x = lambda v: pad + v * (size - pad - 8)  # noqa: E731
    y = lambda v: size - pad - v * (size - pad - 8)  # noqa: E731
    total = sum(p["count"] for p in points) or 1
    body = [f'<rect x="{x(0):.1f}" y="{y(1):.1f}" width="{x(1) - x(0):.1f}" height="{y(0) - y(1):.1f}" class="frame"/>',
            f'<line x1="{x(0):.1f}" y1="{y(0):.1f}" x2="{x(1):.1f}" y2="{y(1):.1f}" class="reference"/>']
    for t in (0, 0.5, 1):
        body.append(_text(x(t), y(0) + 13, f"{t:g}", "middle", 9))
        body.append(_text(x(0) - 4, y(t) + 3, f"{t:g}", "end", 9))
    body.append(_text((x(0) + x(1)) / 2, size + 6, "confidence", "middle", 10))
    line = " ".join(f"{x(p['confidence']):.1f},{y(p['accuracy']):.1f}" for p in points)
    if len(points) > 1:
        body.append(f'<polyline points="{line}" fill="none" stroke="{COLORS[0]}" stroke-width="1.2"/>')
    for p in points:
        r = 2 + 9 * math.sqrt(p["count"] / total)
        body.append(f'<circle cx="{x(p["confidence"]):.1f}" cy="{y(p["accuracy"]):.1f}" r="{r:.1f}" '
                    f'fill="{COLORS[0]}" fill-opacity="0.6"><title>confidence {p["confidence"]:.2f}: accuracy '
                    f'{p["accuracy"]:.2f} over {p["count"]} judgments</title></circle>')
    if ece is not None:
        body.append(_text(x(0) + 4, y(1) + 12, f"ECE {ece:.3f}", size=10))
    return _svg(size, size + 12, body, f"Reliability diagram: {label}")
