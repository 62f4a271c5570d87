"""muTransfer (Tensor Programs V, Fig. 1): GPT on GCIDE with Adam, SP vs muP.

Training loss vs log2 learning rate, one curve per width. Under SP the optimal
learning rate moves with width; under muP it should stay put. Reports the optimal
log2 lr per width (interpolated on the grid) and its total drift per parametrization.

    python scripts/mutransfer.py --quick     # widths 32-256, 2 CPU cores
    python scripts/mutransfer.py             # widths 128-2048: a GPU
"""

import common


def main():
  common.sp_vs_mup(
    "mutransfer",
    __doc__,
    pack=10,
    title="GPT, Adam",
    heading="muTransfer: GPT on GCIDE, Adam, SP vs muP",
  )


if __name__ == "__main__":
  main()
