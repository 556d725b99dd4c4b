"""The notebooks run top to bottom, in their quick setting, as CI executes them."""

import os

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
