"""Train a PPO scheduler for hffm-env and compare it with the heuristic baselines.

    python train_agent.py --scenario small --total-timesteps 2000 --out out/small

The same job runs as ``hffm train``; ``--help`` lists every flag. The code lives in
:mod:`hffm_env.agents.command` (installed with the package); this file is the script.
"""

import sys

from hffm_env.agents.command import main

if __name__ == "__main__":
    sys.exit(main())
