"""The notebooks run top to bottom, in their quick setting, as CI executes them."""

import os
import re
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(__file__)),
                         "examples", "notebooks")


def _execute(name, monkeypatch):
  with open(os.path.join(NOTEBOOKS, name)) as f:
    nb = nbformat.read(f, as_version=4)
  # The kernel inherits the environment: quick settings, CPU like the tests.
  monkeypatch.setenv("OPTAX_RMSPROP_QUICK", "1")
  monkeypatch.setenv("JAX_PLATFORMS", os.environ.get("JAX_PLATFORMS", "cpu"))
  client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                   resources={"metadata": {"path": NOTEBOOKS}})
  client.execute()
  return "\n".join(
      out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
      for out in cell.get("outputs", []) if out.get("output_type") == "stream")


def _first_cell_installs_guarded(name):
  with open(os.path.join(NOTEBOOKS, name)) as f:
    nb = nbformat.read(f, as_version=4)
  assert "colab.research.google.com/github/optax-rmsprop/optax-rmsprop/blob/main/" \
      f"examples/notebooks/{name}" in nb.cells[0].source
  install = nb.cells[1].source
  assert "find_spec(\"optax_rmsprop\") is None" in install and "%pip install" in install


def test_quickstart_runs_and_trains(monkeypatch):
  _first_cell_installs_guarded("quickstart.ipynb")
  text = _execute("quickstart.ipynb", monkeypatch)
  # optax.rmsprop and the drop-in agree to the printed digits.
  lines = [l for l in text.splitlines() if "f = " in l]
  assert len(lines) == 2 and lines[0].split(": ")[1] == lines[1].split(": ")[1]
  accuracy = float(text.split("centered RMSprop: test accuracy ")[1].split()[0])
  assert accuracy > 0.85  # chance is 0.1
  # rms_stats reads the step count of the optimizer just trained, and every
  # layer's median step lies in (0, lr / sqrt(eps)] = (0, 10].
  steps = int(text.split("centered RMSprop: test accuracy ")[1].split("after ")[1].split()[0])
  assert f"count {steps} | learning rate 0.001" in text
  medians = [float(l.split("step size median ")[1].split(",")[0])
             for l in text.splitlines() if "step size median" in l]
  assert len(medians) == 4 and all(0 < m <= 10 for m in medians)
  assert "rms_stats from the injected state: lr 0.001," in text


def _relative_difference(text, name):
  line = next(l for l in text.splitlines() if l.startswith(name))
  return float(line.rsplit("difference ", 1)[1])


def test_porting_notebook_reproduces_torch(monkeypatch):
  pytest.importorskip("torch")
  _first_cell_installs_guarded("porting_from_pytorch.ipynb")
  text = _execute("porting_from_pytorch.ipynb", monkeypatch)
  # The preset follows torch.optim.RMSprop to float32 rounding; optax.rmsprop
  # with the "same" settings is a different optimizer.
  assert _relative_difference(text, "torch_rmsprop") < 1e-4
  assert _relative_difference(text, "optax.rmsprop") > 1e-2
  assert _relative_difference(text, "StepLR") < 1e-3
  assert "core == preset, bit for bit: True" in text


def test_notebooks_are_committed_without_outputs():
  for name in sorted(os.listdir(NOTEBOOKS)):
    if not name.endswith(".ipynb"):
      continue
    with open(os.path.join(NOTEBOOKS, name)) as f:
      nb = nbformat.read(f, as_version=4)
    for cell in nb.cells:
      if cell.cell_type == "code":
        assert cell.outputs == [] and cell.execution_count is None, name


def _numbers(line):
  return [float(x) for x in re.findall(r"-?\d+\.?\d*(?:e[-+]?\d+)?", line)]


def _line(text, start):
  return next(l for l in text.splitlines() if l.lstrip().startswith(start))


