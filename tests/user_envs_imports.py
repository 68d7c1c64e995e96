"""A user's env package that registers its env on import (as minigrid, ale_py, popgym do):
``env.imports=[tests.user_envs_imports] env.id=ImportedCorridor-v0``. Imported only by that route,
so that a fresh process knows ``ImportedCorridor-v0`` only after ``env.imports`` ran."""

import gymnasium as gym

if "ImportedCorridor-v0" not in gym.registry:
    gym.register("ImportedCorridor-v0", entry_point="tests.user_envs:Corridor", max_episode_steps=30)
