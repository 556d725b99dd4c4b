"""optax's own tests of rmsprop, scale_by_rms and scale_by_stddev, with ours.

The installed optax ships its test modules (``optax/_src/*_test.py``). They
run in a subprocess with the ``substitute_optax_rmsprop`` plugin, which puts
``optax_rmsprop.rmsprop`` / ``scale_by_rms`` in place of optax's before the
modules are imported and keeps only the tests of those functions
(alias_test's contract suite for rmsprop with and without momentum, including
complex64 convergence, inject_hyperparams, dtype and sharding stability and
MultiSteps; transform_test's scalers and ``test_rms_match_adam``;
float64_test; sharding_test's abstract init).
"""

import os
import pathlib
import re
import subprocess
import sys

import optax
import pytest

OPTAX_SRC = pathlib.Path(optax.__file__).parent / "_src"
MODULES = ["alias_test.py", "transform_test.py", "float64_test.py",
           "sharding_test.py"]
PLUGIN_DIR = pathlib.Path(__file__).parent / "optax_suite"


def test_optax_own_tests_pass_with_optax_rmsprop(tmp_path):
  files = [OPTAX_SRC / m for m in MODULES]
  missing = [str(f) for f in files if not f.exists()]
  if missing:
    pytest.skip(f"this optax install ships no tests: {missing}")
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [str(PLUGIN_DIR), os.environ.get("PYTHONPATH", "")]))
  proc = subprocess.run(
      [sys.executable, "-m", "pytest", "-p", "substitute_optax_rmsprop",
       "-q", "-rfEs", "-p", "no:cacheprovider", "-c", os.devnull,
       "--rootdir", str(tmp_path), *map(str, files)],
      env=env, capture_output=True, text=True, timeout=900, check=False,
      cwd=tmp_path,
  )
  out = proc.stdout + proc.stderr
  print(out[-3000:])
  assert proc.returncode == 0, out[-5000:]
  passed = int(re.search(r"(\d+) passed", out).group(1))
  assert passed >= 35, out[-2000:]  # 37 with optax 0.2.8
  calls = re.search(r"optax_rmsprop substituted: (\{.*\})", out).group(1)
  for name in ("rmsprop", "scale_by_rms", "scale_by_stddev"):
    assert f"'{name}'" in calls, calls
