#!/usr/bin/env bash
# The team's MLflow tracking server: runs, metrics and the Model Registry in PostgreSQL,
# artifacts (models, plots) uploaded through the server (proxied) to one destination, so
# clients need only the server's URL, no database or bucket credentials.
#
#   echo "db.example.org:5432:mlflow:mlflow:PASSWORD" >> ~/.pgpass && chmod 600 ~/.pgpass
#   MLFLOW_BACKEND_STORE_URI=postgresql+psycopg://mlflow@db.example.org:5432/mlflow \
#   MLFLOW_ARTIFACTS_DESTINATION=/srv/mlflow/artifacts \
#   scripts/mlflow_server.sh --host 0.0.0.0 --port 5000 --allowed-hosts mlflow.example.org:5000
#
# then, on every machine that runs the pipelines:
#   MLFLOW_TRACKING_URI=http://mlflow.example.org:5000 kedro run --pipelines=xception_cats
#
# Settings (environment; extra arguments go to `mlflow server` and win):
#   MLFLOW_BACKEND_STORE_URI      required, postgresql+psycopg://user@host:port/database
#                                 (+psycopg: the driver; SQLAlchemy 2.0 would pick psycopg2).
#                                 The password: in ~/.pgpass (or the file PGPASSFILE names) or
#                                 PGPASSWORD, read by PostgreSQL's client library. The URI
#                                 reaches mlflow by the environment, not the command line,
#                                 which any local user can read with `ps`.
#   MLFLOW_ARTIFACTS_DESTINATION  where the server keeps artifacts: a folder, s3://..., gs://...
#                                 (default ./mlartifacts of the working directory)
#   MLFLOW_HOST / MLFLOW_PORT     interface and port (default 127.0.0.1:5000)
#   MLFLOW_WORKERS                server worker processes (default 4)
# The server needs `pip install mlflow "psycopg[binary]"` (and boto3 / google-cloud-storage for
# a bucket). A fresh database gets MLflow's tables on first start; after upgrading MLflow,
# back the database up and run `mlflow db upgrade "$MLFLOW_BACKEND_STORE_URI"` once (with the
# password in ~/.pgpass, the URI on that command line holds none).
# See docs/scaling.md and docs/failure_modes.md.
set -euo pipefail

if [[ -z "${MLFLOW_BACKEND_STORE_URI:-}" ]]; then
    echo "MLFLOW_BACKEND_STORE_URI is not set: export it as" \
        "postgresql+psycopg://user@host:port/database (see docs/scaling.md)." >&2
    exit 2
fi
if [[ "$MLFLOW_BACKEND_STORE_URI" == postgresql+psycopg:* ]] && ! python -c "import psycopg" 2>/dev/null; then
    echo "The PostgreSQL driver is missing: pip install \"psycopg[binary]\"" >&2
    exit 2
fi

# No --backend-store-uri: mlflow reads MLFLOW_BACKEND_STORE_URI itself.
export MLFLOW_BACKEND_STORE_URI
exec mlflow server \
    --serve-artifacts \
    --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-./mlartifacts}" \
    --host "${MLFLOW_HOST:-127.0.0.1}" \
    --port "${MLFLOW_PORT:-5000}" \
    --workers "${MLFLOW_WORKERS:-4}" \
    "$@"
