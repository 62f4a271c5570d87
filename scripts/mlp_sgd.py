"""MLP + SGD (Tensor Programs V): the 2-hidden-layer MLP on Fashion-MNIST, SP vs muP.

Training loss vs log2 learning rate, one curve per width, plain SGD (no clipping,
constant lr). Under SP the optimal lr shrinks with width; under muP it should not.

    python scripts/mlp_sgd.py --quick     # widths 64-1024, 2 CPU cores
    python scripts/mlp_sgd.py             # widths 256-8192
"""

import common


def main():
  args = common.parse("mlp_sgd", __doc__, pack=11)
  *_, lines = common.lr_transfer(args, "mlp_sgd", {"sp": "SP, one global lr", "mup": "muP"},
                                 "MLP, SGD")
  common.write_numbers(args, "MLP + SGD on Fashion-MNIST, SP vs muP", lines)


if __name__ == "__main__":
  main()
