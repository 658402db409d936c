#!/usr/bin/env bash
# sdwanctl with no daemon: exit status 1 and exactly one line on stderr naming the socket,
# because scripts and operators both read that line. Usage errors are status 2.
set -u
sdwanctl=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

check() {  # name, expected status, expected stderr, actual status
  local name=$1 want_status=$2 want_err=$3 status=$4
  local got_err
  got_err=$(cat "$tmp/err")
  if [[ $status -ne $want_status ]]; then
    echo "FAIL $name: exit status $status, want $want_status"; fail=1
  fi
  if [[ -n $want_err && $got_err != "$want_err" ]]; then
    echo "FAIL $name: stderr was: $got_err"; echo "  want: $want_err"; fail=1
  fi
  if [[ -n $want_err && $(wc -l <"$tmp/err") -ne 1 ]]; then
    echo "FAIL $name: stderr is not exactly one line"; fail=1
  fi
  if [[ -s $tmp/out ]]; then
    echo "FAIL $name: unexpected stdout: $(cat "$tmp/out")"; fail=1
  fi
}

sock=$tmp/missing/sdwand.sock
"$sdwanctl" --socket "$sock" show ports >"$tmp/out" 2>"$tmp/err"
check "missing socket" 1 \
  "sdwanctl: cannot connect to sdwand at $sock: No such file or directory (is sdwand running?)" $?

SDWAN_SOCKET=$sock "$sdwanctl" show stats --json >"$tmp/out" 2>"$tmp/err"
check "missing socket from SDWAN_SOCKET" 1 \
  "sdwanctl: cannot connect to sdwand at $sock: No such file or directory (is sdwand running?)" $?

"$sdwanctl" --socket "$sock" show sas --json >"$tmp/out" 2>"$tmp/err"
check "show sas, missing socket" 1 \
  "sdwanctl: cannot connect to sdwand at $sock: No such file or directory (is sdwand running?)" $?

"$sdwanctl" --socket "$sock" show no-such-thing >"$tmp/out" 2>"$tmp/err"
check "unknown subcommand" 2 "" $?

"$sdwanctl" --socket "$sock" show events --json >"$tmp/out" 2>"$tmp/err"
check "show events, missing socket" 1 \
  "sdwanctl: cannot connect to sdwand at $sock: No such file or directory (is sdwand running?)" $?

"$sdwanctl" --socket "$sock" show paths >"$tmp/out" 2>"$tmp/err"
check "show paths, missing socket" 1 \
  "sdwanctl: cannot connect to sdwand at $sock: No such file or directory (is sdwand running?)" $?

# watch ends at the first failed request, with the same one line.
"$sdwanctl" --socket "$sock" watch paths --interval 0.1 --count 3 >"$tmp/out" 2>"$tmp/err"
check "watch paths, missing socket" 1 \
  "sdwanctl: cannot connect to sdwand at $sock: No such file or directory (is sdwand running?)" $?

"$sdwanctl" --socket "$sock" watch paths --interval 0 >"$tmp/out" 2>"$tmp/err"
check "watch paths, interval below 0.1 s" 2 "" $?

"$sdwanctl" --socket "$sock" watch paths --count -1 >"$tmp/out" 2>"$tmp/err"
check "watch paths, negative count" 2 "" $?

"$sdwanctl" --socket "$sock" watch sas >"$tmp/out" 2>"$tmp/err"
check "watch something other than paths" 2 "" $?

"$sdwanctl" --socket "$sock" show classes --json >"$tmp/out" 2>"$tmp/err"
check "show classes, missing socket" 1 \
  "sdwanctl: cannot connect to sdwand at $sock: No such file or directory (is sdwand running?)" $?

"$sdwanctl" --socket "$sock" show flows --class voice >"$tmp/out" 2>"$tmp/err"
check "show flows --class, missing socket" 1 \
  "sdwanctl: cannot connect to sdwand at $sock: No such file or directory (is sdwand running?)" $?

"$sdwanctl" --socket "$sock" show flows --class >"$tmp/out" 2>"$tmp/err"
check "show flows, --class without a name" 2 "" $?

"$sdwanctl" --socket "$sock" explain voice --json >"$tmp/out" 2>"$tmp/err"
check "explain, missing socket" 1 \
  "sdwanctl: cannot connect to sdwand at $sock: No such file or directory (is sdwand running?)" $?

"$sdwanctl" --socket "$sock" explain >"$tmp/out" 2>"$tmp/err"
check "explain without a class" 2 "" $?

"$sdwanctl" --socket "$sock" explain voice video >"$tmp/out" 2>"$tmp/err"
check "explain, two classes" 2 "" $?

[[ $fail -eq 0 ]] && echo "ok"
exit $fail
