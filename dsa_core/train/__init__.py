"""Training: configs per preset and stage, optimiser groups, schedules, the loop, distributed helpers."""
