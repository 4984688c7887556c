"""The static HTML status page that ``mlds status`` writes, like MLC@Home's status page.

Volunteers and the project watched progress on one page: per dataset a table with one row per
machine (task) giving the networks stored, the next milestone (target), the percent reached, how
many converged and how many stopped at the epoch cap, and a progress bar. The page is a single
self-contained file: inline CSS, no JavaScript, no external resources, so any web server can serve
it and a browser can open it straight from disk. Every text is HTML-escaped because task names
come from files. The page is replaced atomically so a web server never serves a torn file.
"""

import html
import os
from datetime import datetime, timezone

from boinc_app.atomic_file import write_atomically

STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 2em; }
th, td { padding: 0.25em 0.75em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.bar { width: 200px; height: 1em; background: #eee; outline: 1px solid #999; }
.fill { height: 100%; background: #4a8; }
.generated { color: #666; font-size: 0.9em; }
"""

COLUMNS = ("task", "count", "target", "percent", "converged", "capped", "progress")


def render_status_page(rows, generated_at=None):
    """The complete HTML5 status page for ``rows`` (``ProgressRow``s), as a string."""
    generated_at = generated_at or datetime.now(timezone.utc)
    body = "\n".join(dataset_section(dataset, group) for dataset, group in rows_by_dataset(rows))
    return page_document(body or "<p>no networks yet</p>", generated_at)


def write_status_page(path, rows, generated_at=None):
    """Render the page and replace ``path`` with it atomically (creating its directory)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    write_atomically(path, render_status_page(rows, generated_at).encode("utf-8"))


def rows_by_dataset(rows):
    """``[(dataset, [rows])]`` in the order each dataset first appears."""
    groups = {}
    for row in rows:
        groups.setdefault(row.dataset, []).append(row)
    return list(groups.items())


def page_document(body, generated_at):
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>mlds status</title>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n<h1>mlds status</h1>\n"
        f"{body}\n"
        f'<p class="generated">generated {html.escape(utc_iso(generated_at))}</p>\n'
        "</body>\n</html>\n"
    )


def utc_iso(moment):
    """``moment`` in UTC, ISO 8601, to the second (a naive datetime is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat()


def dataset_section(dataset, rows):
    stored = sum(row.count for row in rows)
    converged = sum(row.converged for row in rows)
    heading = f"{dataset}: {stored} networks stored, {converged} converged"
    header = "".join(f"<th>{name}</th>" for name in COLUMNS)
    body = "\n".join(task_row(row) for row in rows)
    return (
        f'<section data-dataset="{html.escape(dataset)}">\n<h2>{html.escape(heading)}</h2>\n'
        f"<table>\n<thead><tr>{header}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>\n</section>"
    )


def task_row(row):
    cells = (row.task, row.count, row.target, f"{row.percent:.1f}%", row.converged, row.capped)
    texts = "".join(f"<td>{html.escape(str(cell))}</td>" for cell in cells)
    return f'<tr data-task="{html.escape(row.task)}">{texts}<td>{progress_bar(row.percent)}</td></tr>'


def progress_bar(percent):
    width = f"{percent:.1f}"
    return f'<div class="bar"><div class="fill" data-percent="{width}" style="width: {width}%"></div></div>'
