#!/bin/sh
# One-shot MinIO set-up for imgstack, run by the `minio-init` service (mc image) after MinIO is
# healthy. Idempotent: every step converges to the same state, so re-running it (every
# `docker compose up`) is safe and repairs drift.
#
#   buckets   `images` (originals) and `images-derived` (results), both private (no anonymous access)
#   account   Thumbor's own access key holding only the `imgstack-thumbor` policy
#             (thumbor-policy.json: read `images`, read/write/delete `images-derived`, nothing else)
#   events    on `images` only: put (s3:ObjectCreated:*) and delete (s3:ObjectRemoved:*) go to the
#             webhook target THUMBOR, which the minio service defines through its
#             MINIO_NOTIFY_WEBHOOK_*_THUMBOR environment (endpoint, token, persistent queue dir).
#             `images-derived` gets no subscription: Thumbor's own writes must not loop back.
set -eu

MINIO_URL=${MINIO_URL:-http://minio:9000}
: "${MINIO_ROOT_USER:?MINIO_ROOT_USER is required}"
: "${MINIO_ROOT_PASSWORD:?MINIO_ROOT_PASSWORD is required}"
: "${THUMBOR_S3_ACCESS_KEY:?THUMBOR_S3_ACCESS_KEY is required}"
: "${THUMBOR_S3_SECRET_KEY:?THUMBOR_S3_SECRET_KEY is required}"
: "${MINIO_SITE_REGION:?MINIO_SITE_REGION is required (the region in the webhook ARN)}"
POLICY_FILE=${POLICY_FILE:-/init/thumbor-policy.json}
MC_CONFIG_DIR=${MC_CONFIG_DIR:-/tmp/.mc}

ALIAS=imgstack
ORIGINALS=images
DERIVED=images-derived
POLICY=imgstack-thumbor
# Target ID as written in the env names (MINIO_NOTIFY_WEBHOOK_ENABLE_THUMBOR): MinIO keeps its case.
WEBHOOK_ARN="arn:minio:sqs:${MINIO_SITE_REGION}:THUMBOR:webhook"
READY_TRIES=${READY_TRIES:-30}

log() { printf 'minio-init: %s\n' "$*"; }
die() { printf 'minio-init: error: %s\n' "$*" >&2; exit 1; }
mc_() { mc --config-dir "$MC_CONFIG_DIR" --no-color "$@"; }

[ "$THUMBOR_S3_ACCESS_KEY" != "$MINIO_ROOT_USER" ] \
    || die "THUMBOR_S3_ACCESS_KEY must differ from MINIO_ROOT_USER: Thumbor must not hold root"
[ "${#THUMBOR_S3_ACCESS_KEY}" -ge 3 ] || die "THUMBOR_S3_ACCESS_KEY needs at least 3 characters"
[ "${#THUMBOR_S3_SECRET_KEY}" -ge 8 ] || die "THUMBOR_S3_SECRET_KEY needs at least 8 characters"
[ -r "$POLICY_FILE" ] || die "policy file $POLICY_FILE not readable"

# --- connect (MinIO is healthy by depends_on; still retry briefly: healthy != IAM loaded) ----
tries=0
until mc_ alias set "$ALIAS" "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null 2>&1 \
    && mc_ admin info "$ALIAS" >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge "$READY_TRIES" ]; then
        # one last time with its error visible
        mc_ alias set "$ALIAS" "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
        mc_ admin info "$ALIAS" >/dev/null
        die "MinIO at $MINIO_URL did not become ready"
    fi
    sleep 2
done
log "connected to $MINIO_URL"

# --- buckets, both private ---------------------------------------------------------------------
for bucket in "$ORIGINALS" "$DERIVED"; do
    mc_ mb --ignore-existing "$ALIAS/$bucket" >/dev/null
    mc_ anonymous set none "$ALIAS/$bucket" >/dev/null
    log "bucket $bucket: present, private"
done

# --- least-privilege policy and Thumbor's account ----------------------------------------------
# `policy create` replaces a policy of the same name, `user add` resets an existing user's secret:
# both converge.
mc_ admin policy create "$ALIAS" "$POLICY" "$POLICY_FILE" >/dev/null
mc_ admin user add "$ALIAS" "$THUMBOR_S3_ACCESS_KEY" "$THUMBOR_S3_SECRET_KEY" >/dev/null
mc_ admin user enable "$ALIAS" "$THUMBOR_S3_ACCESS_KEY" >/dev/null
if ! out=$(mc_ admin policy attach "$ALIAS" "$POLICY" --user "$THUMBOR_S3_ACCESS_KEY" 2>&1); then
    case "$out" in
        *"already in effect"*) ;;
        *) die "attaching $POLICY: $out" ;;
    esac
fi
log "account $THUMBOR_S3_ACCESS_KEY: policy $POLICY"

# --- events: originals only --------------------------------------------------------------------
if ! out=$(mc_ event add "$ALIAS/$ORIGINALS" "$WEBHOOK_ARN" --event put,delete --ignore-existing 2>&1); then
    die "subscribing $ORIGINALS to $WEBHOOK_ARN: $out
(is MINIO_NOTIFY_WEBHOOK_ENABLE_THUMBOR=on set on the minio service, with MINIO_SITE_REGION=$MINIO_SITE_REGION?)"
fi
log "events put,delete on $ORIGINALS -> $WEBHOOK_ARN"
log "done"
