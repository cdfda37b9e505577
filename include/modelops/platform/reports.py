"""One HTML toolkit for every report this project writes: the page, its stylesheet, escaping.

The validation report (``data/validation.py``), the evaluation report (``evaluation/report.py``)
and the model card (``governance/card_render.py``) are self-contained pages (inline CSS, no
scripts, no external assets: they are opened from MLflow's artifact view, a file manager or an
e-mail attachment). They share this page and its stylesheet, and add only the rules of what is
theirs. User text (column names, spec descriptions, an approver's comment) goes through
:func:`escape`, or a template with autoescape, never straight into the page.
"""

from __future__ import annotations

import html
from typing import Any

#: The rules every report shares: type, headings, tables, numbers, badges, notes.
STYLESHEET = """
body{font:14px/1.5 -apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1f2328;
max-width:1100px;margin:2rem auto;padding:0 1.5rem}
h1{font-size:1.6rem;margin:0 0 .5rem}
h2{font-size:1.2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;margin:.6rem 0 1rem;font-size:.92rem}
th,td{border:1px solid #d0d7de;padding:.35rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85rem}
.muted{color:#59636e;font-size:.9rem}
.badge{display:inline-block;padding:.15rem .7rem;border-radius:1rem;font-weight:600;font-size:.9rem;
vertical-align:middle}
.badge.pass{background:#1a7f37;color:#fff}.badge.fail{background:#cf222e;color:#fff}
.badge.ok{background:#dafbe1;color:#116329}.badge.bad{background:#ffebe9;color:#82071e}
.badge.na{background:#eaeef2;color:#57606a}
.note{border-left:4px solid #0969da;background:#ddf4ff;padding:.5rem .8rem;margin:.6rem 0}
.note.warn{border-color:#bf8700;background:#fff8c5}.note.bad{border-color:#cf222e;background:#ffebe9}
""".strip()


def escape(value: Any) -> str:
    """``value`` as inert HTML text (None is empty)."""
    return html.escape("" if value is None else str(value))


def badge(text: str, passed: bool | None) -> str:
    """A verdict: solid green for passed, solid red for failed, grey when there is none."""
    kind = {True: "pass", False: "fail"}.get(passed, "na")
    return f'<span class="badge {kind}">{escape(text)}</span>'


def page(title: str, body: str, *, css: str = "") -> str:
    """A whole self-contained page: ``body`` (HTML, already escaped) under the shared stylesheet plus ``css``."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>\n{STYLESHEET}\n{css.strip()}\n</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


# --- charts: inline SVG, readable in a screenshot, nothing to load ----------------------------

#: One colour per model, the same in every chart of every report.
SERIES_COLOURS = {"candidate": "#0969da", "champion": "#1a7f37", "baseline": "#8c959f"}
_OTHER_COLOURS = ("#bf3989", "#9a6700", "#8250df", "#cf222e")


def _colour(name: str, i: int) -> str:
    return SERIES_COLOURS.get(name, _OTHER_COLOURS[i % len(_OTHER_COLOURS)])


def chart(
    title: str,
    series: dict[str, list[list[float]]],
    *,
    x_label: str,
    y_label: str,
    domain: tuple[float, float, float, float] | None = (0.0, 1.0, 0.0, 1.0),
    diagonal: bool = False,
    points: bool = False,
    width: int = 340,
    height: int = 300,
) -> str:
    """A line (or, ``points=True``, scatter) chart of ``{name: [[x, y], ...]}`` as inline SVG.

    ``domain`` is ``(x0, x1, y0, y1)``; None fits the data. ``diagonal`` draws y = x (chance on a
    ROC curve, perfect calibration, a perfect regression).
    """
    pad_l, pad_r, pad_t, pad_b = 46, 12, 28, 40
    all_pts = [p for pts in series.values() for p in pts]
    if domain is None:
        xs, ys = [p[0] for p in all_pts] or [0.0, 1.0], [p[1] for p in all_pts] or [0.0, 1.0]
        lo, hi = min(min(xs), min(ys)), max(max(xs), max(ys))
        lo, hi = (lo, hi) if hi > lo else (lo - 1, hi + 1)
        domain = (lo, hi, lo, hi)
    x0, x1, y0, y1 = domain
    iw, ih = width - pad_l - pad_r, height - pad_t - pad_b

    def sx(x: float) -> float:
        return pad_l + (x - x0) / (x1 - x0) * iw

    def sy(y: float) -> float:
        return pad_t + ih - (y - y0) / (y1 - y0) * ih

    out = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-size="11" font-family="sans-serif">',
        f'<text x="{pad_l}" y="16" font-weight="600" font-size="12">{escape(title)}</text>',
        f'<rect x="{pad_l}" y="{pad_t}" width="{iw}" height="{ih}" fill="none" stroke="#d0d7de"/>',
    ]
    for k in range(5):
        fx, fy = x0 + (x1 - x0) * k / 4, y0 + (y1 - y0) * k / 4
        out.append(
            f'<text x="{sx(fx):.1f}" y="{pad_t + ih + 14}" text-anchor="middle" fill="#57606a">{fx:.3g}</text>'
        )
        out.append(
            f'<text x="{pad_l - 4}" y="{sy(fy) + 4:.1f}" text-anchor="end" fill="#57606a">{fy:.3g}</text>'
        )
    out.append(
        f'<text x="{pad_l + iw / 2:.1f}" y="{height - 6}" text-anchor="middle">{escape(x_label)}</text>'
        f'<text transform="translate(12 {pad_t + ih / 2:.1f}) rotate(-90)" text-anchor="middle">{escape(y_label)}</text>'
    )
    if diagonal:
        out.append(
            f'<line x1="{sx(x0):.1f}" y1="{sy(y0):.1f}" x2="{sx(x1):.1f}" y2="{sy(y1):.1f}" '
            'stroke="#d0d7de" stroke-dasharray="4 3"/>'
        )
    for i, (name, pts) in enumerate(series.items()):
        colour = _colour(name, i)
        if points:
            out += [
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="1.8" fill="{colour}" fill-opacity="0.55"/>'
                for x, y in pts
            ]
        elif pts:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.8"/>')
        ly = pad_t + 12 + 14 * i
        out.append(
            f'<rect x="{pad_l + iw - 92}" y="{ly - 8}" width="10" height="3" fill="{colour}"/>'
            f'<text x="{pad_l + iw - 78}" y="{ly - 4}">{escape(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)
