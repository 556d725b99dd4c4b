"""Parameter trees the benchmarks run on: shapes only, filled with constants."""

from __future__ import annotations

import numpy as np


def one_tensor(n: int) -> dict:
  return {"w": (n,)}


def gpt2_small(scale: float = 1.0) -> dict:
  """GPT-2 small's 148 leaves (124M params at scale 1), widths times scale.

  The leaf count stays 148 at any scale; d_model, the MLP width, the vocabulary
  and the context length shrink by ``scale``, so params shrink by ~scale².
  """
  d = max(8, int(768 * scale))
  vocab, ctx = max(8, int(50257 * scale)), max(8, int(1024 * scale))
  tree = {"wte": (vocab, d), "wpe": (ctx, d), "ln_f": {"g": (d,), "b": (d,)}}
  for i in range(12):
    tree[f"h{i}"] = {
        "ln_1": {"g": (d,), "b": (d,)},
        "attn": {"c_attn_w": (d, 3 * d), "c_attn_b": (3 * d,),
                 "c_proj_w": (d, d), "c_proj_b": (d,)},
        "ln_2": {"g": (d,), "b": (d,)},
        "mlp": {"c_fc_w": (d, 4 * d), "c_fc_b": (4 * d,),
                "c_proj_w": (4 * d, d), "c_proj_b": (d,)},
    }
  return tree


def resnet18(scale: float = 1.0) -> dict:
  """ResNet-18's conv kernels (HWIO), batch-norm scales/biases and classifier.

  11.7M params and 62 leaves at scale 1; channel widths times ``scale``.
  """
  c = lambda ch: max(4, int(ch * scale))
  tree = {"stem": {"conv": (7, 7, 3, c(64)), "bn_g": (c(64),), "bn_b": (c(64),)}}
  cin = c(64)
  for stage, ch in enumerate([64, 128, 256, 512]):
    for block in range(2):
      cout = c(ch)
      b = {"conv1": (3, 3, cin, cout), "bn1_g": (cout,), "bn1_b": (cout,),
           "conv2": (3, 3, cout, cout), "bn2_g": (cout,), "bn2_b": (cout,)}
      if block == 0 and stage > 0:
        b.update(down=(1, 1, cin, cout), down_g=(cout,), down_b=(cout,))
      tree[f"s{stage}b{block}"] = b
      cin = cout
  tree["fc"] = {"w": (cin, 1000), "b": (1000,)}
  return tree


def many_leaves(count: int, side: int = 64) -> dict:
  """``count`` leaves of (side, side): e.g. a deep stack of small layers."""
  return {f"l{i:04d}": (side, side) for i in range(count)}


def is_shape(x) -> bool:
  return isinstance(x, tuple) and all(isinstance(d, int) for d in x)


def num_params(shapes) -> int:
  import jax

  return sum(
      int(np.prod(s)) for s in jax.tree.leaves(shapes, is_leaf=is_shape)
  )
