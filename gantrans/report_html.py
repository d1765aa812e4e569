"""The HTML pieces shared by the run report (`gantrans/report.py`) and `gantrans eval --html`: the
page with its style and its one small script, and cards, facts and tables.

Everything that comes from a run folder or a data folder (folder, domain and file names, settings,
messages) is text, escaped where it is put into the page; only `Html` values, built here from
escaped parts, go in as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from gantrans import __version__


class Html(str):
    """Markup that is already safe to insert (built from escaped text)."""


def text(value: object) -> Html:
    """`value` as page content: `Html` as it is, anything else escaped."""
    return value if isinstance(value, Html) else Html(escape(str(value)))


def join(parts: Iterable[object]) -> Html:
    return Html("".join(text(part) for part in parts))


def tag(name: str, content: object = "", **attributes: object) -> Html:
    """`<name attributes>content</name>`; attribute values escaped (class_ for class)."""
    return Html(f"{void(name, **attributes)}{text(content)}</{name}>")


def void(name: str, **attributes: object) -> Html:
    """An element without content (img, input): `<name attributes>`. An attribute that is True is
    written bare (`hidden`), one that is None or False is left out; `class_` is `class`, `data_x` is `data-x`."""
    shown = "".join(
        f" {key.rstrip('_').replace('_', '-')}" + ("" if value is True else f'="{escape(str(value))}"')
        for key, value in attributes.items()
        if value is not None and value is not False
    )
    return Html(f"<{name}{shown}>")


def card(title: str, body: object, anchor: str, note: object = "") -> Html:
    """A titled white box; `note` sits at the right of the title (toggles, counts)."""
    head = tag("div", join([tag("h2", title), tag("div", note, class_="note")]), class_="head")
    return tag("section", join([head, body]), class_="card", id=anchor)


def facts(rows: Sequence[tuple[str, object]]) -> Html:
    """Label/value tiles (values are text or Html)."""
    tiles = [tag("div", join([tag("div", label, class_="k"), tag("div", value, class_="v")]), class_="fact") for label, value in rows]
    return tag("div", join(tiles), class_="facts")


def table(header: Sequence[object], rows: Sequence[Sequence[object]], class_: str = "data") -> Html:
    head = tag("thead", tag("tr", join(tag("th", cell) for cell in header)))
    body = tag("tbody", join(tag("tr", join(tag("td", cell) for cell in row)) for row in rows))
    return tag("div", tag("table", join([head, body]), class_=class_), class_="scroll")


def warning_list(messages: Sequence[str]) -> Html:
    return tag("ul", join(tag("li", message) for message in messages), class_="warnings")


def page(title: str, body: object, footer: object = "") -> str:
    """A whole page: no external file, font or script, so it opens from file:// without a network."""
    foot = tag("footer", join([f"gantrans {__version__}", Html(" · "), footer]))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><main>{text(body)}{foot}</main><script>{SCRIPT}</script></body></html>\n"
    )


