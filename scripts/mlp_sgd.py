"""MLP + SGD (Tensor Programs V): the 2-hidden-layer MLP on Fashion-MNIST, SP vs muP.

Training loss vs log2 learning rate, one curve per width, plain SGD (no clipping,
constant lr). Under SP the optimal lr shrinks with width; under muP it should not.

    python scripts/mlp_sgd.py --quick     # widths 64-1024, 2 CPU cores
    python scripts/mlp_sgd.py             # widths 256-8192
"""

import common


def main():
  common.sp_vs_mup(
    "mlp_sgd", __doc__, pack=11, title="MLP, SGD", heading="MLP + SGD on Fashion-MNIST, SP vs muP"
  )


if __name__ == "__main__":
  main()
