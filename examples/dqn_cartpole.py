"""DQN on CartPole-v1 (gymnax, all in JAX) with the Nature-DQN RMSprop.

    python examples/dqn_cartpole.py           # greedy return over 100 episodes, plot
    python examples/dqn_cartpole.py --quick   # CI mode

The optimizer is :func:`optax_rmsprop.dqn_rmsprop`: the centered RMSprop
(decay 0.95, eps 0.01 inside the root) of Mnih et al. (2015), at a learning
rate suited to CartPole's small network. The agent is Nature DQN otherwise
too: a replay buffer, a target network copied every ``target_every`` updates,
the Huber loss (the paper's error clipping) and epsilon-greedy exploration.
Environment steps, replay and updates run inside one ``jax.lax.scan`` per
chunk, over ``num_envs`` vectorised environments.

CartPole-v1 counts as solved at an average return of 475 over 100
consecutive episodes; we measure it with the greedy policy (epsilon 0) on
100 fresh episodes after training.
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
  num_envs: int = 8
  buffer_size: int = 50_000
  batch_size: int = 128
  learning_starts: int = 1_000  # iterations of pure exploration first
  learning_rate: float = 5e-4
  gamma: float = 0.99
  target_every: int = 500
  lr_end_fraction: float = 0.0  # linear lr annealing to this fraction of lr
  double_q: bool = True  # the target net evaluates the online net's argmax
  eps_end: float = 0.05
  eps_fraction: float = 0.4  # of the iterations to anneal epsilon over
  hidden: int = 64
  eval_episodes: int = 100
  seed: int = 0
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
  terminal: jax.Array
  size: jax.Array
  pointer: jax.Array


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
  graphdef, params = nnx.split(
      QNetwork(config.hidden, num_actions, rngs=nnx.Rngs(config.seed)), nnx.Param)
  # The Lua DQN anneals its lr linearly (lr -> lr_end over lr_endt steps);
  # annealing to 0 here settles the greedy policy instead of letting it
  # oscillate, as constant-lr DQN does on CartPole.
  lr = optax.linear_schedule(config.learning_rate, config.learning_rate * config.lr_end_fraction,
                             config.iterations - config.learning_starts)
  tx = optax_rmsprop.dqn_rmsprop(lr)

  def q_values(params, obs):
    return nnx.merge(graphdef, params)(obs)

  def epsilon(iteration):
    anneal = config.eps_fraction * config.iterations
    return jnp.clip(1.0 - (1.0 - config.eps_end) * iteration / anneal, config.eps_end, 1.0)

  def loss_fn(params, target, batch):
    q = jnp.take_along_axis(q_values(params, batch.obs), batch.action[:, None], 1)[:, 0]
    next_q = q_values(target, batch.next_obs)
    if config.double_q:  # van Hasselt et al. (2016): less overestimation
      best = q_values(params, batch.next_obs).argmax(-1)
      bootstrap = jnp.take_along_axis(next_q, best[:, None], 1)[:, 0]
    else:
      bootstrap = next_q.max(-1)
    y = batch.reward + config.gamma * (1.0 - batch.terminal) * bootstrap
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
    # episode's first observation, but a finished episode's successor is only
    # ever used through (1 - terminal), and truncation (step 500) is not
    # terminal, so the agent bootstraps through it from the reset obs: an
    # approximation that only touches one transition in 500.
    r = carry.replay
    slots = (r.pointer + jnp.arange(config.num_envs)) % config.buffer_size
    replay = Replay(
        obs=r.obs.at[slots].set(carry.obs),
        action=r.action.at[slots].set(action),
        reward=r.reward.at[slots].set(reward),
        next_obs=r.next_obs.at[slots].set(next_obs),
        terminal=r.terminal.at[slots].set(terminated.astype(jnp.float32)),
        size=jnp.minimum(r.size + config.num_envs, config.buffer_size),
        pointer=(r.pointer + config.num_envs) % config.buffer_size,
    )
    done = terminated | truncated
    episode_return = carry.episode_return + reward
    finished = jnp.where(done, episode_return, jnp.nan)  # nan: still running
    episode_return = jnp.where(done, 0.0, episode_return)

    # One gradient step on a uniform minibatch, once the buffer has filled.
    idx = jax.random.randint(k_batch, (config.batch_size,), 0, replay.size)
    batch = jax.tree.map(lambda x: x[idx], replay._replace(size=None, pointer=None))
    grads = jax.grad(loss_fn)(carry.params, carry.target, batch)
    updates, opt_state = tx.update(grads, carry.opt_state, carry.params)
    learn = carry.iteration >= config.learning_starts
    params = jax.tree.map(lambda new, old: jnp.where(learn, new, old),
                          optax.apply_updates(carry.params, updates), carry.params)
    opt_state = jax.tree.map(lambda new, old: jnp.where(learn, new, old),
                             opt_state, carry.opt_state)
    copy = (carry.iteration % config.target_every) == 0
    target = jax.tree.map(lambda p, t: jnp.where(copy, p, t), params, carry.target)
    return Carry(params, target, opt_state, replay, env_state, next_obs,
                 episode_return, carry.iteration + 1, key), finished

  def init(key) -> Carry:
    k_reset, key = jax.random.split(key)
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(k_reset, config.num_envs), env_params)
    n, obs_dim = config.buffer_size, obs.shape[-1]
    replay = Replay(jnp.zeros((n, obs_dim)), jnp.zeros((n,), jnp.int32), jnp.zeros((n,)),
                    jnp.zeros((n, obs_dim)), jnp.zeros((n,)), jnp.array(0), jnp.array(0))
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

  return init, iteration, evaluate


def train_and_evaluate(config: Config) -> dict:
  init, iteration, evaluate = make_agent(config)
  per_chunk = config.iterations // config.chunks

  @jax.jit
  def run_chunk(carry):
    return jax.lax.scan(iteration, carry, None, length=per_chunk)

  evaluate = jax.jit(evaluate)
  carry = init(jax.random.key(config.seed))
  eval_key = jax.random.key(config.seed + 1)
  history = {"env_steps": [], "greedy_return": [], "episode_returns": [],
             "episode_end_step": []}
  start = time.perf_counter()
  bar = tqdm(range(config.chunks), desc="DQN", disable=not config.progress)
  for chunk in bar:
    carry, finished = run_chunk(carry)
    finished = np.asarray(finished)  # [per_chunk, num_envs], nan while running
    it, _ = np.nonzero(~np.isnan(finished))
    offset = chunk * per_chunk
    history["episode_returns"].extend(finished[~np.isnan(finished)].tolist())
    history["episode_end_step"].extend(((offset + it + 1) * config.num_envs).tolist())
    greedy = float(evaluate(carry.params, jax.random.fold_in(eval_key, chunk)).mean())
    history["greedy_return"].append(greedy)
    history["env_steps"].append((offset + per_chunk) * config.num_envs)
    recent = history["episode_returns"][-100:]
    bar.set_postfix(train_return=f"{np.mean(recent) if recent else 0:.0f}",
                    greedy=f"{greedy:.0f}")
  history["wall_s"] = time.perf_counter() - start
  # The final check: 100 fresh greedy episodes, other seeds than the above.
  final = np.asarray(evaluate(carry.params, jax.random.key(config.seed + 10_000)))
  history["final_returns"] = final.tolist()
  history["final_mean_return"] = float(final.mean())
  history["solved"] = bool(final.mean() >= SOLVED)
  return history


def plot(history: dict, path: str, title: str) -> str:
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=80)
  returns = np.asarray(history["episode_returns"])
  if len(returns):
    window = min(100, len(returns))
    running = np.convolve(returns, np.ones(window) / window, mode="valid")
    ax.plot(history["episode_end_step"], returns, ".", ms=1.5, alpha=0.3, color="C0")
    ax.plot(history["episode_end_step"][window - 1:], running, color="C0",
            label=f"training episodes (epsilon-greedy), mean of {window}")
  ax.plot(history["env_steps"], history["greedy_return"], "o-", ms=3, color="C1",
          label="greedy policy, mean of 100 episodes")
  ax.axhline(SOLVED, color="gray", ls="--", label="solved (475)")
  ax.set(xlabel="environment steps", ylabel="episode return", ylim=(0, 520))
  ax.set_title(title, fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="upper left")
  fig.tight_layout()
  return _common.save_figure(fig, path)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--iterations", type=int, default=None,
                      help=f"default {Config.iterations}; --quick: 10000")
  parser.add_argument("--learning-rate", type=float, default=None,
                      help=f"default {Config.learning_rate}; --quick: 1e-3")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--out", default=None, help=f"default {_common.RESULTS_DIR}")
  parser.add_argument("--no-progress", action="store_true")
  args = parser.parse_args(argv)
  quick = dict(iterations=10_000, chunks=5, learning_starts=500, learning_rate=1e-3)
  config = Config(**(quick if args.quick else {}), seed=args.seed,
                  progress=not args.no_progress)
  if args.learning_rate:
    config.learning_rate = args.learning_rate
  if args.iterations:
    config.iterations = args.iterations
  out = _common.output_dir(args.out, args.quick, "dqn_")

  h = train_and_evaluate(config)
  steps = config.iterations * config.num_envs
  print(f"\nDQN CartPole-v1, dqn_rmsprop(lr {config.learning_rate:g}): {steps} env steps, "
        f"{config.iterations - config.learning_starts} updates, {h['wall_s']:.1f} s")
  print(f"training episodes: {len(h['episode_returns'])}, mean return of the last 100: "
        f"{np.mean(h['episode_returns'][-100:]):.1f}")
  print(f"greedy return, mean over 100 fresh episodes: {h['final_mean_return']:.1f} "
        f"({'solved' if h['solved'] else 'not solved'}: threshold {SOLVED:g})")
  png = plot(h, os.path.join(out, "dqn_cartpole.png"),
             f"DQN on CartPole-v1 (gymnax), optax_rmsprop.dqn_rmsprop(lr {config.learning_rate:g})")
  _common.write_json({k: v for k, v in h.items()
                      if k not in ("episode_end_step", "episode_returns")},
                     os.path.join(out, "dqn_cartpole.json"))
  print(f"wrote {png}")
  return h


if __name__ == "__main__":
  main()
