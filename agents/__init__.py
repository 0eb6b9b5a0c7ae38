"""Learned schedulers, installed as ``hffm_env.agents``: PPO through stable-baselines3 and
sb3-contrib (:mod:`~hffm_env.agents.ppo`), Ray RLlib (:mod:`~hffm_env.agents.rllib`), agent
folders (:mod:`~hffm_env.agents.checkpoint`) and the training command
(:mod:`~hffm_env.agents.command`, i.e. ``train_agent.py`` and ``hffm train``)."""
