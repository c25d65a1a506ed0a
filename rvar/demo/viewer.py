"""The report's before/after viewer: a slider per evaluation image between any two of the degraded input, each
model's output and the clean image.

It reads what ``rvar compare`` leaves in its output folder: ``images.json`` (written by
:func:`rvar.eval.results.write_samples`: columns, and per sample the PNG of each column and its PSNR). The
result is one HTML fragment with the
images as data URIs and inline CSS and JavaScript, so ``report.html`` works offline, opened from disk or as an
MLflow artifact.

The page's address can set the viewer: ``report.html#split=30&left=clean&right=restorevar`` puts every slider at
30 % and compares the clean image (left of the divide) with the output of the model named ``restorevar``.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import List

STYLE = """
.rv-controls{margin:.5em 0 1em}.rv-controls select{margin:0 1em 0 .3em}
.rv-cards{display:flex;flex-wrap:wrap;gap:14px}
.rv-card{width:288px}.rv-card figcaption{font-size:12px;color:#444;margin-top:3px}
.rv-frame{position:relative;width:288px;height:288px;cursor:ew-resize;user-select:none;touch-action:none;
 background:#eee}
.rv-frame img{position:absolute;left:0;top:0;width:100%;height:100%;image-rendering:pixelated;pointer-events:none}
.rv-line{position:absolute;top:0;bottom:0;width:2px;margin-left:-1px;background:#fff;box-shadow:0 0 3px #000}
.rv-tag{position:absolute;top:4px;font-size:11px;background:rgba(0,0,0,.6);color:#fff;padding:1px 4px}
.rv-tag.l{left:4px}.rv-tag.r{right:4px}.rv-card input[type=range]{width:100%;margin:4px 0 0}
"""

SCRIPT = """
(function () {
  var data = JSON.parse(document.getElementById('rv-data').textContent);
  var left = document.getElementById('rv-left'), right = document.getElementById('rv-right');
  var cards = Array.prototype.slice.call(document.querySelectorAll('.rv-card'));
  function tag(sample, column) {
    var p = sample.psnr[column];
    return column + (p === undefined ? '' : ' ' + p.toFixed(2) + ' dB');
  }
  function split(card, x) {
    x = Math.max(0, Math.min(100, x));
    card.querySelector('.rv-a').style.clipPath = 'inset(0 ' + (100 - x) + '% 0 0)';
    card.querySelector('.rv-line').style.left = x + '%';
    card.querySelector('input').value = x;
  }
  function show() {
    cards.forEach(function (card) {
      var sample = data.samples[+card.dataset.sample];
      card.querySelector('.rv-a').src = sample.uris[left.value] || '';
      card.querySelector('.rv-b').src = sample.uris[right.value] || '';
      card.querySelector('.rv-tag.l').textContent = tag(sample, left.value);
      card.querySelector('.rv-tag.r').textContent = tag(sample, right.value);
    });
  }
  function fromHash() {
    var query = new URLSearchParams(location.hash.slice(1));
    if (data.columns.indexOf(query.get('left')) >= 0) left.value = query.get('left');
    if (data.columns.indexOf(query.get('right')) >= 0) right.value = query.get('right');
    show();
    if (query.has('split')) cards.forEach(function (card) { split(card, parseFloat(query.get('split'))); });
  }
  cards.forEach(function (card) {
    var frame = card.querySelector('.rv-frame'), dragging = false;
    function at(event) {
      var box = frame.getBoundingClientRect();
      split(card, 100 * (event.clientX - box.left) / box.width);
    }
    frame.addEventListener('pointerdown', function (e) { dragging = true; frame.setPointerCapture(e.pointerId); at(e); });
    frame.addEventListener('pointermove', function (e) { if (dragging) at(e); });
    frame.addEventListener('pointerup', function () { dragging = false; });
    card.querySelector('input').addEventListener('input', function (e) { split(card, +e.target.value); });
    split(card, 50);
  });
  left.addEventListener('change', show);
  right.addEventListener('change', show);
  window.addEventListener('hashchange', fromHash);
  fromHash();
})();
"""


def data_uri(path: Path) -> str:
    """A PNG file as a ``data:`` URI ("" when there is no such file): pages that work offline."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode() if path.is_file() else ""


def _options(columns: List[str], selected: str) -> str:
    return "".join(f"<option{' selected' if c == selected else ''}>{html.escape(c)}</option>" for c in columns)


def slider_section(compare_dir: Path) -> str:
    """The before/after viewer for ``compare_dir/images.json``; "" when there is no index."""
    index_path = compare_dir / "images.json"
    if not index_path.is_file():
        return ""
    index = json.loads(index_path.read_text())
    columns: List[str] = index["columns"]
    samples = [{"uris": {c: data_uri(compare_dir / f) for c, f in s["files"].items()}, "psnr": s.get("psnr", {})}
               for s in index["samples"]]
    if not samples:
        return ""
    models = columns[1:-1]
    preferred = next((m for m in models if "restorevar" in m.lower()), models[0] if models else columns[-1])
    cards = [f'<figure class="rv-card" data-sample="{number}"><div class="rv-frame"><img class="rv-b" alt="">'
             f'<img class="rv-a" alt=""><div class="rv-line"></div><span class="rv-tag l"></span>'
             f'<span class="rv-tag r"></span></div><input type="range" min="0" max="100" value="50" '
             f'aria-label="divide"><figcaption>{html.escape(sample["degradation"])}: '
             f'{html.escape(sample["image"])}</figcaption></figure>'
             for number, sample in enumerate(index["samples"])]
    payload = json.dumps({"columns": columns, "samples": samples}).replace("</", "<\\/")
    return (f"<h2>Before / after</h2><p>Drag across an image (or its slider) to move the divide; choose the two "
            f"versions to compare:</p><div class='rv-controls'>left<select id='rv-left'>"
            f"{_options(columns, columns[0])}</select>right<select id='rv-right'>{_options(columns, preferred)}"
            f"</select></div><div class='rv-cards'>{''.join(cards)}</div>"
            f"<noscript>The before/after viewer needs JavaScript; the grids below show the same images.</noscript>"
            f"<style>{STYLE}</style><script type='application/json' id='rv-data'>{payload}</script>"
            f"<script>{SCRIPT}</script>")


def add_viewer(page: str, compare_dir: Path) -> str:
    """``page`` (the report's HTML) with the viewer inserted before the quality-versus-time section (or at the
    end). The quality ladder is a table of report.md itself."""
    section = slider_section(compare_dir)
    anchor = "<h2>Quality versus time</h2>"
    if anchor in page:
        return page.replace(anchor, section + anchor, 1)
    return page.replace("</body>", section + "</body>", 1)