def test_rmsprop_explained_measures_what_it_says(monkeypatch):
  """The notebook's asserts fail its execution; the claims are re-read here
  from what it prints, so that they stay checked if an assert is dropped."""
  name = "rmsprop_explained.ipynb"
  _first_cell_installs_guarded(name)
  with open(os.path.join(NOTEBOOKS, name)) as f:
    source = "\n".join(c.source for c in nbformat.read(f, as_version=4).cells)
  # Only the public API, and optax's own optimizers for the comparisons.
  assert not re.search(r"optax_rmsprop\._", source)
  assert not re.search(r"^\s*(from|import) (torch|keras|tensorflow)", source, re.M)

  start = time.perf_counter()
  text = _execute(name, monkeypatch)
  elapsed = time.perf_counter() - start
  # Under a minute on two idle cores (about 35 s measured on a loaded one);
  # twice that here, for shared CI machines.
  assert elapsed < 120, elapsed

  # 1. One step by hand: the tutorial's digits, and rmsprop in float32.
  assert _line(text, "by hand (float64):").endswith("[0.23162277 0.36837724 0.56837725]")
  assert _line(text, "rmsprop:").endswith("[0.23162277 0.36837724 0.56837726]")
  assert _numbers(_line(text, "optax.rmsprop(0.01)"))[-1] < 1e-8
  tf1 = _numbers(_line(text, "ν₀ = 1 (TF1): first step /").split("= [")[-1])
  assert len(tf1) == 3 and max(tf1) < 0.2

  # 2. Per-coordinate steps differ on the aligned valley, not on the rotated.
  axis = _numbers(_line(text, "axis    : RMSprop's larger").split(":")[-1])
  rotated = _numbers(_line(text, "rotated : RMSprop's larger").split(":")[-1])
  assert min(axis) > 4 and max(rotated) < 2

  # 3. Adagrad's recovery time grows with every move, RMSprop's does not.
  ada = _numbers(_line(text, "Adagrad (lr").split(":")[-1])
  rms = _numbers(_line(text, "RMSprop (lr").split(":")[-1])
  assert len(ada) == len(rms) == 6
  assert all(a < b for a, b in zip(ada, ada[1:])) and ada[-1] > 3 * ada[0]
  assert max(rms) < 1.25 * min(rms) and ada[0] < rms[0] and ada[-1] > 2 * rms[-1]

  # 4. Decades of learning rate reaching the target, on every seed: the
  # table after "decades of learning rate" (quadratic, then digits).
  table = text.split("decades of learning rate that reach the target")[1]
  rows = {}
  for problem in ("quadratic", "digits"):
    block = table.split(f"  {problem}")[1].splitlines()[1:6]
    rows[problem] = {l[:16].strip(): _numbers(l[16:]) for l in block}
  for i in range(3):
    assert rows["digits"]["RMSprop"][i] > rows["digits"]["SGD"][i]
    assert rows["quadratic"]["RMSprop"][i] == min(r[i] for r in rows["quadratic"].values())
  assert rows["digits"]["RMSprop"][0] == max(r[0] for r in rows["digits"].values())
  assert rows["digits"]["Adam"][1] > rows["digits"]["RMSprop"][1]

  # 5. Small gradients: ε inside the root makes |g| = 1e-6 a 1/100 step.
  small = _numbers(_line(text, "|g| = 1e-06"))
  assert abs(small[1] - 0.01) < 1e-3 and abs(small[2] - 0.99) < 0.02
  centered = [_numbers(l) for l in text.splitlines() if l.startswith("m/σ =")]
  assert len(centered) == 5
  for numbers in centered:   # m/σ, measured ratio, ..., √(1 + m²/σ²)
    assert abs(numbers[1] / numbers[-1] - 1) < 0.15, numbers
  plain = _numbers(_line(text, f"{'RMSprop':26s}"))
  momentum = _numbers(_line(text, f"{'RMSprop + momentum 0.9':26s}"))
  assert momentum[1] > plain[1] and momentum[0] < plain[0] / 2
