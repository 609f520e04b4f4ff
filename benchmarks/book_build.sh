#!/usr/bin/env bash
# Times `make book` on a fresh clone of this repository: cold (venv + installs + runs + site) and
# warm (nothing changed: runs reused, site rebuilt). Usage: benchmarks/book_build.sh [PROFILE]
set -euo pipefail
profile=${1:-default}
src=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
dir=$(mktemp -d)
export FAIRBOOK_CACHE="$dir/cache"   # cold: the generators are trained again, not read from ~/.cache
git clone -q "$src" "$dir/fairbook"
cd "$dir/fairbook"
t0=$(date +%s.%N); make book PROFILE="$profile" >"$dir/cold.log" 2>&1; t1=$(date +%s.%N)
make book PROFILE="$profile" >"$dir/warm.log" 2>&1; t2=$(date +%s.%N)
grep -q "reusing finished run" "$dir/warm.log"
printf '{"profile": "%s", "make_book_cold_s": %.1f, "make_book_warm_s": %.1f, "clone": "%s"}\n' \
  "$profile" "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" "$dir/fairbook"
