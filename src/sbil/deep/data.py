"""Expert demonstrations: one import for the container, Minari storage and recording.

The code lives in three modules, one per idea; this module re-exports their public names so
that ``from sbil.deep.data import ...`` keeps working:

* :mod:`sbil.deep.demonstrations`: the validated in-memory :class:`Demonstrations`
  (``subset``, ``split``, ``select``) and :func:`from_arrays`;
* :mod:`sbil.deep.datasets`: local Minari datasets (:func:`load_demonstrations`, ids, paths);
* :mod:`sbil.deep.collection`: :func:`collect`, which records an expert into a new dataset.

Example:
    >>> from sbil.deep.data import collect, load_demonstrations
    >>> info = collect("CartPole-v1", 10, root="/tmp/minari")  # doctest: +SKIP
    >>> demos = load_demonstrations(info.dataset_id, root="/tmp/minari")  # doctest: +SKIP
    >>> demos.subset(4).n_episodes  # doctest: +SKIP
    4
"""

from __future__ import annotations

from sbil.deep.collection import CollectResult, collect
from sbil.deep.datasets import (
    check_dataset_id,
    dataset_path,
    datasets_root,
    default_dataset_id,
    load_demonstrations,
)
from sbil.deep.demonstrations import DatasetError, Demonstrations, from_arrays

__all__ = [
    "CollectResult",
    "DatasetError",
    "Demonstrations",
    "check_dataset_id",
    "collect",
    "dataset_path",
    "datasets_root",
    "default_dataset_id",
    "from_arrays",
    "load_demonstrations",
]
