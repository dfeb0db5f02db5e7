#!/usr/bin/env bash
# The full test suite on a fresh machine: installs what the tests need (a Python venv with
# moto[server]), starts moto on free 127.0.0.1 ports (DynamoDB/SQS, and SNS apart), checks formatting and lints, runs
# `cargo test --workspace` with the DynamoDB-backed tests required to run, stops moto.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -p auth         # extra arguments go to `cargo test`
#   SKIP_LINT=1 scripts/test.sh     # skip fmt/clippy
#   SKIP_INFRA=1 scripts/test.sh    # skip cfn-lint / sam validate
#   SKIP_SCHEMATHESIS=1 scripts/test.sh  # skip the schemathesis run against the shim
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv-test"
PYTHON=${PYTHON:-python3}
MOTO_SPEC="moto[server]>=5.1,<6"
SCHEMATHESIS_SPEC="schemathesis==4.32.5"

step() { printf '\n==> %s\n' "$*"; }

if [ ! -x "$VENV/bin/moto_server" ]; then
  step "creating $VENV with moto[server]"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet "$MOTO_SPEC"
fi

free_port() {
  "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

mkdir -p target
CHILD_PIDS=()
cleanup() {
  for pid in "${CHILD_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
# start_moto NAME: a moto server on a free port, logging to target/moto-NAME.log; sets PORT.
start_moto() {
  PORT=$(free_port)
  step "starting moto ($1) on 127.0.0.1:$PORT"
  "$VENV/bin/python" scripts/moto_server.py 127.0.0.1 "$PORT" >"target/moto-$1.log" 2>&1 &
  local pid=$!
  CHILD_PIDS+=("$pid")
  for _ in $(seq 1 100); do
    if "$VENV/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/moto-api/')" 2>/dev/null; then
      return
    fi
    kill -0 "$pid" 2>/dev/null || { cat "target/moto-$1.log"; echo "moto failed to start" >&2; exit 1; }
    sleep 0.2
  done
}

start_moto dynamodb
export MOMENTUM_TEST_DYNAMODB_ENDPOINT="http://127.0.0.1:$PORT"
# SNS apart: the push tests read what moto recorded through /moto-api/data.json, which dumps
# every service's state while moto_server.py's one lock holds every other request. On its
# own server that dump is a few platform endpoints, not every suite's tables.
start_moto sns
export MOMENTUM_TEST_SNS_ENDPOINT="http://127.0.0.1:$PORT"
export MOMENTUM_REQUIRE_DYNAMODB=1
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true

# Infrastructure checks, offline, each tool in its own venv (aws-sam-cli pins its own boto3).
if [ "${SKIP_INFRA:-0}" != "1" ]; then
  if [ ! -x "$ROOT/.venv-cfn/bin/cfn-lint" ]; then
    step "creating .venv-cfn with cfn-lint"
    "$PYTHON" -m venv "$ROOT/.venv-cfn"
    "$ROOT/.venv-cfn/bin/pip" install --quiet "cfn-lint>=1,<2"
  fi
  if [ ! -x "$ROOT/.venv-sam/bin/sam" ]; then
    step "creating .venv-sam with aws-sam-cli"
    "$PYTHON" -m venv "$ROOT/.venv-sam"
    "$ROOT/.venv-sam/bin/pip" install --quiet "aws-sam-cli>=1.120,<2"
  fi
  step "cfn-lint, sam validate, sam validate --lint (infra/template.yaml)"
  (
    export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
    export SAM_CLI_TELEMETRY=0
    "$ROOT/.venv-cfn/bin/cfn-lint" infra/template.yaml
    "$ROOT/.venv-sam/bin/sam" validate --template infra/template.yaml
    "$ROOT/.venv-sam/bin/sam" validate --lint --template infra/template.yaml
  )
fi

if [ "${SKIP_LINT:-0}" != "1" ]; then
  step "cargo fmt --check"
  cargo fmt --all -- --check
  step "cargo clippy --all-targets -- -D warnings"
  cargo clippy --workspace --all-targets --quiet -- -D warnings
  # Test support (conformance suite, fault injectors) is for dev-dependencies only: no
  # deployed binary's crate may build momentum-shared with it (docs/conventions.md, Tests).
  step "no test-support feature in the Lambda and shim builds (cargo tree)"
  for crate in auth workspaces projects labels comments realtime local; do
    if cargo tree --quiet -p "$crate" -e features -e normal,build | grep -q '"test-support"'; then
      echo "$crate builds momentum-shared with test-support" >&2
      exit 1
    fi
  done
  # The Lambdas run on DynamoDB only: the embedded store (SQLite) stays out of their builds
  # (momentum-shared's `embedded` feature; docs/performance.md, zip sizes).
  step "no SQLite in the Lambda builds (cargo tree)"
  for crate in auth workspaces projects labels comments realtime; do
    if cargo tree --quiet -p "$crate" -e normal | grep -q "rusqlite"; then
      echo "$crate links the embedded store (rusqlite)" >&2
      exit 1
    fi
  done
  # One TLS stack in what is deployed: rustls 0.23 on ring through hyper 1 (Cargo.toml,
  # docs/architecture.md). The SDK's default features would bring back aws-lc and the legacy
  # hyper 0.14 + rustls 0.21 client.
  step "one TLS stack in the Lambda and shim builds: no aws-lc, rustls 0.21 or hyper 0.14 (cargo tree)"
  for crate in auth workspaces projects labels comments realtime local; do
    if cargo tree --quiet -p "$crate" -e normal | grep -E "aws-lc|rustls v0\.(1|2[01])\.|hyper v0\."; then
      echo "$crate links a second TLS/crypto stack (above)" >&2
      exit 1
    fi
  done
fi

step "cargo test --workspace (DynamoDB tests against moto at $MOMENTUM_TEST_DYNAMODB_ENDPOINT)"
cargo test --workspace "$@"

# Schemathesis against the shim's /openapi.json: every operation, all checks, examples,
# coverage, fuzzing and stateful phases, a fixed seed and a bounded number of cases.
if [ "${SKIP_SCHEMATHESIS:-0}" != "1" ] && [ $# -eq 0 ]; then
  if [ ! -x "$ROOT/.venv-schemathesis/bin/schemathesis" ]; then
    step "creating .venv-schemathesis with $SCHEMATHESIS_SPEC"
    "$PYTHON" -m venv "$ROOT/.venv-schemathesis"
    "$ROOT/.venv-schemathesis/bin/pip" install --quiet "$SCHEMATHESIS_SPEC"
  fi
  step "schemathesis against the local shim (memory store)"
  cargo build --quiet -p local
  SHIM_PORT=$(free_port)
  # The fuzzer logs in and registers thousands of times from one address: the auth limits
  # stay on but wide (tests/tests/limits.rs covers the limiter itself).
  # Webhooks may point at loopback (and only there: scripts/schemathesis_hooks.py).
  MOMENTUM_RATE_LIMIT_AUTH_IP=5000,5000 MOMENTUM_RATE_LIMIT_AUTH_USER=5000,5000 \
    MOMENTUM_WEBHOOKS_ALLOW_PRIVATE=1 \
    "${CARGO_TARGET_DIR:-$ROOT/target}/debug/local" --store memory --port "$SHIM_PORT" \
    >target/schemathesis-shim.log 2>&1 &
  SHIM_PID=$!
  CHILD_PIDS+=("$SHIM_PID")
  for _ in $(seq 1 100); do
    "$VENV/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$SHIM_PORT/health')" 2>/dev/null && break
    kill -0 "$SHIM_PID" 2>/dev/null || { cat target/schemathesis-shim.log; echo "the shim failed to start" >&2; exit 1; }
    sleep 0.2
  done
  "$ROOT/.venv-schemathesis/bin/python" scripts/schemathesis_run.py \
    "http://127.0.0.1:$SHIM_PORT" target/schemathesis
fi
