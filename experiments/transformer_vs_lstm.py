"""A small transformer against an LSTM of equal parameter count on character-level text.

Both language models read windows of the ``chars`` data set (CPython's ``pydoc_data``
help text, see :mod:`jaxbp.data`) and predict the next character at every position
(mean softmax cross-entropy, nats per character). Same data order, batch size, optimizer
(Adam) and number of steps; the LSTM's hidden size is chosen so that its parameter
count is as close as possible to the transformer's. Every gradient comes from jaxbp's
hand-written backward rules.

    python experiments/transformer_vs_lstm.py                 # figure + JSON
    python experiments/transformer_vs_lstm.py --steps 50      # quick look

Writes ``results/figures/transformer_vs_lstm.png`` (``--figure docs/figures/transformer_vs_lstm.png``
regenerates the docs figure) and prints the final losses.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import jax
import numpy as np
import optax

from jaxbp import models, ops
from jaxbp.data import chars

FIGURE = Path("results/figures/transformer_vs_lstm.png")


def parameter_count(params) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(params))


def lstm_hidden_for(target: int, vocab: int, embedding_dim: int) -> int:
    """The LSTM hidden size whose language model has the parameter count closest to ``target``:
    ``V E + 4H(E + H + 1) + H V + V`` (embedding, one LSTM layer, readout)."""

    def count(hidden: int) -> int:
        return vocab * embedding_dim + 4 * hidden * (embedding_dim + hidden + 1) + hidden * vocab + vocab

    return min(range(1, 4096), key=lambda hidden: abs(count(hidden) - target))


def train(model, data, *, steps: int, batch_size: int, learning_rate: float, eval_every: int, seed: int) -> dict:
    """Adam on the mean next-character cross-entropy; train loss every step, test loss every ``eval_every``."""
    (x_train, y_train), (x_test, y_test) = data.train, data.test
    params, _ = model.init(jax.random.key(seed), (batch_size, x_train.shape[1]))
    optimizer = optax.adam(learning_rate)
    opt_state = optimizer.init(params)

    def loss_fn(params, x, y):
        return ops.softmax_cross_entropy(model.apply(params, x), y)

    @jax.jit
    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    order = np.random.default_rng(seed).permutation(len(x_train))
    # compile before the clock starts, so the seconds are training time only
    step = step.lower(params, opt_state, x_train[:batch_size], y_train[:batch_size]).compile()
    evaluate = jax.jit(loss_fn).lower(params, x_test, y_test).compile()
    history = {"train": [], "test_step": [], "test": [], "seconds": []}
    start = time.perf_counter()
    for index in range(steps):
        rows = order[(index * batch_size + np.arange(batch_size)) % len(order)]
        params, opt_state, loss = step(params, opt_state, x_train[rows], y_train[rows])
        history["train"].append(float(loss))
        if (index + 1) % eval_every == 0 or index + 1 == steps:
            history["test_step"].append(index + 1)
            history["test"].append(float(evaluate(params, x_test, y_test)))
            history["seconds"].append(time.perf_counter() - start)
    history["parameters"] = parameter_count(params)
    return history


def plot(histories: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, history in histories.items():
        train = np.asarray(history["train"])
        window = max(1, len(train) // 50)
        smooth = np.convolve(train, np.ones(window) / window, mode="valid")
        label = f"{name} ({history['parameters']:,} params)"
        (line,) = axes[0].plot(np.arange(window, len(train) + 1), smooth, label=f"{label}, train")
        axes[0].plot(history["test_step"], history["test"], "o--", color=line.get_color(), label=f"{name}, test")
        axes[1].plot(history["seconds"], history["test"], "o--", color=line.get_color(), label=name)
    axes[0].set(xlabel="step", ylabel="cross-entropy (nats/char)", title=title)
    axes[1].set(
        xlabel="wall-clock seconds (shared CPU)", ylabel="test cross-entropy (nats/char)", title="test loss vs time"
    )
    for axis in axes:
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sequence-length", type=int, default=64)
    parser.add_argument("--dim", type=int, default=64, help="transformer width")
    parser.add_argument("--depth", type=int, default=2, help="transformer blocks")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--embedding-dim", type=int, default=32, help="LSTM input embedding size")
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", type=Path, default=FIGURE)
    parser.add_argument("--json", type=Path, default=None, help="also write the curves here (must not exist)")
    args = parser.parse_args(argv)

    data = chars(num_sequences=args.steps * args.batch_size, sequence_length=args.sequence_length, seed=args.seed)
    vocab = len(data.vocabulary.characters)
    transformer = models.build_model(
        "transformer", num_outputs=vocab, dim=args.dim, depth=args.depth, heads=args.heads,
        max_length=args.sequence_length, block_size=args.sequence_length,
    )  # fmt: skip
    transformer_params = parameter_count(jax.eval_shape(lambda: transformer.init(jax.random.key(0), (1, 1))[0]))
    hidden = lstm_hidden_for(transformer_params, vocab, args.embedding_dim)
    lstm = models.build_model("lstm", num_outputs=vocab, hidden=hidden, embedding_dim=args.embedding_dim)
    settings = {"steps": args.steps, "batch_size": args.batch_size, "learning_rate": args.learning_rate}
    histories = {}
    for name, model in ((f"transformer d{args.dim}x{args.depth}", transformer), (f"LSTM h{hidden}", lstm)):
        histories[name] = train(model, data, eval_every=args.eval_every, seed=args.seed, **settings)
        history = histories[name]
        print(
            f"{name}: {history['parameters']:,} params, final train loss (mean of last 50 steps) "
            f"{np.mean(history['train'][-50:]):.3f}, test loss {history['test'][-1]:.3f} nats/char "
            f"({history['test'][-1] / math.log(2):.3f} bits), {history['seconds'][-1]:.0f} s"
        )
    title = f"chars (vocab {vocab}, T={args.sequence_length}), batch {args.batch_size}, Adam {args.learning_rate:g}"
    plot(histories, args.figure, title)
    print(f"wrote {args.figure}")
    if args.json is not None:
        with args.json.open("x") as handle:
            json.dump(
                {"settings": vars(args) | {"figure": str(args.figure), "json": str(args.json)}, **histories}, handle
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
