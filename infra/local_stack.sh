#!/usr/bin/env bash
# Local development stack: an S3 object store (SeaweedFS `weed mini`) and an MLflow
# tracking server, both on 127.0.0.1 only. Prints the variables to export, then runs
# until Ctrl-C (or SIGTERM), which stops both servers.
#
#   infra/local_stack.sh [--dir DIR] [--s3-port PORT] [--mlflow-port PORT]
#                        [--bucket NAME] [--artifacts-destination URI]
#
# SeaweedFS takes the S3 port and the three after it (master, volume, filer) and each of
# those plus 10000 (its gRPC ports). Data lives in DIR (default
# ~/.local/share/pix2pix/local_stack): MLflow keeps runs in DIR/mlflow.db and serves
# artifacts from DIR/mlartifacts; `--artifacts-destination s3://BUCKET/mlflow` keeps them
# in SeaweedFS instead.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv_bin="$here/../.venv/bin"

# Outside the working tree: `ray job submit --working-dir .` would upload it.
dir="${PIX2PIX_STACK_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/pix2pix/local_stack}"
s3_port=8333
mlflow_port=5000
bucket=pix2pix
artifacts=""
# Development credentials for the local store only; SeaweedFS takes its admin identity
# from the same standard variables the clients read.
access_key="${AWS_ACCESS_KEY_ID:-pix2pix-local}"
secret_key="${AWS_SECRET_ACCESS_KEY:-pix2pix-local-secret}"

# The comment block at the top of this file is the help text.
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

while [[ $# -gt 0 ]]; do
    if [[ "$1" == --*=* ]]; then set -- "${1%%=*}" "${1#*=}" "${@:2}"; fi
    case "$1" in
        --dir) dir="$2"; shift 2 ;;
        --s3-port) s3_port="$2"; shift 2 ;;
        --mlflow-port) mlflow_port="$2"; shift 2 ;;
        --bucket) bucket="$2"; shift 2 ;;
        --artifacts-destination) artifacts="$2"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "local_stack.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done

find_tool() {
    if [[ -x "$venv_bin/$1" ]]; then echo "$venv_bin/$1"; return; fi
    command -v "$1" || { echo "local_stack.sh: $1 not found (run make setup)" >&2; exit 2; }
}
weed="$(find_tool weed)"
mlflow="$(find_tool mlflow)"
command -v curl >/dev/null || { echo "local_stack.sh: curl not found" >&2; exit 2; }

mkdir -p "$dir/seaweedfs" "$dir/mlartifacts"
dir="$(cd "$dir" && pwd)"
artifacts="${artifacts:-$dir/mlartifacts}"
s3_url="http://127.0.0.1:$s3_port"
mlflow_url="http://127.0.0.1:$mlflow_port"

# Job control puts each server in its own process group: a Ctrl-C reaches this script
# only, and the trap below stops the servers in order, each with all its children.
set -m
pids=()

stop() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    echo "local stack stopped" >&2
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

AWS_ACCESS_KEY_ID="$access_key" AWS_SECRET_ACCESS_KEY="$secret_key" \
    "$weed" mini -dir="$dir/seaweedfs" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3.port="$s3_port" -master.port="$((s3_port + 1))" \
    -volume.port="$((s3_port + 2))" -filer.port="$((s3_port + 3))" \
    -bucket="$bucket" -admin.ui=false -webdav=false -master.telemetry=false \
    -s3.port.iceberg=0 -s3.port.lance=0 \
    >"$dir/seaweedfs.log" 2>&1 &
pids+=("$!")

# MLflow's job executor (GenAI scoring, trace archival) starts several worker processes
# that this project never uses; without it the server starts faster and stops at once.
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
    AWS_ENDPOINT_URL="$s3_url" MLFLOW_S3_ENDPOINT_URL="$s3_url" \
    AWS_ACCESS_KEY_ID="$access_key" AWS_SECRET_ACCESS_KEY="$secret_key" \
    "$mlflow" server --host 127.0.0.1 --port "$mlflow_port" --workers 1 \
    --backend-store-uri "sqlite:///$dir/mlflow.db" \
    --artifacts-destination "$artifacts" \
    >"$dir/mlflow.log" 2>&1 &
pids+=("$!")

# Wait until both answer over HTTP (S3: any HTTP status; MLflow: /health says OK).
wait_for() {
    local name="$1" url="$2" pid="$3" log="$4" deadline=$((SECONDS + 300))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "local_stack.sh: $name exited; last lines of $log:" >&2
            tail -n 20 "$log" >&2
            exit 1
        fi
        if curl -s -o /dev/null --max-time 1 "$url"; then return; fi
        sleep 0.2
    done
    echo "local_stack.sh: $name did not answer at $url within 300 s (see $log)" >&2
    exit 1
}
wait_for SeaweedFS "$s3_url" "${pids[0]}" "$dir/seaweedfs.log"
wait_for MLflow "$mlflow_url/health" "${pids[1]}" "$dir/mlflow.log"

cat <<ENV
# local stack is up (data in $dir); in another shell:
export AWS_ENDPOINT_URL=$s3_url
export AWS_ACCESS_KEY_ID=$access_key
export AWS_SECRET_ACCESS_KEY=$secret_key
export AWS_REGION=us-east-1
export MLFLOW_S3_ENDPOINT_URL=$s3_url
export MLFLOW_TRACKING_URI=$mlflow_url
# storage: --storage_path s3://$bucket/runs   MLflow UI: $mlflow_url   Ctrl-C stops both
ENV

# Stay in the foreground until a server dies or Ctrl-C arrives.
wait -n "${pids[@]}"
echo "local_stack.sh: a server exited; see $dir/*.log" >&2
exit 1
