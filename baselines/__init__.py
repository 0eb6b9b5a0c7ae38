"""Heuristic schedulers and the benchmark runner, installed as ``hffm_env.baselines``:
:mod:`~hffm_env.baselines.policies`, :mod:`~hffm_env.baselines.runner` (``hffm bench``),
:mod:`~hffm_env.baselines.calibrate` (``hffm calibrate``) and
:mod:`~hffm_env.baselines.plan`: round plans found by search (not baselines; what
``train_agent.py --imitate`` clones and ``hffm bench --plan`` plays)."""
