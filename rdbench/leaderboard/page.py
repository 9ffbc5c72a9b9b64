"""What every page of the site shares: the inline style sheet and script (no external asset
of any kind), the page frame, escaping and number formats."""

from __future__ import annotations

from html import escape

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #1d1d1f; }
h1, h2, h3 { font-weight: 600; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: right;
         vertical-align: top; }
th { background: #f4f4f6; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[aria-sort=ascending]::after { content: " \\25B2"; }
table.sortable th[aria-sort=descending]::after { content: " \\25BC"; }
td.name, th.name { text-align: left; }
tr.reference td { color: #555; font-style: italic; }
tr.human td.name:first-child::after { content: " (human)"; color: #555; }
.status { font-size: 12px; padding: 1px 6px; border-radius: 8px; white-space: nowrap; }
.status-verified { background: #d8f0dc; }
.status-verified-with-warnings { background: #fbefc8; }
.status-rejected { background: #f6d0d0; }
.status-unverified { background: #e4e4e8; }
.ci { color: #666; font-size: 12px; }
.eps a { font-size: 11px; margin-left: 3px; }
section.apart { border-left: 4px solid #d99; padding-left: 1em; }
img.plot { max-width: 100%; border: 1px solid #eee; }
pre { white-space: pre-wrap; word-break: break-word; background: #f7f7f9; padding: 6px;
      margin: 4px 0; font-size: 13px; }
details > summary { cursor: pointer; color: #334; }
ol.events { padding-left: 2.5em; }
ol.events > li { margin: 0.6em 0; border-left: 3px solid #ccd; padding-left: 0.6em; }
li.model_reply { border-color: #7a9cd6 !important; }
li.action { border-color: #6bb38a !important; }
li.score, li.grade { border-color: #d6a84a !important; }
li.error { border-color: #d66 !important; }
.kind { font-size: 12px; color: #666; text-transform: uppercase; letter-spacing: 0.04em; }
.finding-reject { color: #a00; }
.finding-warning { color: #8a6100; }
"""

SORT_SCRIPT = """
(function () {
  function key(cell) {
    var value = cell.getAttribute("data-sort");
    if (value === null) { value = cell.textContent.trim(); }
    var number = parseFloat(value);
    return { empty: value === "", number: number, text: value,
             numeric: value !== "" && !isNaN(number) && isFinite(value) };
  }
  function sortBy(table, header, index) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    var headers = table.tHead.rows[0].cells;
    for (var i = 0; i < headers.length; i++) { headers[i].removeAttribute("aria-sort"); }
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    rows.sort(function (a, b) {
      var x = key(a.cells[index]), y = key(b.cells[index]);
      if (x.empty || y.empty) { return (x.empty ? 1 : 0) - (y.empty ? 1 : 0); }
      var order = (x.numeric && y.numeric) ? x.number - y.number
                                           : x.text.localeCompare(y.text);
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    var headers = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(headers, function (header, index) {
      header.title = "sort by this column";
      header.addEventListener("click", function () { sortBy(table, header, index); });
    });
  });
})();
"""


def frame(title: str, body: str) -> str:
    """A whole page: `body` (HTML) with the shared style and the sorting script."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{escape(title)}</title>\n<link rel=\"icon\" href=\"data:,\">\n"
        f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n"
        f"<script>{SORT_SCRIPT}</script>\n</body>\n</html>\n"
    )


def number(value: float | None, form: str = ".3f") -> str:
    """A number as shown, or an en dash for none."""
    return "\u2013" if value is None else format(value, form)


def sort_value(value: float | str | None) -> str:
    """The data-sort attribute of a cell: the full-precision number (repr), text, or ""."""
    if value is None:
        return ""
    return repr(float(value)) if isinstance(value, float | int) else str(value)


def cell(content: str, sort: float | str | None, classes: str = "") -> str:
    """A table cell holding `content` (HTML) that sorts by `sort`."""
    attribute = f' class="{classes}"' if classes else ""
    return f'<td{attribute} data-sort="{escape(sort_value(sort))}">{content}</td>'


def status_badge(status: str) -> str:
    """The submission's verdict as a small coloured label."""
    css = "status-" + status.replace(" ", "-")
    return f'<span class="status {css}">{escape(status)}</span>'
