"""`modelrollout compare`, the shadow step's comparator (its own program: see the import contracts)."""

# The environment variable the comparator reads /feedback's bearer token from (the operator maps the
# Secret of compare.labels.tokenSecretRef onto it).
FEEDBACK_TOKEN_ENV = "MODELROLLOUT_FEEDBACK_TOKEN"  # noqa: S105 (a variable name, not a token)
# Where the comparator's labels store lives in its pod (a volume: the root filesystem is read-only).
LABELS_DIR = "/var/lib/modelrollout"
