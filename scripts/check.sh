#!/usr/bin/env bash
# check.sh - hygiene checks for the C server: banned functions (unbounded
# string functions and locale/overflow traps), as in curl's banned list.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
banned='\b(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol|atof|strtok|tmpnam|mktemp)\s*\('
if grep -nE "$banned" server/src -r --include='*.c' --include='*.h'; then
  echo "check: banned functions above (use snprintf, strtol, strtok_r, buf_*)"
  status=1
fi
# a secret variable passed as an argument to a log or error call
if grep -rnE '(log_[a-z]+|log_kv|fprintf|api_fail)\(.*,\s*[a-z_>.-]*(api_key|master_key|password|pw)\s*[,)]' \
    server/src --include='*.c'; then
  echo "check: a secret may reach a log or an error"
  status=1
fi
[ $status = 0 ] && echo "check: ok"
exit $status
