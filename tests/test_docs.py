"""The built documentation site: every public name, rendered math, notebooks.

These tests read the HTML that ``make -C docs html`` (or ``.ci/run``) built;
they do not build it. Without a build, or without Chromium, they skip (and
fail instead under ``OPTAX_RMSPROP_NO_SKIP=1``, as in CI). The Chromium test
leaves a screenshot of the ``rmsprop`` page in ``_screenshots/`` of the build.
"""

import html.parser
import inspect
import json
import os
import pathlib
import re
import shutil
import subprocess

import pytest

import optax_rmsprop
from public_api import public_names
from public_api import resolve

ROOT = pathlib.Path(__file__).resolve().parent.parent
HTML = pathlib.Path(os.environ.get("OPTAX_RMSPROP_DOCS_HTML",
                                   ROOT / "docs" / "_build" / "html"))


@pytest.fixture(scope="module")
def site():
  if not (HTML / "index.html").exists():
    pytest.skip(f"no built docs at {HTML} (make -C docs html)")
  return HTML


def _page(site, name):
  path = site / "api" / f"{name}.html"
  assert path.exists(), f"{name} is public but has no API page"
  return path.read_text(encoding="utf-8")


def test_every_public_name_has_an_api_page_linked_from_the_index(site):
  index = (site / "api" / "index.html").read_text(encoding="utf-8")
  for name in public_names():
    _page(site, name)
    assert f'href="{name}.html' in index, f"{name} missing from api/index"


def test_public_functions_show_math_type_hints_and_examples(site):
  for name in public_names():
    obj = resolve(name)
    if not inspect.isfunction(obj):
      continue
    page = _page(site, name)
    assert 'class="math' in page, f"{name}: no equations"
    assert "&gt;&gt;&gt;" in page, f"{name}: no example"
    # Each annotated argument is listed with its type: "name (type)".
    for param in inspect.signature(obj).parameters.values():
      if param.annotation is inspect.Parameter.empty:
        continue
      assert re.search(rf"<strong>\**{param.name}</strong>\s*\(", page), (
          f"{name}: argument {param.name} shown without its type")


def test_guides_and_notebooks_are_built_with_outputs(site):
  for page in ("equations", "porting", "performance", "scaling", "gallery",
               "changelog", "contributing"):
    assert (site / f"{page}.html").exists(), page
  notebooks = sorted((ROOT / "examples" / "notebooks").glob("*.ipynb"))
  assert notebooks
  for notebook in notebooks:
    built = (site / "notebooks" / f"{notebook.stem}.html").read_text(
        encoding="utf-8")
    # Executed at build time: stream output and the plots are in the page.
    assert "cell_output" in built, notebook.name
    assert re.search(r'<img[^>]+src="[^"]+\.png"', built), notebook.name
  gallery = (site / "gallery.html").read_text(encoding="utf-8")
  for plot in (ROOT / "examples" / "results").glob("*.png"):
    assert plot.name in gallery or plot.stem in gallery, plot.name


class _VisibleText(html.parser.HTMLParser):
  """The text a reader sees: no scripts, styles or MathJax's hidden MathML."""

  _HIDDEN = {"script", "style", "mjx-assistive-mml"}

  def __init__(self):
    super().__init__()
    self.depth, self.parts = 0, []

  def handle_starttag(self, tag, attrs):
    self.depth += tag in self._HIDDEN

  def handle_endtag(self, tag):
    self.depth -= tag in self._HIDDEN

  def handle_data(self, data):
    if not self.depth:
      self.parts.append(data)


def _chromium():
  for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser",
               "google-chrome"):
    if name and shutil.which(name):
      return shutil.which(name)
  pytest.skip("no Chromium (apt-get install chromium)")


def _headless(chromium, *args, budget_ms=20000):
  # Every host name resolves to nothing: MathJax must come from the site.
  command = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
             "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND",
             f"--virtual-time-budget={budget_ms}", *args]
  return subprocess.run(command, capture_output=True, text=True, timeout=300,
                        check=True)


def test_rmsprop_page_renders_its_equations_offline_in_chromium(site):
  chromium = _chromium()
  url = (site / "api" / "rmsprop.html").as_uri()
  static = (site / "api" / "rmsprop.html").read_text(encoding="utf-8")
  math_nodes = len(re.findall(r'class="math notranslate nohighlight"', static))
  assert "begin{align" in static and math_nodes >= 5

  dom = _headless(chromium, "--dump-dom", url).stdout
  rendered = re.findall(r'<mjx-container[^>]*jax="SVG"', dom)
  displayed = re.findall(r'<mjx-container[^>]*display="true"', dom)
  assert len(rendered) >= math_nodes, (len(rendered), math_nodes)
  assert displayed, "the update equations are not a rendered display block"
  parser = _VisibleText()
  parser.feed(dom)
  visible = "".join(parser.parts)
  assert "\\begin{align" not in visible and "\\leftarrow" not in visible

  shots = site / "_screenshots"
  shots.mkdir(exist_ok=True)
  shot = shots / "api-rmsprop.png"
  shot.unlink(missing_ok=True)
  _headless(chromium, "--window-size=1600,1800", f"--screenshot={shot}", url)
  assert shot.stat().st_size > 10_000


