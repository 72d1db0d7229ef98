"""MuJoCo locomotion: the missing-dependency errors, the replayed rater clips, and a smoke run per env.

The tests that step or render MuJoCo need the `mujoco` extra (and for clips an OpenGL library, libegl1 or
libosmesa6); where the extra is absent they skip, saying so. CI installs both (.ci/run, Makefile).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from worker import cli, envs, render
from worker.envs import is_mujoco_env, mujoco_installed

MUJOCO_ENVS = ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Swimmer-v5", "Ant-v5", "Reacher-v5"]
needs_mujoco = pytest.mark.skipif(not mujoco_installed(), reason="the mujoco extra is not installed")
needs_gl = pytest.mark.skipif(
    not mujoco_installed() or render.GL_BACKEND is None, reason="no mujoco extra or no OpenGL library (libegl1)"
)


def test_the_locomotion_envs_are_known_as_mujoco_envs():
    assert all(is_mujoco_env(env_id) for env_id in MUJOCO_ENVS)
    assert not is_mujoco_env("CartPole-v1") and not is_mujoco_env("NoSuchEnv-v0")


@pytest.mark.process
def test_rlhf_run_without_the_mujoco_extra_says_what_to_install_on_one_line_and_exits_2(tmp_path):
    # sys.modules["mujoco"] = None makes the package unimportable in that process, as if it were not installed.
    code = "import sys; sys.modules['mujoco'] = None; from worker.cli import main; sys.exit(main(sys.argv[1:]))"
    args = ["run", "--env", "Hopper-v5", "--out", str(tmp_path / "out"), "--no-progress"]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Hopper-v5 needs MuJoCo" in lines[0] and "pip install 'rlhf-loop[mujoco]'" in lines[0]
    assert not (tmp_path / "out").exists()


def test_without_the_extra_a_mujoco_env_id_is_refused_with_the_install_line(monkeypatch, capsys):
    monkeypatch.setattr(envs, "mujoco_installed", lambda: False)
    assert cli.main(["run", "--env", "HalfCheetah-v5", "--no-progress"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["rlhf run: error: --env: HalfCheetah-v5 needs MuJoCo, which is not installed: "
                     "pip install 'rlhf-loop[mujoco]'"]


@pytest.mark.parametrize("command", ["worker", "serve"])
def test_worker_and_serve_refuse_to_start_without_an_opengl_library(monkeypatch, capsys, command):
    monkeypatch.setattr(envs, "mujoco_installed", lambda: True)
    monkeypatch.setattr(render, "_loadable", lambda names: False)
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    assert cli.main([command]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "apt-get install libegl1" in lines[0], lines


def test_the_gl_backend_is_egl_else_osmesa_else_none_and_a_given_one_is_kept(monkeypatch):
    loads = {"egl": False, "osmesa": True}
    monkeypatch.setattr(render, "_loadable", lambda names: loads["egl" if "EGL" in names[0] else "osmesa"])
    environ: dict[str, str] = {}
    assert render.choose_gl_backend(environ) == "osmesa"
    assert environ == {"MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa"}
    loads["egl"] = True
    environ = {}
    assert render.choose_gl_backend(environ) == "egl" and environ["MUJOCO_GL"] == "egl"
    assert render.choose_gl_backend({"MUJOCO_GL": "glfw"}) == "glfw"  # a display the user chose
    loads["osmesa"] = False
    assert render.choose_gl_backend({"MUJOCO_GL": "osmesa"}) is None  # chosen, but the library is missing
    loads["egl"] = False
    assert render.choose_gl_backend({}) is None


# ---- segments keep their physics start state, and clips replay from it --------------------------------------
def _segments(env_id: str, count: int, length: int, seed: int = 0):
    """`count` segments of `length` steps cut from one rollout of a fresh policy, each with its start state."""
    from worker.config import PPOConfig
    from worker.ppo import PPO
    from worker.segments import cut_segments

    ppo = PPO(env_id, PPOConfig(num_envs=2, num_steps=128, init_log_std=0.0), 10_000, seed, "cpu")
    try:
        rollout = ppo.collect()
    finally:
        ppo.close()
    assert rollout.states is not None and rollout.states.shape[:2] == (128, 2)
    return cut_segments(
        rollout.obs, rollout.actions, rollout.true_rewards, rollout.terminated, rollout.truncated, rollout.valid,
        length, count, np.random.default_rng(seed), env_id, states=rollout.states,
    )


@needs_mujoco
def test_replaying_a_segment_from_its_start_state_retraces_its_observations():
    import gymnasium as gym

    env = gym.make("HalfCheetah-v5")
    env.reset(seed=123)
    for segment in _segments("HalfCheetah-v5", count=3, length=20):
        model = env.unwrapped.model
        env.unwrapped.set_state(segment.start_state[: model.nq], segment.start_state[model.nq :])
        replayed = [env.step(action)[0] for action in segment.actions[:-1]]
        np.testing.assert_allclose(np.array(replayed), segment.obs[1:], rtol=0, atol=1e-5)
    env.close()


def _decode(path) -> np.ndarray:
    import av

    with av.open(str(path)) as video:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in video.decode(video=0)])


@needs_gl
def test_a_clip_replays_exactly_its_segment_and_two_segments_give_different_frames(tmp_path):
    first, second = _segments("HalfCheetah-v5", count=2, length=8)
    clips = []
    for i, segment in enumerate((first, second)):
        info = render.render_clip(
            "HalfCheetah-v5", 0, segment.actions.tolist(), tmp_path / f"clip{i}.mp4",
            frame_count=len(segment), start_state=segment.start_state,
        )
        assert info["frame_count"] == len(segment)
        clips.append(_decode(tmp_path / f"clip{i}.mp4"))
    assert [len(c) for c in clips] == [8, 8]
    assert clips[0].shape[1:] == (render.MUJOCO_CLIP_SIZE, render.MUJOCO_CLIP_SIZE, 3)
    # Consecutive frames move; the two segments' clips differ frame by frame.
    assert np.abs(clips[0][0].astype(int) - clips[0][-1].astype(int)).mean() > 0.5
    assert np.abs(clips[0].astype(int) - clips[1].astype(int)).mean(axis=(1, 2, 3)).min() > 0.5
    # The same segment encodes to the same picture again (what the content hash relies on).
    render.render_clip(
        "HalfCheetah-v5", 0, first.actions.tolist(), tmp_path / "again.mp4",
        frame_count=len(first), start_state=first.start_state,
    )
    assert np.array_equal(_decode(tmp_path / "again.mp4"), clips[0])


@needs_gl
def test_the_worker_queues_and_renders_a_mujoco_segment_clip_through_the_database(tmp_path):
    from app.settings import Settings
    from worker.clip_jobs import process_clip_jobs
    from worker.db_store import DatabaseStore

    (segment,) = _segments("Hopper-v5", count=1, length=10)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", data_dir=tmp_path / "data")
    from app.migrate import upgrade_database

    upgrade_database(settings)
    store = DatabaseStore.open(settings)
    try:
        experiment_id = _hopper_experiment(store)
        (segment_id,) = store.add_segments(experiment_id, [segment], policy_step=0)
        assert store.count_clips_queued([segment_id]) == 1  # queued with the segment, from its render spec
        assert process_clip_jobs(store, tmp_path / "clips") == 1
        assert store.count_clips_queued([segment_id]) == 0
        (clip,) = (tmp_path / "clips").rglob("*.mp4")
        assert len(_decode(clip)) == 10
        spec = store.render_spec(segment_id)
        assert spec is not None and spec["fps"] == 60  # Hopper steps 125 times a second: capped, slow motion
        np.testing.assert_array_equal(np.array(spec["start_state"]), segment.start_state)
    finally:
        store.close()


def _hopper_experiment(store) -> int:
    from app import crud
    from app.schemas import ExperimentCreate

    row = crud.create_experiment(
        store.session,
        data=ExperimentCreate(
            name="hopper", env_id="Hopper-v5", teacher_mode="human", obs_shape=[11], action_shape=[3],
            action_dtype="float32",
        ),
    )
    return int(row.id)


# ---- a smoke run per env: headless `rlhf run` on a tiny budget -------------------------------------------
@needs_mujoco
@pytest.mark.slow
@pytest.mark.parametrize("env_id", MUJOCO_ENVS)
def test_a_tiny_preference_run_goes_end_to_end_on_the_env_settings(env_id, tmp_path):
    from worker.config import RunConfig
    from worker.loop import run

    config = RunConfig(env_id=env_id, labels=6, seed=0, eval_episodes=2).resolved()
    config = replace(config, timesteps=2 * config.ppo.batch_size, eval_every=10**9)
    result = run(config)
    assert result.metrics["labels_used"] == 6
    assert result.metrics["timesteps"] == config.timesteps
    assert np.isfinite(result.metrics["final_true_return"])
    assert config.reward_model.use_actions and config.ppo.norm_reward
    candidates = result.learner.candidates
    assert candidates and all(s.start_state is not None for s in candidates)
    if render.GL_BACKEND is not None:  # the segment's clip, its first 10 frames (a whole one takes seconds)
        segment = candidates[0]
        path = tmp_path / "clip.mp4"
        render.render_clip(env_id, 0, segment.actions.tolist(), path, frame_count=10, start_state=segment.start_state)
        assert len(_decode(path)) == 10


@needs_mujoco
@pytest.mark.slow
def test_rlhf_run_on_hopper_with_a_tiny_budget_writes_its_results(tmp_path, capsys):
    import json

    out = tmp_path / "hopper"
    args = ["run", "--env", "Hopper-v5", "--labels", "8", "--timesteps", "1536", "--out", str(out), "--no-progress"]
    assert cli.main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["labels_used"] == 8 and metrics["timesteps"] == 1536
    assert metrics["config"]["segment_length"] == 188 and metrics["config"]["reward_model"]["use_actions"]
    assert (out / "checkpoint.pt").is_file() and "Hopper-v5: true return" in capsys.readouterr().out
