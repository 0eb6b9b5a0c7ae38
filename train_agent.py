"""Train a PPO scheduler for hffm-env and compare it with the heuristic baselines.

    python train_agent.py --scenario small --total-timesteps 2000 --out out/small

The same job runs as ``hffm train``; ``--help`` lists every flag. The code lives in
:mod:`hffm_env.agents.command` (installed with the package); this file is the script.
"""

import sys

try:
    from hffm_env.agents.command import main
except ModuleNotFoundError as error:
    if error.name not in ("hffm_env.agents", "hffm_env.baselines"):
        raise
    # run from a clone, whose hffm_env/ folder comes first on the path: agents/ and
    # baselines/ become hffm_env.agents and hffm_env.baselines only when installed
    sys.exit("train_agent.py: hffm_env.agents is not importable here; install this clone in "
             "editable mode (`pip install -e .`), or run the same job as `hffm train` "
             "after a regular install")

if __name__ == "__main__":
    sys.exit(main())
