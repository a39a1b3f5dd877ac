"""sbil: strictly batch imitation learning that tells the truth about its learners.

Subpackages:
    sbil.tabular: exact analysis of BC and EDM on finite MDPs (numpy/scipy only).
    sbil.deep: PyTorch learners (BC, EDM with SGLD) on Gymnasium tasks, Minari data.
    sbil.experiments: sweeps, statistics, plots and reports built on the two above.

Importing ``sbil`` or ``sbil.tabular`` never imports torch.
"""

__version__ = "0.1.0"
