"""Two detectors that see what the autoencoder and the tail score miss, as Keras layers in the saved model.

Why: on 30 external data sets (bench/external.py) the rank autoencoder + tail score lost to a plain
IsolationForest, and each of the three (and k nearest neighbours) is best on different sets: tails where
anomalies are extreme on some feature, isolation where they sit apart in a few features, neighbours where
they are ordinary on every feature but far from any other user. The unsupervised default fuses them by
robust z-scores (`ensemble.with_detectors`), so no detector's units or scale matter.

* `IsolationForestScore`: scikit-learn's IsolationForest fitted on the training users, its trees flattened
  into node arrays (non-trainable weights) and walked with Keras ops: the same path lengths as
  `IsolationForest.score_samples`, inside the one Keras model that scoring calls.
* `NearestNeighbours`: the distance to the k-th nearest of a sample of training users, in standard units.
  The ensemble measures it twice: on the raw features (a user far out on a few of them) and on their signed
  logarithm (a user unlike the others in its counts and amounts, which raw units squeeze towards zero).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from keras import layers, ops

from shopguard.model.backend import keras

Tensor = Any  # a Keras tensor: Keras ships no type information
INDICES = ("feature", "left", "right")  # the isolation forest's integer node arrays
# A squared distance (standard units) below this is a reference user meeting itself: float32 rounding of
# |x|^2 - 2 x.r + |r|^2 leaves up to ~1e-4 where the true distance is 0
SELF = 1e-3


def _constant(layer: layers.Layer, name: str, shape: tuple[int, ...], dtype: str = "float32") -> Any:
    """A fitted array kept as a non-trainable weight: saved with the weights, not in the config."""
    return layer.add_weight(shape=shape, dtype=dtype, trainable=False, name=name, initializer="zeros")


def average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n): the mean depth of an unsuccessful search in a binary search tree of n points (Liu et al.)."""
    n = np.asarray(n, dtype=np.float64)
    safe = np.maximum(n, 2.0)
    c = 2.0 * (np.log(safe - 1.0) + np.euler_gamma) - 2.0 * (safe - 1.0) / safe
    return np.where(n <= 1, 0.0, np.where(n == 2, 1.0, c))


@keras.saving.register_keras_serializable(package="shopguard")
class IsolationForestScore(layers.Layer):
    """raw features -> mean isolation depth in units of c(max_samples), negated (higher = easier to isolate).

    The trees live in five flat node arrays: split feature, threshold, left and right child (global node
    indices; a leaf points to itself) and, at a leaf, its depth + c(training rows in the leaf). Every row
    starts at each tree's root and takes `depth` steps, x[feature] <= threshold going left as in
    scikit-learn; a row that reached a leaf early stays there."""

    def __init__(self, nodes: int, roots: list[int], depth: int, normaliser: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.nodes, self.roots = int(nodes), [int(r) for r in roots]
        self.depth, self.normaliser = int(depth), float(normaliser)
        self.feature, self.left, self.right = (_constant(self, n, (self.nodes,), "int32") for n in INDICES)
        self.threshold, self.leaf_depth = (
            _constant(self, n, (self.nodes,)) for n in ("threshold", "leaf_depth")
        )

    def call(self, inputs: Tensor) -> Tensor:
        rows = ops.shape(inputs)[0]
        node = ops.broadcast_to(
            ops.convert_to_tensor(np.asarray(self.roots, np.int32))[None, :], (rows, len(self.roots))
        )
        for _ in range(self.depth):
            value = ops.take_along_axis(inputs, ops.take(self.feature, node), axis=1)
            go_left = value <= ops.take(self.threshold, node)
            node = ops.where(go_left, ops.take(self.left, node), ops.take(self.right, node))
        mean_depth = ops.mean(ops.take(self.leaf_depth, node), axis=1, keepdims=True)
        return -mean_depth / self.normaliser

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "nodes": self.nodes, "roots": self.roots, "depth": self.depth,
                "normaliser": self.normaliser}  # fmt: skip


