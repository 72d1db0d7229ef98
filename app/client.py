"""A small Python client for the REST API over httpx, for the worker, the tests and users' scripts.

    from app.client import RlhfClient
    with RlhfClient("http://127.0.0.1:8000", token=ADMIN_TOKEN) as api:
        experiment = api.create_experiment("demo", "CartPole-v1", obs_shape=[4], num_actions=2)
        left, right = api.queue_segments(experiment["id"], [segment_a, segment_b])
        api.queue_pairs(experiment["id"], [(left, right)])
        labels = api.export_labels(experiment["id"])

Segments may be any objects with `obs`, `actions` and optionally `true_rewards` / `ended` arrays (such as
`worker.types.Segment`), or dicts of lists.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import httpx
import numpy as np


class ApiError(Exception):
    """A 4xx/5xx answer; `detail` is the server's message (it starts with the field at fault)."""

    def __init__(self, status_code: int, detail: str, field: str | None = None) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail
        self.field = field


def _as_list(values: Any) -> Any:
    return values.tolist() if isinstance(values, np.ndarray) else values


def segment_payload(segment: Any, **extra: Any) -> dict[str, Any]:
    """JSON body for one segment; unknown true rewards (all NaN) are sent as missing."""
    get = (
        segment.get
        if isinstance(segment, dict)
        else lambda name, default=None: getattr(segment, name, default)
    )
    payload: dict[str, Any] = {"obs": _as_list(get("obs")), "actions": _as_list(get("actions"))}
    rewards = get("true_rewards")
    if rewards is not None:
        rewards = np.asarray(rewards, dtype=np.float64)
        if not np.all(np.isnan(rewards)):
            payload["true_rewards"] = rewards.tolist()
    ended = get("ended")
    if ended is not None:
        payload["ended"] = np.asarray(ended, dtype=bool).tolist()
    env_id = get("env_id")
    if env_id:
        payload["env_id"] = env_id
    for name in ("seed", "policy_step", "render"):
        if get(name) is not None:
            payload[name] = get(name)
    payload.update({key: value for key, value in extra.items() if value is not None})
    return payload


