"""DQN on CartPole-v1 (gymnax, all in JAX) with the Nature-DQN RMSprop.

    python examples/dqn_cartpole.py           # seeds 0, 1, 2: greedy returns, plot
    python examples/dqn_cartpole.py --quick   # CI mode: one seed, fewer steps

The optimizer is :func:`optax_rmsprop.dqn_rmsprop`: the centered RMSprop
(decay 0.95, eps 0.01 inside the root) of Mnih et al. (2015), at a learning
rate suited to CartPole's small network, annealed linearly to 0. The agent is
Nature DQN otherwise too: a replay buffer, a target network copied every
``target_every`` updates, the Huber loss (the paper's error clipping) and
epsilon-greedy exploration, plus double Q-learning (van Hasselt et al.,
2016) and n-step returns (Sutton, 1988; in Rainbow, Hessel et al., 2018).
The n-step targets are what makes every seed solve: a one-step target moves
values back one step per target-network copy, so after 200 copies the values
of CartPole's 500-step episodes are still rising, and the greedy policy
collapses while they do (run ``--n-step 1``).
Environment steps, replay and updates run inside ``jax.lax.scan``
over ``num_envs`` vectorised environments, and all seeds train at once under
``jax.vmap``. Every ``log_every`` iterations the script records
:func:`optax_rmsprop.rms_stats` of the optimizer state: the quantiles of each
layer's effective step size, plotted next to the returns and the TD loss.

CartPole-v1 counts as solved at an average return of 475 over 100
consecutive episodes; we measure it with the greedy policy (epsilon 0) on
100 fresh episodes after training, for every seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import NamedTuple

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

import optax_rmsprop

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402

SOLVED = 475.0


@dataclasses.dataclass
class Config:
  iterations: int = 100_000  # each: one step of every env and one update
  chunks: int = 20  # greedy evaluations (and progress-bar ticks)
  log_every: int = 1_000  # iterations between rms_stats records
  num_envs: int = 8
  buffer_size: int = 50_000
  batch_size: int = 128
  learning_starts: int = 1_000  # iterations of pure exploration first
  learning_rate: float = 5e-4
  eps: float = 0.01  # dqn_rmsprop's default, the Lua literal
  gamma: float = 0.99
  n_step: int = 5  # n-step returns (1: the Nature DQN target)
  target_every: int = 500
  lr_end_fraction: float = 0.0  # linear lr annealing to this fraction of lr
  double_q: bool = True  # the target net evaluates the online net's argmax
  eps_end: float = 0.05
  eps_fraction: float = 0.4  # of the iterations to anneal epsilon over
  hidden: int = 64
  eval_episodes: int = 100
  seeds: tuple[int, ...] = (0, 1, 2)
  progress: bool = True


class QNetwork(nnx.Module):

  def __init__(self, hidden: int, actions: int, *, rngs: nnx.Rngs):
    self.layer1 = nnx.Linear(4, hidden, rngs=rngs)
    self.layer2 = nnx.Linear(hidden, hidden, rngs=rngs)
    self.head = nnx.Linear(hidden, actions, rngs=rngs)

  def __call__(self, obs):
    return self.head(nnx.relu(self.layer2(nnx.relu(self.layer1(obs)))))


class Replay(NamedTuple):
  obs: jax.Array
  action: jax.Array
  reward: jax.Array
  next_obs: jax.Array
  terminal: jax.Array  # the pole fell or the cart left: no bootstrap
  done: jax.Array  # terminal or truncated (step 500): the episode ended
  size: jax.Array
  pointer: jax.Array


class Batch(NamedTuple):
  obs: jax.Array
  action: jax.Array
  reward: jax.Array  # the discounted sum of up to n_step rewards
  next_obs: jax.Array  # the observation to bootstrap from
  discount: jax.Array  # gamma ** steps, 0 after a terminal state


class Carry(NamedTuple):
  params: nnx.State
  target: nnx.State
  opt_state: optax.OptState
  replay: Replay
  env_state: object
  obs: jax.Array
  episode_return: jax.Array
  iteration: jax.Array
  key: jax.Array


def make_agent(config: Config):
  env, env_params = gymnax.make("CartPole-v1")
  num_actions = env.action_space(env_params).n
  graphdef, _ = nnx.split(
      QNetwork(config.hidden, num_actions, rngs=nnx.Rngs(0)), nnx.Param)
  # The Lua DQN anneals its lr linearly (lr -> lr_end over lr_endt steps);
  # annealing to 0 here settles the greedy policy instead of letting it
  # oscillate, as constant-lr DQN does on CartPole.
  lr = optax.linear_schedule(config.learning_rate, config.learning_rate * config.lr_end_fraction,
                             config.iterations - config.learning_starts)
  tx = optax_rmsprop.dqn_rmsprop(lr, eps=config.eps)

  def q_values(params, obs):
    return nnx.merge(graphdef, params)(obs)

  def epsilon(iteration):
    anneal = config.eps_fraction * config.iterations
    return jnp.clip(1.0 - (1.0 - config.eps_end) * iteration / anneal, config.eps_end, 1.0)

  def sample(replay: Replay, key) -> Batch:
    """Uniform n-step transitions: a start slot and the next n - 1 steps of
    the same env (``num_envs`` slots apart in the buffer), cut where the
    episode ends. The newest n - 1 steps of each env cannot start one."""
    n, num, size = config.n_step, config.num_envs, config.buffer_size
    oldest = jnp.where(replay.size < size, 0, replay.pointer)
    span = (n - 1) * num
    start = oldest + jax.random.randint(key, (config.batch_size,), 0,
                                        jnp.maximum(replay.size - span, 1))
    slots = (start + num * jnp.arange(n)[:, None]) % size  # [n, batch]
    done = replay.done[slots]
    # alive[m]: the episode has not ended before step m; last[m]: it ends at
    # step m, or the window does (one-hot over m).
    alive = jnp.cumprod(jnp.concatenate([jnp.ones_like(done[:1]), 1 - done[:-1]]), 0)
    last = alive * jnp.where(jnp.arange(n)[:, None] == n - 1, 1.0, done)
    powers = config.gamma ** jnp.arange(n + 1.0)[:, None]
    return Batch(
        obs=replay.obs[slots[0]], action=replay.action[slots[0]],
        reward=jnp.sum(alive * powers[:-1] * replay.reward[slots], 0),
        next_obs=jnp.einsum("mb,mbd->bd", last, replay.next_obs[slots]),
        discount=jnp.sum(last * powers[1:] * (1.0 - replay.terminal[slots]), 0))

  def loss_fn(params, target, batch: Batch):
    q = jnp.take_along_axis(q_values(params, batch.obs), batch.action[:, None], 1)[:, 0]
    next_q = q_values(target, batch.next_obs)
    if config.double_q:  # van Hasselt et al. (2016): less overestimation
      best = q_values(params, batch.next_obs).argmax(-1)
      bootstrap = jnp.take_along_axis(next_q, best[:, None], 1)[:, 0]
    else:
      bootstrap = next_q.max(-1)
    y = batch.reward + batch.discount * bootstrap
    return optax.huber_loss(q, jax.lax.stop_gradient(y)).mean()

  def iteration(carry: Carry, _):
    key, k_explore, k_action, k_env, k_batch = jax.random.split(carry.key, 5)
    # Act epsilon-greedily in every env.
    greedy = q_values(carry.params, carry.obs).argmax(-1)
    random = jax.random.randint(k_action, greedy.shape, 0, num_actions)
    explore = jax.random.uniform(k_explore, greedy.shape) < epsilon(carry.iteration)
    action = jnp.where(explore, random, greedy)
    next_obs, env_state, reward, terminated, truncated, info = jax.vmap(
        env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k_env, config.num_envs), carry.env_state, action, env_params)
    # gymnax resets a finished env in the same step: next_obs is then the new
    # episode's first observation, and the successor of this transition is
    # info["final_observation"]. Truncation (step 500) is not terminal: the
    # agent bootstraps through it.
    r = carry.replay
    slots = (r.pointer + jnp.arange(config.num_envs)) % config.buffer_size
    replay = Replay(
        obs=r.obs.at[slots].set(carry.obs),
        action=r.action.at[slots].set(action),
        reward=r.reward.at[slots].set(reward),
        next_obs=r.next_obs.at[slots].set(info["final_observation"]),
        terminal=r.terminal.at[slots].set(terminated.astype(jnp.float32)),
        done=r.done.at[slots].set((terminated | truncated).astype(jnp.float32)),
        size=jnp.minimum(r.size + config.num_envs, config.buffer_size),
        pointer=(r.pointer + config.num_envs) % config.buffer_size,
    )
    done = terminated | truncated
    episode_return = carry.episode_return + reward
    finished = jnp.where(done, episode_return, jnp.nan)  # nan: still running
    episode_return = jnp.where(done, 0.0, episode_return)

    # One gradient step on a uniform minibatch, once the buffer has filled.
    batch = sample(replay, k_batch)
    loss, grads = jax.value_and_grad(loss_fn)(carry.params, carry.target, batch)
    updates, opt_state = tx.update(grads, carry.opt_state, carry.params)
    learn = carry.iteration >= config.learning_starts
    params = jax.tree.map(lambda new, old: jnp.where(learn, new, old),
                          optax.apply_updates(carry.params, updates), carry.params)
    opt_state = jax.tree.map(lambda new, old: jnp.where(learn, new, old),
                             opt_state, carry.opt_state)
    copy = (carry.iteration % config.target_every) == 0
    target = jax.tree.map(lambda p, t: jnp.where(copy, p, t), params, carry.target)
    return Carry(params, target, opt_state, replay, env_state, next_obs,
                 episode_return, carry.iteration + 1, key), (finished, loss)

  def logged(carry: Carry, _):
    """``log_every`` iterations, then the optimizer's step-size statistics."""
    carry, (finished, loss) = jax.lax.scan(iteration, carry, None, length=config.log_every)
    # The schedule is called with the state's update count, as the optimizer
    # does; ε is dqn_rmsprop's, inside the root.
    stats = optax_rmsprop.rms_stats(carry.opt_state, learning_rate=lr, eps=config.eps,
                                    quantiles=_common.STAT_QUANTILES)
    return carry, (finished, loss.mean(), stats)

  def init(seed: int) -> Carry:
    params = nnx.state(QNetwork(config.hidden, num_actions, rngs=nnx.Rngs(seed)), nnx.Param)
    k_reset, key = jax.random.split(jax.random.key(seed))
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(k_reset, config.num_envs), env_params)
    n, obs_dim = config.buffer_size, obs.shape[-1]
    replay = Replay(jnp.zeros((n, obs_dim)), jnp.zeros((n,), jnp.int32), jnp.zeros((n,)),
                    jnp.zeros((n, obs_dim)), jnp.zeros((n,)), jnp.zeros((n,)),
                    jnp.array(0), jnp.array(0))
    return Carry(params, params, tx.init(params), replay, env_state, obs,
                 jnp.zeros((config.num_envs,)), jnp.array(0), key)

  def evaluate(params, key):
    """Greedy returns of ``eval_episodes`` fresh episodes (each at most 500)."""
    keys = jax.random.split(key, config.eval_episodes)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(keys, env_params)
    def step(carry, key):
      obs, state, total, alive = carry
      action = q_values(params, obs).argmax(-1)
      obs, state, reward, terminated, truncated, _ = jax.vmap(
          env.step, in_axes=(0, 0, 0, None))(
              jax.random.split(key, config.eval_episodes), state, action, env_params)
      total = total + alive * reward
      alive = alive * (1.0 - (terminated | truncated))
      return (obs, state, total, alive), None
    init = (obs, state, jnp.zeros(config.eval_episodes), jnp.ones(config.eval_episodes))
    (_, _, total, _), _ = jax.lax.scan(
        step, init, jax.random.split(key, env_params.max_steps_in_episode))
    return total

  return init, logged, evaluate


