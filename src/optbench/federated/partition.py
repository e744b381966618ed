"""Split a training set among federated clients: IID, or non-IID by a Dirichlet label split.

* IID: a seeded random permutation of the examples cut into ``n_clients`` shards whose sizes
  differ by at most one (``numpy.array_split``).
* Dirichlet(alpha): Hsu, Qi & Brown, *Measuring the Effects of Non-Identical Data Distribution for
  Federated Visual Classification* (2019): for every class ``c`` a vector of client proportions
  ``p_c ~ Dir(alpha * 1_N)`` is drawn and the examples of class ``c`` (in a seeded random order) are
  cut at the cumulative proportions. Small ``alpha`` (0.1) gives each client a few dominant
  classes; large ``alpha`` (100) approaches the IID split.

Every example goes to exactly one client, and every client gets at least one: a client left empty
by the Dirichlet draw takes one example from the then-largest client (deterministic, so the split
stays a function of the seed). All randomness comes from ``numpy.random.default_rng(seed)``;
each shard's indices are sorted, so one client with the IID split holds the training set in its
original order (the parity check with single-process training relies on that).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from optbench.core.errors import ConfigError

#: The partition schemes ``--partition`` accepts.
SCHEMES: tuple[str, ...] = ("iid", "dirichlet")


def _check_clients(n_examples: int, n_clients: int) -> None:
    if isinstance(n_clients, bool) or not isinstance(n_clients, int) or n_clients < 1:
        raise ConfigError("--clients", n_clients, "an integer >= 1")
    if n_clients > n_examples:
        raise ConfigError("--clients", n_clients, f"at most the {n_examples} training examples (each client needs one)")


def iid_partition(n_examples: int, n_clients: int, seed: int) -> list[np.ndarray]:
    """Shards of a seeded random permutation of ``range(n_examples)``.

    Returns:
        ``n_clients`` sorted int64 index arrays of sizes ``n_examples // n_clients`` or one more.

    Raises:
        ConfigError: ``n_clients`` < 1 or more clients than examples.
    """
    _check_clients(n_examples, n_clients)
    perm = np.random.default_rng(seed).permutation(n_examples)
    return [np.sort(part).astype(np.int64) for part in np.array_split(perm, n_clients)]


def dirichlet_partition(labels: Sequence[int] | np.ndarray, n_clients: int, alpha: float,
                        seed: int) -> list[np.ndarray]:
    """Non-IID shards by a per-class Dirichlet(alpha) draw of client proportions (Hsu et al. 2019).

    Args:
        labels: integer class labels, shape ``(n_examples,)``.
        n_clients: number of shards (>= 1, <= ``n_examples``).
        alpha: the Dirichlet concentration (> 0); smaller is more skewed.
        seed: seeds ``numpy.random.default_rng``; the same inputs give the same shards.

    Returns:
        ``n_clients`` sorted int64 index arrays, disjoint, covering every example, none empty.

    Raises:
        ConfigError: bad ``n_clients`` or ``alpha``, or labels that are not a 1-d integer array.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ConfigError("partition labels", f"shape {y.shape} dtype {y.dtype}",
                          "a 1-d integer class label per example (dirichlet needs a classification task)")
    _check_clients(len(y), n_clients)
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < np.inf:
        raise ConfigError("--alpha", alpha, "a finite number > 0")
    rng = np.random.default_rng(seed)
    shards: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        proportions = rng.dirichlet(np.full(n_clients, float(alpha)))
        cuts = (np.cumsum(proportions)[:-1] * len(members)).astype(np.int64)
        for client, part in enumerate(np.split(members, cuts)):
            shards[client].append(part)
    parts = [np.concatenate(s) if s else np.empty(0, np.int64) for s in shards]
    for client in range(n_clients):  # every client gets >= 1 example, taken from the largest
        if len(parts[client]) == 0:
            donor = int(np.argmax([len(p) for p in parts]))
            parts[client], parts[donor] = parts[donor][-1:], parts[donor][:-1]
    return [np.sort(p).astype(np.int64) for p in parts]


def partition(labels: Sequence[int] | np.ndarray, n_clients: int, scheme: str, seed: int,
              alpha: float = 0.5) -> list[np.ndarray]:
    """Client shards of ``labels``'s examples by ``scheme`` (``"iid"`` or ``"dirichlet"``).

    Raises:
        ConfigError: an unknown scheme, or the errors of :func:`iid_partition` /
            :func:`dirichlet_partition`.
    """
    if scheme == "iid":
        return iid_partition(len(np.asarray(labels)), n_clients, seed)
    if scheme == "dirichlet":
        return dirichlet_partition(labels, n_clients, alpha, seed)
    raise ConfigError("--partition", scheme, SCHEMES)


def label_counts(labels: Sequence[int] | np.ndarray, parts: Sequence[np.ndarray], n_classes: int) -> np.ndarray:
    """Examples of each class on each client, shape ``(n_clients, n_classes)`` (int64)."""
    y = np.asarray(labels)
    return np.stack([np.bincount(y[p], minlength=n_classes) for p in parts]).astype(np.int64)


__all__ = ["SCHEMES", "dirichlet_partition", "iid_partition", "label_counts", "partition"]
