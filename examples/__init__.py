"""Example tasks of our own, named to `rlhf run --env` and the new-experiment form as module:ClassName."""