class RlhfClient:
    """Synchronous client; one instance per token (the admin's or a rater's)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> RlhfClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
                detail, field = str(body.get("detail")), body.get("field")
            except (ValueError, AttributeError):
                detail, field = response.text, None
            raise ApiError(response.status_code, detail, field)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, f"/api/v1{path}", **kwargs).json()

    # --- health and experiments ---------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/healthz").json()

    def create_experiment(
        self,
        name: str,
        env_id: str,
        obs_shape: Sequence[int],
        action_shape: Sequence[int] = (),
        num_actions: int | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Create an experiment; `fields` are any of ExperimentCreate's (teacher_mode, instructions, ...)."""
        body: dict[str, Any] = {
            "name": name,
            "env_id": env_id,
            "obs_shape": list(obs_shape),
            "action_shape": list(action_shape),
        }
        if num_actions is not None:
            body["num_actions"] = num_actions
        elif "action_dtype" not in fields:
            body["action_dtype"] = "float32"  # no num_actions: a continuous (Box) action space
        return self._json("POST", "/experiments", json={**body, **fields})

    def list_experiments(self) -> list[dict[str, Any]]:
        return self._json("GET", "/experiments")

    def get_experiment(self, experiment_id: int) -> dict[str, Any]:
        return self._json("GET", f"/experiments/{experiment_id}")

    def update_experiment(self, experiment_id: int, **changes: Any) -> dict[str, Any]:
        """Change teacher_mode, instructions, status or budgets."""
        return self._json("PATCH", f"/experiments/{experiment_id}", json=changes)

    def record_metrics(self, experiment_id: int, step: int, values: dict[str, float]) -> None:
        self._request(
            "POST", f"/api/v1/experiments/{experiment_id}/metrics", json={"step": step, "values": values}
        )

    def get_metrics(
        self, experiment_id: int, keys: Sequence[str] | None = None, after_step: int | None = None
    ) -> dict[str, list[dict[str, float]]]:
        params: dict[str, Any] = {}
        if keys:
            params["key"] = list(keys)
        if after_step is not None:
            params["after_step"] = after_step
        return self._json("GET", f"/experiments/{experiment_id}/metrics", params=params)

    # --- segments and clips -----------------------------------------------------------------------------

    def queue_segments(self, experiment_id: int, segments: Iterable[Any], **extra: Any) -> list[int]:
        """Queue segments (objects or dicts with obs, actions, ...); `extra` applies to each. Returns ids."""
        body = {"segments": [segment_payload(segment, **extra) for segment in segments]}
        return self._json("POST", f"/experiments/{experiment_id}/segments", json=body)["segment_ids"]

    def queue_segment(self, experiment_id: int, segment: Any, **extra: Any) -> int:
        return self.queue_segments(experiment_id, [segment], **extra)[0]

    def get_segment(self, segment_id: int, include_arrays: bool = False) -> dict[str, Any]:
        return self._json("GET", f"/segments/{segment_id}", params={"include_arrays": include_arrays})

    def upload_frames(self, segment_id: int, frames: np.ndarray, fps: int = 30) -> dict[str, Any]:
        """Send (T, H, W, 3) uint8 frames for the segment's clip; the worker encodes them. Returns the job."""
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(frames, dtype=np.uint8), allow_pickle=False)
        return self._json(
            "PUT",
            f"/segments/{segment_id}/frames",
            params={"fps": fps},
            content=buffer.getvalue(),
            headers={"Content-Type": "application/x-npy"},
        )

    def download_clip(self, segment_id: int) -> bytes:
        return self._request("GET", f"/api/v1/segments/{segment_id}/clip").content

    # --- pairs, leases and labels -----------------------------------------------------------------------

    def queue_pairs(
        self,
        experiment_id: int,
        pairs: Iterable[tuple[int, int] | dict[str, Any]],
        priority: float | None = None,
        labels_wanted: int | None = None,
    ) -> list[int]:
        """Queue (left_segment_id, right_segment_id) pairs, or dicts of PairIn fields. Returns pair ids."""
        items = []
        for pair in pairs:
            item: dict[str, Any] = (
                dict(pair)
                if isinstance(pair, dict)
                else {"left_segment_id": pair[0], "right_segment_id": pair[1]}
            )
            if priority is not None:
                item.setdefault("priority", priority)
            if labels_wanted is not None:
                item.setdefault("labels_wanted", labels_wanted)
            items.append(item)
        return self._json("POST", f"/experiments/{experiment_id}/pairs", json={"pairs": items})["pair_ids"]

    def get_pair(self, pair_id: int) -> dict[str, Any]:
        return self._json("GET", f"/pairs/{pair_id}")

    def lease_pair(self, experiment_id: int, exclude: Sequence[int] = ()) -> dict[str, Any] | None:
        """The next pair (rater token): one held already and not in `exclude`, else a new lease; None when
        nothing is waiting (or the rater holds as many pairs as allowed)."""
        response = self._request(
            "POST", f"/api/v1/experiments/{experiment_id}/leases", params={"exclude": list(exclude)}
        )
        return None if response.status_code == 204 else response.json()

    def release_lease(self, lease_id: int) -> None:
        self._request("DELETE", f"/api/v1/leases/{lease_id}")

    def submit_label(
        self,
        pair_id: int,
        choice: str,
        response_time_ms: int | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Answer a leased pair with left / right / equal / skip (rater token)."""
        body: dict[str, Any] = {"pair_id": pair_id, "choice": choice}
        if response_time_ms is not None:
            body["response_time_ms"] = response_time_ms
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        return self._json("POST", "/labels", json=body)

    def undo_last_label(self, experiment_id: int) -> dict[str, Any]:
        return self._json("POST", f"/experiments/{experiment_id}/labels/undo")

    def export_labels(self, experiment_id: int) -> list[dict[str, Any]]:
        """Every label of the experiment, as dicts (from the JSONL export)."""
        text = self._request("GET", f"/api/v1/experiments/{experiment_id}/labels/export").text
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def export_labels_csv(self, experiment_id: int) -> str:
        path = f"/api/v1/experiments/{experiment_id}/labels/export"
        return self._request("GET", path, params={"format": "csv"}).text

    def import_labels(self, experiment_id: int, records: Iterable[dict[str, Any]]) -> int:
        """Import label records (e.g. from export_labels of another server); returns how many were stored."""
        lines = []
        for record in records:
            if any(isinstance(v, float) and not math.isfinite(v) for v in record.values()):
                raise ValueError("records must not contain NaN or infinity")
            lines.append(json.dumps(record))
        body = ("\n".join(lines) + "\n").encode()
        path = f"/api/v1/experiments/{experiment_id}/labels/import"
        response = self._request("POST", path, content=body, headers={"Content-Type": "application/x-ndjson"})
        return response.json()["imported"]

    # --- raters -----------------------------------------------------------------------------------------

    def create_invite(
        self, name: str, experiment_ids: Sequence[int] = (), kind: str = "human"
    ) -> dict[str, Any]:
        """Create a rater; the answer holds its token and invite_url (shown once)."""
        body = {"name": name, "experiment_ids": list(experiment_ids), "kind": kind}
        return self._json("POST", "/invites", json=body)

    def list_raters(self) -> list[dict[str, Any]]:
        return self._json("GET", "/raters")
