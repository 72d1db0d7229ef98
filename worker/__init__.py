"""The training side of rlhf-loop: segments, teachers, reward model, PPO and the loop that joins them.

Importing this package is cheap; torch and gymnasium load in the modules that need them.
"""
