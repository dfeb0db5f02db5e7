#!/usr/bin/env bash
# Builds every Lambda for arm64 (provided.al2023) with cargo-lambda, installed from PyPI with
# the ziglang linker into .venv-lambda. Takes minutes: not part of every CI run.
#
#   scripts/build-lambdas.sh        # -> target/lambda/<binary>/bootstrap, sizes printed
#
# `sam build` (BuildMethod: rust-cargolambda) runs the same cargo-lambda for each function.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-lambda
if [ ! -x "$VENV/bin/cargo-lambda" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet "cargo-lambda>=1.9,<2" ziglang
fi
export PATH="$PWD/$VENV/bin:$PATH"
rustup target add aarch64-unknown-linux-gnu >/dev/null
cargo lambda build --release --arm64 \
  -p auth -p workspaces -p projects -p labels -p comments -p realtime
printf '\n%-14s %12s %12s\n' binary "bytes" "zip bytes"
for dir in target/lambda/*/; do
  bin=$(basename "$dir")
  size=$(stat -c %s "$dir/bootstrap")
  zipped=$(python3 -c "import io,zipfile,sys; b=io.BytesIO(); z=zipfile.ZipFile(b,'w',zipfile.ZIP_DEFLATED); z.write(sys.argv[1],'bootstrap'); z.close(); print(len(b.getvalue()))" "$dir/bootstrap")
  printf '%-14s %12s %12s\n' "$bin" "$size" "$zipped"
done
