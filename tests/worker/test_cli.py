import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.process  # each test runs `rlhf` commands

METRIC_KEYS = {
    "env", "seed", "teacher", "query", "labels_used", "timesteps", "wall_seconds", "final_true_return",
    "final_true_return_std", "reward/val_accuracy", "reward_correlation", "curve",
}
RANDOM_POLICY_RETURN = 22.0  # CartPole-v1's uniformly random policy lasts about 22 steps


def rlhf(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--env", "NoSuchEnv-v0"], "--env"),
        (["--labels", "-5"], "--labels"),
        (["--teacher", "oracle"], "--teacher"),
        (["--query", "best"], "--query"),
        (["--teacher-gamma", "2"], "--teacher-gamma"),
        (["--timesteps", "many"], "--timesteps"),
    ],
)
def test_bad_options_give_one_line_naming_the_option_and_exit_2(tmp_path, args, option):
    done = rlhf("run", "--out", str(tmp_path / "out"), *args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and option in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_eval_of_a_folder_without_checkpoint_is_a_usage_error(tmp_path):
    done = rlhf("eval", str(tmp_path))
    assert done.returncode == 2 and "checkpoint.pt" in done.stderr


@pytest.mark.slow
def test_run_with_a_tiny_label_budget_beats_a_random_policy_and_reloads(tmp_path):
    out = tmp_path / "run"
    done = rlhf(
        "run", "--env", "CartPole-v1", "--labels", "30", "--timesteps", "30000", "--seed", "0",
        "--out", str(out), "--no-progress",
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert METRIC_KEYS <= metrics.keys()
    assert metrics["labels_used"] == 30
    assert metrics["timesteps"] >= 30000
    assert metrics["final_true_return"] > 5 * RANDOM_POLICY_RETURN
    assert all({"labels/count", "env/timesteps", "env/true_return"} <= point.keys() for point in metrics["curve"])
    assert (out / "curve.png").stat().st_size > 10_000
    chosen = metrics["chosen_policy"]  # the checkpoint holds the policy the run kept, which eval scores below
    assert chosen["timesteps"] in [c["timesteps"] for c in chosen["candidates"]]
    assert f"kept the policy of step {chosen['timesteps']} (best of {len(chosen['candidates'])}" in done.stdout
    assert f"({metrics['choices']['equal']} answered equal)" in done.stdout

    again = rlhf("eval", str(out), "--episodes", "20")
    assert again.returncode == 0, again.stderr
    rescored = json.loads(again.stdout)
    assert rescored["true_return"] > 5 * RANDOM_POLICY_RETURN