def isolation_forest(x_fit: np.ndarray, trees: int, seed: int) -> IsolationForestScore:
    """Fits scikit-learn's IsolationForest (256 rows per tree, its defaults) and flattens its trees."""
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(n_estimators=trees, random_state=seed).fit(x_fit.astype(np.float32))
    arrays: dict[str, list[np.ndarray]] = {
        k: [] for k in ("feature", "threshold", "left", "right", "leaf_depth")
    }
    roots, offset, deepest = [], 0, 0
    for tree, columns in zip(forest.estimators_, forest.estimators_features_, strict=True):
        t = tree.tree_
        own = np.arange(t.node_count)
        leaf = t.children_left < 0
        depth = np.zeros(t.node_count, dtype=np.int64)
        for i in own[~leaf]:  # children come after their parent in scikit-learn's node order
            depth[t.children_left[i]] = depth[t.children_right[i]] = depth[i] + 1
        arrays["feature"].append(np.where(leaf, 0, np.asarray(columns)[np.maximum(t.feature, 0)]))
        arrays["threshold"].append(np.where(leaf, 0.0, t.threshold))
        arrays["left"].append(offset + np.where(leaf, own, t.children_left))
        arrays["right"].append(offset + np.where(leaf, own, t.children_right))
        arrays["leaf_depth"].append(depth + average_path_length(t.n_node_samples))
        roots.append(offset)
        offset += t.node_count
        deepest = max(deepest, int(depth.max()))
    layer = IsolationForestScore(
        nodes=offset, roots=roots, depth=deepest,
        normaliser=float(average_path_length(np.array([forest.max_samples_]))[0]), name="isolation_forest",
    )  # fmt: skip
    for name, parts in arrays.items():
        getattr(layer, name).assign(np.concatenate(parts).astype("int32" if name in INDICES else "float32"))
    return layer


@keras.saving.register_keras_serializable(package="shopguard")
class NearestNeighbours(layers.Layer):
    """raw features -> distance to the k-th nearest reference user, in standard units of the training users.

    The reference is a sample of the training users, so a reference user would find itself at distance 0:
    one zero distance (below SELF) is skipped (the (k+1)-th is taken), which keeps the reference users'
    scores on the same footing as everyone else's."""

    def __init__(self, k: int, rows: int, columns: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.k, self.rows, self.columns = int(k), int(rows), int(columns)
        self.reference = _constant(self, "reference", (self.rows, self.columns))
        self.centre, self.scale = (_constant(self, n, (self.columns,)) for n in ("centre", "scale"))

    def call(self, inputs: Tensor) -> Tensor:
        x = (inputs - self.centre) / self.scale
        squared = (
            ops.sum(x * x, axis=1, keepdims=True)
            - 2.0 * ops.matmul(x, ops.transpose(self.reference))
            + ops.sum(self.reference * self.reference, axis=1)[None, :]
        )
        nearest = -ops.top_k(-squared, k=min(self.k + 1, self.rows))[0]  # ascending squared distances
        if self.rows <= self.k:  # too few reference users: the farthest
            chosen = nearest[:, -1]
        else:
            chosen = ops.where(nearest[:, 0] <= SELF, nearest[:, self.k], nearest[:, self.k - 1])
        return ops.sqrt(ops.maximum(chosen, 0.0))[:, None]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "k": self.k, "rows": self.rows, "columns": self.columns}


def nearest_neighbours(
    x_fit: np.ndarray, k: int, reference_rows: int, seed: int, name: str = "nearest_neighbours"
) -> NearestNeighbours:
    """A layer holding a random sample of at most `reference_rows` training users, standardised."""
    rng = np.random.default_rng(seed)
    sample = x_fit[np.sort(rng.choice(len(x_fit), size=min(reference_rows, len(x_fit)), replace=False))]
    centre, spread = x_fit.mean(axis=0), x_fit.std(axis=0)
    scale = np.where(spread > 0, spread, 1.0)
    layer = NearestNeighbours(k=k, rows=len(sample), columns=x_fit.shape[1], name=name)
    layer.reference.assign(((sample - centre) / scale).astype(np.float32))
    layer.centre.assign(centre.astype(np.float32))
    layer.scale.assign(scale.astype(np.float32))
    return layer
