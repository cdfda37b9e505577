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
