#!/usr/bin/env bash
# Times `make book` on a fresh clone of this repository: cold (venv + installs + runs + site) and
# warm (nothing changed: runs reused, site rebuilt). Usage: benchmarks/book_build.sh [PROFILE]
# Also reports each chapter's wall time (its provenance) and the cold build's CPU seconds (user +
# system, all processes): divided by the cores, the least wall time any scheduling of this work could
# take on this machine.
set -euo pipefail
profile=${1:-default}
src=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
dir=$(mktemp -d)
export FAIRBOOK_CACHE="$dir/cache"   # cold: the generators are trained again, not read from ~/.cache
git clone -q "$src" "$dir/fairbook"
cd "$dir/fairbook"
t0=$(date +%s.%N)
/usr/bin/time -f "%U %S" -o "$dir/cold.cpu" make book PROFILE="$profile" >"$dir/cold.log" 2>&1
t1=$(date +%s.%N)
make book PROFILE="$profile" >"$dir/warm.log" 2>&1; t2=$(date +%s.%N)
grep -q "reusing finished run" "$dir/warm.log"
.venv/bin/python - "$profile" "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" "$dir" <<'PY'
import json, os, sys
from pathlib import Path
profile, cold, warm, d = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4])
user, system = map(float, (d / "cold.cpu").read_text().split()[-2:])
chapters = {p.parent.parent.name: json.loads(p.read_text())["wall_time_s"]
            for p in Path("runs").glob(f"*/{profile}-*/provenance.json")}
print(json.dumps({"profile": profile, "make_book_cold_s": round(cold, 1), "make_book_warm_s": round(warm, 1),
                  "chapters_wall_s": {k: round(v, 1) for k, v in sorted(chapters.items())},
                  "cold_cpu_s": round(user + system, 1), "cores": os.cpu_count(),
                  "cold_cpu_s_per_core": round((user + system) / os.cpu_count(), 1), "clone": str(d / "fairbook")}))
PY
