"""Naming a user's own env: a registered id, Gymnasium's "module:Id", "module:ClassName"; what is refused."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from worker.envs import describe_env, registered_id

TESTS = Path(__file__).resolve().parents[1]


def test_the_three_ways_to_name_an_env():
    assert registered_id("CartPole-v1") == "CartPole-v1"
    assert registered_id("custom_envs:custom/Walk-v0") == "custom/Walk-v0"  # the module registers the id
    assert registered_id("custom_envs:Walk") == "Walk"  # the class, registered on first use
    assert describe_env("custom_envs:Walk").num_actions == 2


@pytest.mark.parametrize(
    ("env_id", "message"),
    [
        ("NoSuchEnv-v0", "unknown env id 'NoSuchEnv-v0'"),
        ("no_such_module:Walk", "cannot import env module 'no_such_module'"),
        ("custom_envs:Missing", "has no gymnasium.Env subclass of that name"),
        ("custom_envs:NOT_AN_ENV", "has no gymnasium.Env subclass of that name"),
    ],
)
def test_a_name_that_leads_nowhere_says_why(env_id, message):
    with pytest.raises(ValueError, match=message):
        registered_id(env_id)


@pytest.mark.parametrize(
    ("env_id", "named"),
    [("custom_envs:DictObservations", "Dict"), ("custom_envs:MultiDiscreteActions", "MultiDiscrete")],
)
def test_unsupported_spaces_are_refused_naming_what_is_supported(env_id, named):
    with pytest.raises(ValueError, match=f"{named}.* is not supported: .* must be"):
        describe_env(env_id)


def rlhf_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "worker.cli", "run", "--out", str(tmp_path / "out"), "--no-progress", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.process
@pytest.mark.parametrize(
    "naming", [["--env", "custom_envs:Walk"], ["--env-module", "custom_envs", "--env", "custom/Walk-v0"]]
)
def test_rlhf_run_trains_a_users_own_env(tmp_path, naming):
    done = rlhf_run(tmp_path, *naming, "--timesteps", "2048", "--labels", "10", "--segment-length", "10")
    assert done.returncode == 0, done.stderr
    assert "no tuned settings for" in done.stderr and "using the defaults, 2048 env steps" in done.stderr
    assert (tmp_path / "out" / "metrics.json").is_file()


@pytest.mark.process
@pytest.mark.parametrize(
    ("args", "option", "named"),
    [
        (["--env-module", "no_such_module"], "--env-module", "no_such_module"),
        (["--env", "custom_envs:DictObservations"], "--env", "Dict"),
    ],
)
def test_rlhf_run_refuses_in_one_line_with_exit_2(tmp_path, args, option, named):
    done = rlhf_run(tmp_path, *args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"rlhf run: error: {option}: ") and named in lines[0], done.stderr
