"""schemathesis hooks for bench/fuzz.py (loaded through SCHEMATHESIS_HOOKS): how to send the two bodies that
are not JSON, the JSONL label import and the .npy frames upload."""

import schemathesis

schemathesis.serializer.alias("application/x-ndjson", "text/plain")
schemathesis.serializer.alias("application/x-npy", "application/octet-stream")
