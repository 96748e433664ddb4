"""Character-level language model on CPython's own help text, and gradient clipping.

Part 1 (``lm``): an LSTM language model (``jaxbp.models`` builder ``"lstm"``: embedding 32,
LSTM 128, per-step softmax) trained with Adam on the ``chars`` data set (no download); the
test loss is printed as it falls and samples are drawn from the model at a few points.

Part 2 (``clip``): exploding gradients in a tanh RNN (Pascanu, Mikolov & Bengio 2013).
Three SGD runs of an RNN language model from the same initialisation and batches:

* ``no clip``: learning rate ``lr``;
* ``clip``: ``lr`` with the global gradient norm clipped to ``c``;
* ``matched``: no clipping, with the learning rate scaled down to the clipped run's mean
  effective step ``lr * mean_t min(1, c / ||g_t||)`` -- the control that tells "clipping
  helps" apart from "a smaller step helps".

Run: ``python experiments/char_lm.py [lm|clip|both] [--steps N]`` (defaults are short).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxbp import data, models, ops


def batches_forever(x: np.ndarray, y: np.ndarray, batch: int, seed: int):
    rng = np.random.default_rng(seed)
    while True:
        index = rng.integers(0, len(x), size=batch)
        yield jnp.asarray(x[index]), jnp.asarray(y[index])


def make_loss(model):
    def loss(params, x, y):
        return ops.softmax_cross_entropy(model.apply(params, x), y)

    return loss


def sample(
    params, vocabulary: data.CharVocabulary, prompt: str, length: int, key: jax.Array, temperature: float = 0.8
) -> str:
    """Draw ``length`` characters after ``prompt`` from the LSTM language model, one step at a time."""
    embedding, recurrent, _, readout = params

    @jax.jit
    def next_logits(ids, state):
        hs, state = ops.lstm(recurrent, ops.embedding(embedding, ids), state)
        return ops.dense(readout, hs[:, -1]) / temperature, state

    hidden = recurrent["w_hh"].shape[0]
    state = (jnp.zeros((1, hidden)), jnp.zeros((1, hidden)))
    logits, state = next_logits(jnp.asarray(vocabulary.encode(prompt))[None], state)
    out = []
    for index in range(length):
        token = jax.random.categorical(jax.random.fold_in(key, index), logits[0])
        out.append(int(token))
        logits, state = next_logits(jnp.array([[int(token)]]), state)
    return prompt + vocabulary.decode(np.array(out))


def language_model_run(steps: int, batch: int, seed: int) -> dict:
    text = data.chars(4000, 64, seed=seed)
    vocabulary_size = len(text.vocabulary.characters)
    model = models.build_model("lstm", num_outputs=vocabulary_size, hidden=128, embedding_dim=32)
    params, _ = model.init(jax.random.key(seed), (batch, 64))
    optimizer = optax.chain(optax.clip_by_global_norm(5.0), optax.adam(3e-3))
    opt_state = optimizer.init(params)
    loss = make_loss(model)

    @jax.jit
    def step(params, opt_state, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    x_test, y_test = (jnp.asarray(a[:200]) for a in text.test)
    test_loss = jax.jit(loss)
    stream = batches_forever(*text.train, batch, seed)
    history, samples = [], {}
    checkpoints = {0, steps // 2, steps}
    for index in range(steps + 1):
        if index % max(steps // 6, 1) == 0 or index == steps:
            history.append({"step": index, "test_loss": float(test_loss(params, x_test, y_test))})
            print(f"  step {index:5d}  test loss {history[-1]['test_loss']:.3f} nats/char", flush=True)
        if index in checkpoints:
            samples[index] = sample(params, text.vocabulary, "The ", 100, jax.random.key(index))
            print(f"  sample at step {index}: {samples[index]!r}", flush=True)
        if index < steps:
            params, opt_state, _ = step(params, opt_state, *next(stream))
    return {"history": history, "samples": samples, "uniform_loss": float(np.log(vocabulary_size))}


def clipping_runs(steps: int, batch: int, seed: int, lr: float, clip: float) -> dict:
    text = data.chars(2000, 32, seed=seed)
    vocabulary_size = len(text.vocabulary.characters)
    model = models.build_model("rnn", num_outputs=vocabulary_size, hidden=64, embedding_dim=16)
    initial, _ = model.init(jax.random.key(seed), (batch, 32))
    loss = make_loss(model)
    grad = jax.jit(jax.value_and_grad(loss))
    sgd_update = jax.jit(lambda params, grads, step: jax.tree_util.tree_map(lambda p, g: p - step * g, params, grads))

    def run(learning_rate: float, clip_norm: float | None) -> dict:
        params, stream = initial, batches_forever(*text.train, batch, seed)
        losses, norms, scales = [], [], []
        for _ in range(steps):
            value, grads = grad(params, *next(stream))
            norm = float(optax.global_norm(grads))
            scale = 1.0 if clip_norm is None or not np.isfinite(norm) else min(1.0, clip_norm / max(norm, 1e-30))
            losses.append(float(value))
            norms.append(norm)
            scales.append(scale)
            if not np.isfinite(value) or not np.isfinite(norm):
                break
            params = sgd_update(params, grads, learning_rate * scale)
        finite = [v for v in losses if np.isfinite(v)]
        return {
            "learning_rate": learning_rate,
            "clip_norm": clip_norm,
            "steps_run": len(losses),
            "diverged": not np.isfinite(losses[-1]) or len(losses) < steps,
            "final_loss_last_20": float(np.mean(losses[-20:])) if np.all(np.isfinite(losses[-20:])) else float("nan"),
            "max_grad_norm": float(np.nanmax(norms)),
            "loss_spikes": int(np.sum(np.diff(finite) > 0.5)),
            "mean_clip_scale": float(np.mean(scales)),
            "losses": losses,
        }

    results = {"no clip": run(lr, None), "clip": run(lr, clip)}
    results["matched"] = run(lr * results["clip"]["mean_clip_scale"], None)
    for name, result in results.items():
        print(
            f"  {name:>8}: lr {result['learning_rate']:.3g}  final loss {result['final_loss_last_20']:.3f}  "
            f"max ||g|| {result['max_grad_norm']:.3g}  spikes {result['loss_spikes']}  "
            f"diverged {result['diverged']}",
            flush=True,
        )
    return results


def plot_clipping(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for name, result in results.items():
        ax.plot(result["losses"], label=f"{name} (lr {result['learning_rate']:.2g})")
    ax.set_xlabel("SGD step")
    ax.set_ylabel("training loss (nats/char)")
    ax.set_title("tanh RNN char LM: norm clipping vs a matched smaller step")
    ax.set_ylim(top=min(ax.get_ylim()[1], 3 * max(r["losses"][0] for r in results.values())))
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("part", nargs="?", choices=["lm", "clip", "both"], default="both")
    parser.add_argument("--steps", type=int, default=300, help="training steps of the language model")
    parser.add_argument("--clip-steps", type=int, default=200, help="SGD steps of each clipping run")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3.0, help="SGD learning rate of the clipping runs")
    parser.add_argument("--clip", type=float, default=1.0, help="global-norm threshold")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/char_lm.json"))
    parser.add_argument(
        "--figure",
        type=Path,
        default=Path("results/figures/char_lm_clipping.png"),
        help="the plot (docs/figures/char_lm_clipping.png regenerates the docs figure)",
    )
    args = parser.parse_args(argv)
    report = {}
    if args.part in ("lm", "both"):
        print("LSTM language model (Adam 3e-3, batch 32, 64 characters):")
        report["lm"] = language_model_run(args.steps, args.batch, args.seed)
    if args.part in ("clip", "both"):
        print(f"tanh RNN, SGD lr {args.lr}, clipping at {args.clip}:")
        report["clip"] = clipping_runs(args.clip_steps, args.batch, args.seed, args.lr, args.clip)
        plot_clipping(report["clip"], args.figure)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=float))
    print(f"wrote {args.out}" + (f" and {args.figure}" if "clip" in report else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
