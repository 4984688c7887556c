"""Weight-space studies on a loaded dataset (issue 19): classifiers with controls, features invariant
to the networks' symmetries, 2-D projections.

Why a package of its own: the studies read datasets and never change them, and they need the
``analysis`` extra (scikit-learn, umap-learn, matplotlib), which the trainer, validator and
assimilator must not import. ``symmetry`` and ``features`` need only numpy; ``classifiers``,
``table2``, ``tasks`` and ``projection`` import scikit-learn / umap / matplotlib.

    mlds analyze table2 MLDS-DS1-100.tar.gz MLDS-DS2-100.tar.gz --out docs/results/table2.md
    mlds analyze tasks MLDS-DS3-20.tar.gz --out docs/results/tasks-ds3.md
    mlds analyze umap MLDS-DS1-100.tar.gz MLDS-DS2-100.tar.gz --out docs/results/figures
"""
