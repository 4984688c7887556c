"""2-D UMAP projections of networks' weights, coloured by machine, marked by dataset, as PNG files.

Why figures carry their sources: a projection is read by eye and compared across releases, so each
figure names the files it came from (and their md5) in its caption, and the feature set and UMAP
settings in its title. Converged networks only; the features are standardised before UMAP (raw
weights of different layers have different ranges). Final weights show how long each network
trained as much as what it learned (DS2 networks train 3-4 times longer than DS1 ones), so
``epoch`` projects the weights after that snapshot epoch instead, for the networks that trained
that long: the figure at equal training. matplotlib runs with the Agg backend: no
display is needed.
"""

import os
from dataclasses import dataclass

import numpy as np

from mlds.analysis.features import feature_matrix
from mlds.analysis.pairs import file_md5

MARKERS = {"DS1": "o", "DS2": "^", "DS3": "s"}
FIGURE_INCHES, DPI = (9.0, 7.5), 100  # a 900 x 750 pixel PNG


@dataclass(frozen=True)
class UmapConfig:
    datasets: tuple
    out: str  # directory of the PNG files
    features: tuple = ("raw", "invariant")
    neighbors: int = 15
    min_dist: float = 0.1
    seed: int = 0
    epoch: int = 0  # 0: final weights; else the weights after this snapshot epoch


@dataclass(frozen=True)
class Points:
    """The networks of a figure: feature rows, and for each its dataset and task."""

    weights: np.ndarray
    datasets: np.ndarray
    tasks: np.ndarray
    architecture: object
    caption: str


def load_points(paths, epoch=0):
    """Every converged network of every task in ``paths`` (with ``epoch``: those that trained that
    long, with their weights after it), and a caption naming the files."""
    from assimilator.dataset import load_dataset

    weights, datasets, tasks, notes, architecture = [], [], [], [], None
    for path in paths:
        dataset = load_dataset(path)
        notes.append(f"{os.path.basename(path)} (md5 {file_md5(path)})")
        for name in dataset:
            table = dataset[name]
            keep = np.asarray(table.metadata["converged"], dtype=bool)
            rows = table.weights
            if epoch:
                rows = table.weights_at(epoch)  # KeyError (said as such) when the files keep no such epoch
                keep &= ~np.isnan(rows).any(axis=1)
            architecture = table.architecture
            weights.append(rows[keep])
            datasets += [dataset.name] * int(keep.sum())
            tasks += [name] * int(keep.sum())
    if not weights or not tasks:
        raise ValueError("no converged networks in the files")
    return Points(np.concatenate(weights), np.asarray(datasets), np.asarray(tasks), architecture, "; ".join(notes))


def embed(features, config):
    """``[N, 2]`` UMAP coordinates of standardised ``features``."""
    import umap
    from sklearn.preprocessing import StandardScaler

    scaled = StandardScaler().fit_transform(features)
    reducer = umap.UMAP(n_neighbors=min(config.neighbors, len(features) - 1), min_dist=config.min_dist, random_state=config.seed, n_jobs=1)
    return reducer.fit_transform(scaled)


def machine_of(task):
    """Colour key: DS1 ``XMachine`` and DS2 ``XModified`` share the colour of ``X``."""
    for suffix in ("Machine", "Modified"):
        if task.endswith(suffix):
            return task[: -len(suffix)]
    return task


def plot(points, coordinates, feature_set, config, path):
    """Write one scatter PNG of ``coordinates`` to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=FIGURE_INCHES, dpi=DPI)
    machines = sorted({machine_of(t) for t in points.tasks})
    colours = plt.get_cmap("tab10" if len(machines) <= 10 else "tab20")
    for m, machine in enumerate(machines):
        for dataset in sorted(set(points.datasets)):
            rows = (np.array([machine_of(t) for t in points.tasks]) == machine) & (points.datasets == dataset)
            if rows.any():
                axes.scatter(*coordinates[rows].T, s=14, color=colours(m % colours.N), marker=MARKERS.get(dataset, "x"),
                             label=f"{dataset} {machine} ({rows.sum()})", alpha=0.8)  # fmt: skip
    axes.set_xlabel("UMAP 1")
    axes.set_ylabel("UMAP 2")
    when = f" after epoch {config.epoch}" if config.epoch else ""
    axes.set_title(f"UMAP of {feature_set} weight features{when}, {len(coordinates)} converged networks "
                   f"(n_neighbors {config.neighbors}, min_dist {config.min_dist}, seed {config.seed})", fontsize=9)  # fmt: skip
    axes.legend(fontsize=7, loc="best", markerscale=1.2)
    figure.text(0.01, 0.01, "from " + points.caption, fontsize=6, wrap=True)
    figure.subplots_adjust(bottom=0.12)
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def run_umap(config):
    """One PNG per feature set under ``config.out``; returns their paths."""
    try:
        points = load_points(config.datasets, config.epoch)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    os.makedirs(config.out, exist_ok=True)
    written = []
    for feature_set in config.features:
        coordinates = embed(feature_matrix(feature_set, points.weights, points.architecture), config)
        suffix = f"-epoch{config.epoch}" if config.epoch else ""
        path = os.path.join(config.out, f"umap-{feature_set}{suffix}.png")
        plot(points, coordinates, feature_set, config, path)
        written.append(path)
    return written