def over_seeds(f, seeds: int):
  """``jax.vmap(f)`` over the seed axis; for one seed, ``f`` itself with the
  axis added back (XLA compiles the unbatched program seconds faster)."""
  if seeds > 1:
    return jax.vmap(f)
  return lambda *args: jax.tree.map(lambda x: x[None], f(*jax.tree.map(lambda x: x[0], args)))


def train_and_evaluate(config: Config) -> dict:
  """Trains one agent per seed, all at once (``jax.vmap``); returns
  ``{seed: history}``."""
  init, logged, evaluate = make_agent(config)
  per_chunk = config.iterations // config.chunks
  if per_chunk % config.log_every:
    raise ValueError("iterations / chunks must be a multiple of log_every")

  seeds = list(config.seeds)
  run_chunk = jax.jit(over_seeds(
      lambda carry: jax.lax.scan(logged, carry, None, length=per_chunk // config.log_every),
      len(seeds)))
  evaluate = jax.jit(over_seeds(evaluate, len(seeds)))
  carry = jax.tree.map(lambda *x: jnp.stack(x), *[init(s) for s in seeds])
  eval_keys = jnp.stack([jax.random.key(s + 1) for s in seeds])
  histories = {s: {"env_steps": [], "greedy_return": [], "episode_returns": [],
                   "episode_end_step": [], "stats_step": [], "td_loss": [],
                   "stats": []} for s in seeds}
  start = time.perf_counter()
  bar = tqdm(range(config.chunks), desc="DQN", disable=not config.progress)
  for chunk in bar:
    carry, (finished, loss, stats) = run_chunk(carry)
    # finished: [seed, log, iteration, env], nan while an episode runs.
    finished = np.asarray(finished).reshape(len(seeds), per_chunk, config.num_envs)
    chunk_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(eval_keys, chunk)
    greedy = np.asarray(evaluate(carry.params, chunk_keys)).mean(-1)
    offset = chunk * per_chunk
    for i, s in enumerate(seeds):
      h = histories[s]
      it, _ = np.nonzero(~np.isnan(finished[i]))
      h["episode_returns"].extend(finished[i][~np.isnan(finished[i])].tolist())
      h["episode_end_step"].extend(((offset + it + 1) * config.num_envs).tolist())
      h["greedy_return"].append(float(greedy[i]))
      h["env_steps"].append((offset + per_chunk) * config.num_envs)
      h["td_loss"].extend(np.asarray(loss[i]).tolist())
      logs = per_chunk // config.log_every
      h["stats_step"].extend(
          ((offset + (np.arange(logs) + 1) * config.log_every) * config.num_envs).tolist())
      h["stats"].append({k: np.asarray(v[i]) for k, v in stats.items()})
    bar.set_postfix(greedy=" ".join(f"{g:.0f}" for g in greedy))
  wall_s = time.perf_counter() - start
  # The final check: 100 fresh greedy episodes, other seeds than the above.
  final_keys = jnp.stack([jax.random.key(s + 10_000) for s in seeds])
  final = np.asarray(evaluate(carry.params, final_keys))
  for i, s in enumerate(seeds):
    h = histories[s]
    h["stats"] = _common.stats_history(h["stats"])
    h["wall_s"] = wall_s  # all seeds together
    h["final_returns"] = final[i].tolist()
    h["final_mean_return"] = float(final[i].mean())
    h["solved"] = bool(final[i].mean() >= SOLVED)
  return histories


def plot(histories: dict, path: str, title: str, eps: float) -> str:
  """Returns and TD loss of every seed; step-size bands of the first seed."""
  first = histories[min(histories)]
  leaves = _common.stat_leaves(first["stats"])
  fig, (ax_return, ax_loss), leaf_axes = _common.step_size_figure(2, leaves)
  for i, (seed, h) in enumerate(sorted(histories.items())):
    color = f"C{i + 1}"
    returns = np.asarray(h["episode_returns"])
    if len(returns):
      window = min(100, len(returns))
      running = np.convolve(returns, np.ones(window) / window, mode="valid")
      ax_return.plot(h["episode_end_step"][window - 1:], running, color=color, lw=0.8,
                     label=f"seed {seed}: training (ε-greedy), mean of {window}")
    ax_return.plot(h["env_steps"], h["greedy_return"], "o", ms=2.5, color=color)
    ax_loss.plot(h["stats_step"], h["td_loss"], color=color, lw=0.8, label=f"seed {seed}")
  ax_return.plot([], [], "o", ms=2.5, color="gray", label="greedy policy, 100 episodes")
  ax_return.axhline(SOLVED, color="gray", ls="--", lw=0.8)
  ax_return.set(ylabel="episode return", ylim=(0, 520))
  ax_return.legend(fontsize=6, loc="lower right")
  ax_loss.set(xlabel="environment steps", ylabel="TD loss (Huber)", yscale="log")
  for ax in (ax_return, ax_loss):
    ax.grid(alpha=0.3)
  _common.draw_step_sizes(leaf_axes, first["stats_step"], first["stats"], leaves, eps)
  for ax in leaf_axes[-3:]:
    ax.set_xlabel(f"env steps (seed {min(histories)})", fontsize=7)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  return _common.save_figure(fig, path)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--iterations", type=int, default=None,
                      help=f"default {Config.iterations}; --quick: 6000")
  parser.add_argument("--learning-rate", type=float, default=None,
                      help=f"default {Config.learning_rate}; --quick: 2e-3")
  parser.add_argument("--n-step", type=int, default=Config.n_step,
                      help="n-step returns; 1 is the Nature DQN's one-step target")
  _common.add_seed_argument(parser)
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--out", default=None, help=f"default {_common.RESULTS_DIR}")
  parser.add_argument("--no-progress", action="store_true")
  args = parser.parse_args(argv)
  quick = dict(iterations=6_000, chunks=3, learning_starts=500, learning_rate=2e-3,
               log_every=400)
  config = Config(**(quick if args.quick else {}), seeds=tuple(_common.seeds_from(args)),
                  n_step=args.n_step, progress=not args.no_progress)
  if args.learning_rate:
    config.learning_rate = args.learning_rate
  if args.iterations:
    config.iterations = args.iterations
  out = _common.output_dir(args.out, args.quick, "dqn_")

  histories = train_and_evaluate(config)
  h0 = next(iter(histories.values()))
  steps = config.iterations * config.num_envs
  print(f"\nDQN CartPole-v1, dqn_rmsprop(lr {config.learning_rate:g} -> 0): {steps} env "
        f"steps, {config.iterations - config.learning_starts} updates per seed, "
        f"{len(histories)} seeds together in {h0['wall_s']:.1f} s")
  for seed, h in histories.items():
    stats = h["stats"]
    print(f"seed {seed}: greedy return {h['final_mean_return']:.1f} over 100 fresh episodes "
          f"({'solved' if h['solved'] else 'NOT solved'}), last 100 training episodes "
          f"{np.mean(h['episode_returns'][-100:]):.1f}; median step size of layer2/kernel "
          f"{stats['step_size/layer2/kernel/p50'][0]:.2e} (first log) -> "
          f"{stats['step_size/layer2/kernel/p50'][len(stats['step_size/layer2/kernel/p50']) // 2]:.2e} "
          f"(midway), lr {stats['learning_rate'][len(stats['learning_rate']) // 2]:.2e}")
  summary = _common.summarize({s: h["final_mean_return"] for s, h in histories.items()},
                              higher_is_better=True)
  print(f"greedy return: {_common.format_summary(summary, '{:.1f}')}; solved (>= "
        f"{SOLVED:g}) on {sum(h['solved'] for h in histories.values())} of {len(histories)}")
  png = plot(histories, os.path.join(out, "dqn_cartpole.png"), eps=config.eps, title=
             f"DQN on CartPole-v1 (gymnax), optax_rmsprop.dqn_rmsprop(lr {config.learning_rate:g}"
             f" → 0), seeds {', '.join(map(str, histories))}")
  _common.write_json(
      {"summary": {"greedy_return": summary},
       "config": dataclasses.asdict(config),
       "seeds": {str(s): {k: v for k, v in h.items()
                          if k not in ("episode_end_step", "episode_returns")}
                 for s, h in histories.items()}},
      os.path.join(out, "dqn_cartpole.json"))
  print(f"wrote {png}")
  return histories


if __name__ == "__main__":
  main()
