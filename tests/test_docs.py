"""The built documentation site: every public name, rendered math, notebooks.

These tests read the HTML that ``make -C docs html`` (or ``.ci/run``) built;
they do not build it. Without a build, or without Chromium, they skip (and
fail instead under ``OPTAX_RMSPROP_NO_SKIP=1``, as in CI). The Chromium test
leaves a screenshot of the ``rmsprop`` page in ``_screenshots/`` of the build.
"""

import html.parser
import inspect
import os
import pathlib
import re
import shutil
import subprocess

import pytest

import optax_rmsprop

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
  for name in optax_rmsprop.__all__:
    _page(site, name)
    assert f'href="{name}.html' in index, f"{name} missing from api/index"


def test_public_functions_show_math_type_hints_and_examples(site):
  for name in optax_rmsprop.__all__:
    obj = getattr(optax_rmsprop, name)
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


def _headless(chromium, *args):
  # Every host name resolves to nothing: MathJax must come from the site.
  command = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
             "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND",
             "--virtual-time-budget=20000", *args]
  return subprocess.run(command, capture_output=True, text=True, timeout=120,
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
