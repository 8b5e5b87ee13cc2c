"""`modelrollout compare`, the shadow step's comparator (its own program: see the import contracts)."""

# The environment variables the comparator reads bearer tokens from (the operator maps the Secrets of
# compare.feedback.tokenSecretRef and compare.judge.secretRef onto them).
FEEDBACK_TOKEN_ENV = "MODELROLLOUT_FEEDBACK_TOKEN"  # noqa: S105 (a variable name, not a token)
JUDGE_TOKEN_ENV = "MODELROLLOUT_JUDGE_TOKEN"  # noqa: S105 (a variable name, not a token)
# Where the comparator's store of predictions and verdicts lives in its pod (a volume: the root
# filesystem is read-only).
STORE_DIR = "/var/lib/modelrollout"
