"""Running the whole study: the plan check, the cost estimate, notebooks executed per run, executors."""
