"""Train an MLP on the 8x8 digits with ``jaxbp.train.fit`` -- the loop a research script reuses.

Builds the registered ``mlp`` (3 hidden layers of 128, batch norm, dropout), trains
it with Adam, gradient clipping and 2-step gradient accumulation in the chosen
precision, checkpoints every epoch (re-run with ``--resume`` after an interruption
to continue bit-exactly), and prints the history.

Run: ``python experiments/train_digits.py [--precision bf16] [--epochs 10]
[--checkpoint-dir runs/digits] [--resume]`` (about 10 s on 2 CPU cores).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from jaxbp import data, models, train


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precision", default="f32", choices=("f32", "bf16", "f16"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)

    dataset = data.digits()
    model = models.build_model(
        "mlp", num_outputs=data.DIGITS_NUM_CLASSES, depth=3, width=128, init="he_normal", batch_norm=True, dropout=0.1
    )
    config = train.TrainConfig(
        epochs=args.epochs, batch_size=64, learning_rate=3e-3, clip_norm=1.0, accumulate=2, precision=args.precision,
    )  # fmt: skip
    checkpoints = train.CheckpointConfig(args.checkpoint_dir, resume=args.resume) if args.checkpoint_dir else None
    result = train.fit(model, dataset.train, config, test_data=dataset.test, checkpoints=checkpoints)
    best = max(result.history, key=lambda record: record["test_accuracy"])
    print(
        f"best test accuracy {best['test_accuracy']:.4f} at epoch {best['epoch']}; final train loss {result.history[-1]['train_loss']:.4f}"
    )
    return result.history


if __name__ == "__main__":
    main()
