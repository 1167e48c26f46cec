#!/usr/bin/env bash
# Run molecule scenarios within CI's time budget.
# All scenarios run when they fit (ENP_MOLECULE_MAX, default 5: at 1-5 min each on 2 cores, five plus
# lint, unit and integration tests keep one CI run near 40 of its 45 minutes). Otherwise: every scenario whose
# role, scenario or shared harness changed in the last ENP_CI_DIFF_DEPTH commits, plus a rotating
# slice chosen by the day of the year, so every scenario runs at least every few days. The plan is
# printed, so a CI log always says what was and was not tested.
set -uo pipefail
cd "$(dirname "$0")/.."
MAX="${ENP_MOLECULE_MAX:-5}"
DEPTH="${ENP_CI_DIFF_DEPTH:-5}"

mapfile -t all < <(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' \
                   | xargs -rn1 basename | grep -v '^shared$' | sort)
if ((${#all[@]} == 0)); then
  echo "[molecule] no scenarios found under molecule/" >&2
  exit 1
fi

selected=()
if ((${#all[@]} <= MAX)); then
  selected=("${all[@]}")
  echo "[molecule] running all ${#all[@]} scenarios: ${all[*]}"
else
  changed="$(git diff --name-only "HEAD~${DEPTH}" 2>/dev/null || git ls-files)"
  for s in "${all[@]}"; do
    if grep -qE "^(roles/$s/|molecule/$s/|molecule/shared/|roles/lab/|plugins/modules/enp_lab)" <<<"$changed"; then
      selected+=("$s")
    fi
  done
  slots=$(( MAX - ${#selected[@]} )); (( slots < 1 )) && slots=1
  day=$(( 10#$(date +%j) ))
  for ((i = 0; i < slots; i++)); do
    s="${all[$(( (day * slots + i) % ${#all[@]} ))]}"
    [[ " ${selected[*]} " == *" $s "* ]] || selected+=("$s")
  done
  skipped=()
  for s in "${all[@]}"; do [[ " ${selected[*]} " == *" $s "* ]] || skipped+=("$s"); done
  echo "[molecule] ${#all[@]} scenarios exceed the CI budget of $MAX: running changed + rotating slice: ${selected[*]}"
  echo "[molecule] NOT run this time (rotating): ${skipped[*]}"
fi

echo "[molecule] note: molecule prints \"CRITICAL 'molecule/default/molecule.yml' glob failed\" when a project has"
echo "[molecule]       no scenario named default; it only disables shared state and is harmless here."
failed=()
for s in "${selected[@]}"; do
  echo "[molecule] === $s ==="
  t0=$(date +%s)
  if molecule test -s "$s"; then
    echo "[molecule] $s passed in $(( $(date +%s) - t0 ))s"
  else
    echo "[molecule] $s FAILED after $(( $(date +%s) - t0 ))s" >&2
    failed+=("$s")
  fi
done
echo "[molecule] ${#selected[@]} scenarios run, ${#failed[@]} failed ${failed[*]}"
((${#failed[@]} == 0))