# Colours: ink #1d2330, muted #687082, lines #e3e6eb, blue #3b5bdb, green #2f9e44, amber #d97706, red #c92a2a.
STYLE = """
*{box-sizing:border-box}
body{margin:0;background:#f4f5f7;color:#1d2330;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:22px 20px 40px}
h1{font-size:23px;margin:0;word-break:break-all}
h2{font-size:15px;margin:0}
h3{font-size:13px;margin:14px 0 6px;color:#687082;font-weight:600;text-transform:uppercase;letter-spacing:.05em}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.top{display:flex;flex-wrap:wrap;align-items:center;gap:10px 16px}
.sub{color:#687082;margin-top:2px}
.pill{display:inline-flex;align-items:center;gap:7px;padding:3px 12px;border-radius:999px;font-weight:600;font-size:13px}
.pill.running{background:#e5edff;color:#2848c0}
.pill.running:before{content:"";width:8px;height:8px;border-radius:50%;background:currentColor;animation:pulse 1.4s ease-in-out infinite}
@keyframes pulse{50%{opacity:.25}}
.pill.finished{background:#e3f5e7;color:#22773a}
.pill.unknown{background:#eceef2;color:#4b5263}
.pill.interrupted,.pill.gone{background:#fff1db;color:#995100}
.pill.diverged,.pill.failed{background:#fde7e7;color:#b42318}
.status{margin-top:14px}
.progress{height:8px;background:#e3e6eb;border-radius:4px;overflow:hidden;margin:8px 0 4px}
.progress>div{height:100%;background:#3b5bdb;border-radius:4px}
.finished .progress>div{background:#2f9e44}
.interrupted .progress>div,.gone .progress>div{background:#d97706}
.diverged .progress>div,.failed .progress>div{background:#c92a2a}
.cmd{display:block;background:#151a24;color:#e6e9ef;padding:8px 12px;border-radius:6px;margin-top:8px;overflow-x:auto;white-space:pre}
.card{background:#fff;border:1px solid #e3e6eb;border-radius:10px;padding:14px 18px 16px;margin-top:16px;box-shadow:0 1px 2px rgba(16,24,40,.04)}
.card>.head{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:center;gap:8px;margin-bottom:10px}
.note,.muted{color:#687082;font-size:12.5px}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:8px}
.fact{background:#f8f9fb;border:1px solid #e3e6eb;border-radius:8px;padding:7px 10px}
.fact .k{color:#687082;font-size:11.5px;text-transform:uppercase;letter-spacing:.04em}
.fact .v{font-size:14.5px;font-weight:600;word-break:break-word}
details{margin-top:12px}
summary{cursor:pointer;color:#3b5bdb;font-weight:500}
details pre{background:#f8f9fb;border:1px solid #e3e6eb;border-radius:6px;padding:10px;max-height:420px;overflow:auto}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:10px 16px}
.charts.wide{grid-template-columns:repeat(auto-fill,minmax(380px,1fr))}
figure{margin:0}
figcaption{display:flex;justify-content:space-between;gap:8px;font-size:13px}
figcaption .value{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;color:#687082}
svg.chart{width:100%;height:auto;display:block;overflow:visible}
svg .grid{stroke:#edf0f3}svg .axis{stroke:#c5cbd4}
svg .tick{font-size:9px;fill:#8a919e}svg .note{font-size:10px;fill:#8a919e}
svg polyline{fill:none;stroke-linejoin:round;stroke-linecap:round}
svg polyline.raw{stroke-width:1;opacity:.3}svg polyline.smooth{stroke-width:2}svg polyline.score{stroke-width:1.6}
svg .best{stroke:#1d2330;stroke-dasharray:3 3}svg .best-label{font-size:9px;font-weight:700;fill:#1d2330}
.opt{position:absolute;opacity:0;width:1px;height:1px}
.toggles{display:flex;gap:6px}
.toggles label{cursor:pointer;user-select:none;border:1px solid #e3e6eb;border-radius:999px;padding:2px 11px;font-size:12.5px;color:#687082}
#opt-log:checked~.head label[for=opt-log],#opt-smooth:checked~.head label[for=opt-smooth]{background:#3b5bdb;border-color:#3b5bdb;color:#fff}
#opt-log:focus-visible~.head label[for=opt-log],#opt-smooth:focus-visible~.head label[for=opt-smooth]{outline:2px solid #3b5bdb;outline-offset:2px}
#opt-log:checked~.charts .lin,#opt-log:not(:checked)~.charts .log{display:none}
#opt-smooth:not(:checked)~.charts .smooth,#opt-smooth:not(:checked)~.charts .last{display:none}
#opt-smooth:not(:checked)~.charts .raw{opacity:1;stroke-width:1.5}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12.5px;margin:4px 0 8px}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;vertical-align:-1px}
.scroll{overflow-x:auto}
table.data{border-collapse:collapse;min-width:50%;font-variant-numeric:tabular-nums}
table.data th,table.data td{padding:5px 12px;border-bottom:1px solid #e3e6eb;text-align:right;white-space:nowrap}
table.data th{font-size:12px;color:#687082;font-weight:600}
table.data th:first-child,table.data td:first-child{text-align:left}
.eval-title{margin:18px 0 6px}
ul.warnings{margin:0;padding:0;list-style:none}
ul.warnings li{background:#fff7e6;border-left:4px solid #d97706;border-radius:4px;padding:7px 12px;margin:6px 0}
.slider .controls{display:flex;flex-wrap:wrap;align-items:center;gap:8px;margin-bottom:10px}
.slider input[type=range]{flex:1;min-width:160px;accent-color:#3b5bdb}
.slider button{border:1px solid #e3e6eb;background:#fff;border-radius:6px;padding:2px 9px;cursor:pointer;color:#1d2330}
.step-label{font-weight:600;min-width:10ch;font-variant-numeric:tabular-nums}
.slider figure img{display:block;width:100%;height:auto;margin:0 auto;border:1px solid #e3e6eb;border-radius:6px;image-rendering:pixelated}
.examples{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:12px}
.example{display:flex;gap:6px;align-items:flex-start;background:#f8f9fb;border:1px solid #e3e6eb;border-radius:8px;padding:6px}
.example figure{flex:1;text-align:center;font-size:12px;color:#687082}
.example img{width:100%;height:auto;border-radius:6px;border:1px solid #e3e6eb;image-rendering:pixelated;display:block}
.badge{display:inline-block;background:#fff1db;color:#995100;border-radius:999px;padding:0 8px;font-size:12px;font-weight:600;margin-left:6px}
footer{color:#687082;font-size:12px;margin-top:22px;text-align:center}
"""

# The sample grids' slider: the one script on the page. Without scripts the latest grid stays shown.
SCRIPT = """
document.querySelectorAll('.slider').forEach(function (box) {
  var range = box.querySelector('input[type=range]'), figures = box.querySelectorAll('figure');
  var label = box.querySelector('.step-label');
  function show(index) {
    index = Math.max(0, Math.min(figures.length - 1, index));
    range.value = index;
    figures.forEach(function (figure, i) { figure.hidden = i !== index; });
    label.textContent = figures[index].dataset.label;
  }
  range.addEventListener('input', function () { show(Number(range.value)); });
  box.querySelectorAll('button[data-move]').forEach(function (button) {
    button.addEventListener('click', function () {
      var move = button.dataset.move;
      show(move === 'first' ? 0 : move === 'last' ? figures.length - 1 : Number(range.value) + Number(move));
    });
  });
});
"""
