"""PyTorch learners on Gymnasium tasks, and the data around them.

Modules (import the one you need; this package imports nothing heavy by itself):

* :mod:`sbil.deep.envs` -- supported tasks (:func:`~sbil.deep.envs.env_spec`) and the
  batched ``Policy`` protocol.
* :mod:`sbil.deep.experts` -- scripted and locally trained experts (``get_expert``).
* :mod:`sbil.deep.data` -- ``Demonstrations``, Minari datasets (``collect``,
  ``load_demonstrations``) and ``from_arrays``.
* :mod:`sbil.deep.evaluation` -- the one evaluation function ``evaluate`` and
  ``action_match_rate``.
"""
