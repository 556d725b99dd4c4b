"""Release metadata: one version, tested lower bounds, a README for PyPI.

The wheel checks read ``dist/`` as ``.ci/run`` builds it (``python -m build``);
without it they skip (and fail under ``OPTAX_RMSPROP_NO_SKIP=1``, as in CI).
"""

import email.parser
import pathlib
import re
import tarfile
import tomllib
import zipfile

import pytest

import optax_rmsprop

ROOT = pathlib.Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
REPO_URL = "https://github.com/optax-rmsprop/optax-rmsprop"


def _lower_bounds(requirements):
  bounds = {}
  for requirement in requirements:
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)(,.*)?",
                         requirement)
    if match:
      bounds[match[1].lower()] = match[2]
  return bounds


def _ci_min_pins():
  script = (ROOT / ".ci" / "run").read_text()
  pins = re.search(r"MIN_PINS=\(([^)]*)\)", script)[1].split()
  return dict(pin.split("==") for pin in pins)


def test_ci_installs_exactly_the_declared_lower_bounds():
  declared = _lower_bounds(PYPROJECT["project"]["dependencies"])
  flax = _lower_bounds(PYPROJECT["project"]["optional-dependencies"]["test"])
  declared["flax"] = flax["flax"]
  pins = _ci_min_pins()

  def normalise(version):  # 2.0 == 2.0.0
    parts = [int(part) for part in version.split(".")]
    while parts and parts[-1] == 0:
      parts.pop()
    return tuple(parts)

  for name, version in declared.items():
    assert name in pins, f"{name} lower bound is not tested"
    assert normalise(pins[name]) == normalise(version), (name, pins[name])
  # jax 0.10 supports Python 3.11 and newer (jax 0.11 needs 3.12).
  assert PYPROJECT["project"]["requires-python"] == ">=3.11"


def test_one_version_the_package_s():
  project = PYPROJECT["project"]
  assert "version" not in project and "version" in project["dynamic"]
  dynamic = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]
  assert dynamic == {"attr": "optax_rmsprop.__version__"}
  changelog = (ROOT / "CHANGELOG.md").read_text()
  assert f"## [{optax_rmsprop.__version__}]" in changelog


def test_readme_links_and_images_work_off_github():
  """PyPI renders the README away from the repository: no relative links."""
  readme = (ROOT / "README.md").read_text()
  targets = re.findall(r"\]\(([^)\s]+)\)", readme)
  targets += re.findall(r'src="([^"]+)"', readme)
  assert targets
  for target in targets:
    assert target.startswith(("https://", "http://", "#")), target
  images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
  assert all(image.startswith(f"{REPO_URL}/raw/main/") for image in images)
  # Links into this repository name files that exist.
  for target in targets:
    match = re.match(rf"{REPO_URL}/(?:blob|tree|raw)/main/([^#?]+)", target)
    if match:
      assert (ROOT / match[1]).exists(), target


@pytest.fixture(scope="module")
def dist():
  wheels = sorted((ROOT / "dist").glob("*.whl"))
  sdists = sorted((ROOT / "dist").glob("*.tar.gz"))
  if not (wheels and sdists):
    pytest.skip("no dist/ (python -m build)")
  return wheels[-1], sdists[-1]


def test_wheel_metadata(dist):
  wheel, _ = dist
  with zipfile.ZipFile(wheel) as zf:
    names = zf.namelist()
    meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
    meta = email.parser.Parser().parsestr(zf.read(meta_name).decode())
  assert meta["Version"] == optax_rmsprop.__version__
  assert meta["Requires-Python"] == ">=3.11"
  assert meta["License-Expression"] == "Apache-2.0"
  requires = meta.get_all("Requires-Dist")
  assert "jax>=0.10.1" in requires and "optax>=0.2.8" in requires
  assert meta["Description-Content-Type"] == "text/markdown"
  assert "optax_rmsprop/py.typed" in names
  assert any(n.endswith("/licenses/LICENSE") for n in names)
  # Only the package: no tests, docs or examples.
  assert {n.split("/")[0] for n in names} == {
      "optax_rmsprop", meta_name.split("/")[0]}


def test_sdist_builds_the_same_package(dist):
  _, sdist = dist
  with tarfile.open(sdist) as tf:
    names = {name.split("/", 1)[1] for name in tf.getnames() if "/" in name}
  for required in ("pyproject.toml", "README.md", "LICENSE",
                   "src/optax_rmsprop/__init__.py",
                   "src/optax_rmsprop/py.typed"):
    assert required in names, required
