"""The benchmark script runs end to end and writes what the docs quote.

A smoke test (tiny sizes, no timing assertions): benchmarks are scripts,
but the README's numbers come from this one, so it must keep working.
"""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_run_py_quick_writes_results(tmp_path):
  cmd = [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick",
         "--no-torch", "--leaves", "10", "--leaf-counts", "10",
         "--sizes", "65536", "--configs", "plain,nu_bf16",
         "--out", str(tmp_path)]
  subprocess.run(cmd, check=True, capture_output=True, timeout=600)
  (json_path,) = tmp_path.glob("*.json")
  result = json.loads(json_path.read_text())
  cells = {(c["tree"], c["config"]): c for c in result["table"]}
  plain = cells[("one tensor", "plain")]["impls"]
  # Same numbers as optax, and as the stacked layout, after 10 steps.
  assert plain["optax"]["max_abs_diff_vs_ours"] == 0
  assert plain["ours+stack_leaves"]["max_abs_diff_vs_ours"] == 0
  assert all(r["device_s"] > 0 for r in plain.values())
  bf16 = cells[("one tensor", "nu_bf16")]["impls"]["ours"]
  assert bf16["state_bytes"] * 2 == plain["ours"]["state_bytes"]
  md = json_path.with_suffix(".md").read_text()
  assert "## Summary" in md
  assert len(list(tmp_path.glob("*.png"))) == 2
