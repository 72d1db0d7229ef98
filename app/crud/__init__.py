"""The data layer: every read and write of the service, shared by the API, the worker and the tests.

One module per concept; this package re-exports their public functions, so callers write
`crud.get_experiment(session, experiment_id=...)`. Every function takes the session first and the rest by
keyword, in one order: experiment_id, then who acts (rater_id / worker_id), then the row's own id, then the
data, then options.

Functions that write run their own transaction (`app.db.write_transaction`) and commit it, so a refused
operation (a raised `app.errors.DomainError`) leaves nothing behind. Humans, the synthetic teacher and
imports all store labels through `submit_label` / `import_labels`.
"""

from app.crud.arrays import SegmentArrays, segment_arrays, validate_segment
from app.crud.common import as_utc, hash_token, new_token
from app.crud.experiments import (
    acquire_experiment,
    create_experiment,
    experiment_counts,
    experiments_needing_work,
    get_experiment,
    list_experiments,
    release_experiment,
    update_experiment,
)
from app.crud.jobs import (
    RENDER_CLIP_JOB,
    claim_jobs,
    complete_job,
    enqueue_job,
    fail_job,
    get_job,
    heartbeat_job,
)
from app.crud.labels import (
    EXPORT_FIELDS,
    ImportedLabel,
    import_labels,
    iter_label_records,
    label_in,
    labels_after,
    submit_label,
    undo_last_label,
)
from app.crud.metrics import add_checkpoint, latest_checkpoint, latest_metrics, metric_series, record_metrics
from app.crud.pairs import (
    LeaseInfo,
    add_pairs,
    count_pairs_asked,
    get_pair,
    lease_in,
    lease_pair,
    leased_pair_ids,
    pending_pairs,
    release_lease,
    release_lease_terms,
)
from app.crud.raters import (
    create_rater,
    ensure_admin_token,
    invite_rater,
    invited_in,
    is_invited,
    list_raters,
    oracle_rater_id,
    rater_experiment_ids,
    rater_for_token,
    rater_for_token_in,
    rater_id_for_token,
    revoke_rater,
)
from app.crud.segments import (
    add_segments,
    attach_clip,
    count_clips_queued,
    get_clip,
    get_segment,
    list_segments,
    mark_clip_failed,
    queue_segment_clips,
    queue_uploaded_frames,
)
from app.models import utcnow

__all__ = [
    "EXPORT_FIELDS",
    "RENDER_CLIP_JOB",
    "ImportedLabel",
    "LeaseInfo",
    "SegmentArrays",
    "acquire_experiment",
    "add_checkpoint",
    "add_pairs",
    "add_segments",
    "as_utc",
    "attach_clip",
    "claim_jobs",
    "complete_job",
    "count_clips_queued",
    "count_pairs_asked",
    "create_experiment",
    "create_rater",
    "enqueue_job",
    "ensure_admin_token",
    "experiment_counts",
    "experiments_needing_work",
    "fail_job",
    "get_clip",
    "get_experiment",
    "get_job",
    "get_pair",
    "get_segment",
    "hash_token",
    "heartbeat_job",
    "import_labels",
    "invite_rater",
    "invited_in",
    "is_invited",
    "iter_label_records",
    "label_in",
    "labels_after",
    "latest_checkpoint",
    "latest_metrics",
    "lease_in",
    "lease_pair",
    "leased_pair_ids",
    "list_experiments",
    "list_raters",
    "list_segments",
    "mark_clip_failed",
    "metric_series",
    "new_token",
    "oracle_rater_id",
    "pending_pairs",
    "queue_segment_clips",
    "queue_uploaded_frames",
    "rater_experiment_ids",
    "rater_for_token",
    "rater_for_token_in",
    "rater_id_for_token",
    "record_metrics",
    "release_experiment",
    "release_lease",
    "release_lease_terms",
    "revoke_rater",
    "segment_arrays",
    "submit_label",
    "undo_last_label",
    "update_experiment",
    "utcnow",
    "validate_segment",
]