class _Cards(html.parser.HTMLParser):
  """The gallery's cards: (href, [img src]) for each <a class="gallery-card">."""

  def __init__(self):
    super().__init__()
    self.cards, self._open = [], None

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == "a" and "gallery-card" in (attrs.get("class") or "").split():
      self._open = (attrs["href"], [])
      self.cards.append(self._open)
    elif tag == "img" and self._open is not None:
      self._open[1].append(attrs["src"])

  def handle_endtag(self, tag):
    if tag == "a":
      self._open = None


def test_gallery_has_a_thumbnail_card_for_every_example_and_notebook(site):
  page = (site / "gallery.html").read_text(encoding="utf-8")
  parser = _Cards()
  parser.feed(page)
  cards = dict(parser.cards)
  ids = set(re.findall(r'\bid="([^"]+)"', page))
  for href, images in parser.cards:
    target, _, anchor = href.partition("#")
    if target:
      assert (site / target).exists(), href
    if anchor:
      assert anchor in (ids if not target else set(re.findall(
          r'\bid="([^"]+)"', (site / target).read_text(encoding="utf-8")))), href
    assert len(images) == 1, href
    assert (site / images[0]).stat().st_size > 5_000, images[0]
  for notebook in (ROOT / "examples" / "notebooks").glob("*.ipynb"):
    href = f"notebooks/{notebook.stem}.html"
    assert cards.get(href) == [f"_images/gallery/{notebook.stem}.png"], href
  scripts = {src for _, images in parser.cards for src in images}
  for plot in (ROOT / "examples" / "results").glob("*.png"):
    if (ROOT / "examples" / f"{plot.stem}.py").exists():
      assert f"_images/gallery/{plot.name}" in scripts, plot.name


# Runs in the page of every built HTML file, loaded one after another into an
# iframe of each width: a table or display equation must not reach past the
# right edge of the text column (article.bd-article), nor scroll inside it.
_OVERFLOW_JS = r"""
const pages = __PAGES__, widths = __WIDTHS__, problems = [], broken = [];
const frame = document.getElementById('f');
function measure(doc, page, width) {
  const column = doc.querySelector('article.bd-article');
  if (!column) return;
  const right = column.getBoundingClientRect().right;
  for (const el of column.querySelectorAll(
      'table, div.math, mjx-container[display="true"]')) {
    const box = el.getBoundingClientRect();
    const wrapper = el.tagName === 'TABLE' ? el.parentElement : el;
    if (box.right > right + 1 || wrapper.scrollWidth > wrapper.clientWidth + 1)
      problems.push([page, width, el.tagName.toLowerCase(), Math.round(box.width),
                     Math.round(column.getBoundingClientRect().width),
                     (el.textContent || '').trim().slice(0, 60)]);
  }
  for (const img of doc.querySelectorAll('a.gallery-card img'))
    if (!(img.complete && img.naturalWidth > 0)) broken.push([page, img.src]);
}
async function run() {
  for (const width of widths) {
    frame.style.width = width + 'px';
    for (const page of pages) {
      await new Promise(done => { frame.onload = done; frame.src = page; });
      const win = frame.contentWindow;
      if (win.MathJax && win.MathJax.startup && win.MathJax.startup.promise)
        await win.MathJax.startup.promise.catch(() => null);
      for (const img of frame.contentDocument.querySelectorAll('img'))
        img.loading = 'eager';
      await new Promise(done => setTimeout(done, 100));
      measure(frame.contentDocument, page, width);
    }
  }
  const out = document.createElement('pre');
  out.id = 'result';
  out.textContent = JSON.stringify({problems, broken, pages: pages.length});
  document.body.appendChild(out);
}
run();
"""


def test_no_table_or_equation_overflows_its_column_in_chromium(site):
  """Every page at a laptop and a narrow width, after MathJax rendered."""
  chromium = _chromium()
  skip = {"genindex.html", "search.html", "py-modindex.html"}
  pages = sorted(
      path.relative_to(site).as_posix() for path in site.rglob("*.html")
      if path.name not in skip and not path.name.startswith("_")
      and not {"_modules", "_sources", "_static"} & set(path.parts))
  assert "gallery.html" in pages and "api/rmsprop.html" in pages
  widths = [1280, 900]
  script = (_OVERFLOW_JS.replace("__PAGES__", json.dumps(pages))
            .replace("__WIDTHS__", json.dumps(widths)))
  checker = site / "_overflow_check.html"
  checker.write_text(
      '<!doctype html><html><body style="margin:0">'
      '<iframe id="f" style="height:900px;border:0"></iframe>'
      f"<script>{script}</script></body></html>", encoding="utf-8")
  try:
    dom = _headless(chromium, "--allow-file-access-from-files",
                    "--window-size=1300,950", "--dump-dom", checker.as_uri(),
                    budget_ms=600_000).stdout
  finally:
    checker.unlink(missing_ok=True)
  found = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)
  assert found, "the overflow check did not finish"
  result = json.loads(html.unescape(found.group(1)))
  assert result["pages"] == len(pages)
  assert not result["problems"], "\n".join(map(str, result["problems"]))
  assert not result["broken"], result["broken"]
