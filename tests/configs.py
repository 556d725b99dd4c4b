"""Configuration grids shared by the tests, each defined once."""

import itertools

# Every combination of the arguments optax.rmsprop and rmsprop share (the
# switches; nesterov only with a momentum): 40 configurations.
SHARED_WITH_OPTAX = [
    dict(zip(("eps_in_sqrt", "centered", "momentum", "nesterov",
              "bias_correction"), c))
    for c in itertools.product(
        [True, False], [False, True], [None, 0.0, 0.9], [False, True],
        [False, True],
    )
    if not (c[3] and c[2] is None)
]
assert len(SHARED_WITH_OPTAX) == 40


def case_id(case: dict) -> str:
  return "-".join(f"{k}={v}" for k, v in case.items())
