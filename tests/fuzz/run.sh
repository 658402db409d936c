#!/usr/bin/env bash
# run.sh FUZZER SEEDS ARTIFACTS [SECONDS]: runs one libFuzzer target for SECONDS (default
# $FUZZ_SECONDS, else the target's $FUZZ_DEFAULT_SECONDS from meson, else 20) on a temporary copy of the seed corpus SEEDS, so the seeds stay as
# they are; with KEEP_CORPUS=DIR, on DIR instead (seeded from SEEDS, kept afterwards). The
# dictionary tests/fuzz/NAME.dict is used when it exists, and FUZZ_ARGS adds libFuzzer flags
# (split at spaces; the fuzzer runs in ARTIFACTS, where -jobs puts its logs). Prints one summary
# line; a crash, leak, sanitizer report, timeout or out-of-memory exits 1 with the report, and
# the input that caused it is kept as ARTIFACTS/crash-* (leak-*, timeout-*, oom-*). Replay it:
#   FUZZER ARTIFACTS/crash-...
# The whole log of the last run is ARTIFACTS/NAME.log.
set -uo pipefail

fuzzer=$(readlink -f "$1") seeds=$(readlink -f "$2") artifacts=$(readlink -m "$3")
seconds=${4:-${FUZZ_SECONDS:-${FUZZ_DEFAULT_SECONDS:-20}}}
here=$(dirname "$(readlink -f "$0")")
name=$(basename "$fuzzer")
if [[ ! $seconds =~ ^[0-9]+$ || $seconds -eq 0 ]]; then
  echo "$name: seconds must be a positive whole number, got '$seconds'"
  exit 2
fi
mkdir -p "$artifacts" || exit 1
log=$artifacts/$name.log

if [[ -n ${KEEP_CORPUS:-} ]]; then
  corpus=$(readlink -m "$KEEP_CORPUS")
  mkdir -p "$corpus" || exit 1
else
  corpus=$(mktemp -d "${TMPDIR:-/tmp}/$name.XXXXXX") || exit 1
  trap 'rm -rf "$corpus"' EXIT
fi
cp -n -- "$seeds"/* "$corpus"/ || exit 1

# Reports must end the run (UBSan only prints by default); leaks that DPDK's own libraries keep
# until exit are not ours (tests/lsan.supp). Options already set by the caller come last and win.
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$here/../lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

args=(-max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
      -artifact_prefix="$artifacts/")
[[ -f $here/${name#fuzz_}.dict ]] && args+=(-dict="$here/${name#fuzz_}.dict")
read -ra extra <<<"${FUZZ_ARGS:-}"
args+=("${extra[@]}")
seeds_n=$(find "$seeds" -maxdepth 1 -type f | wc -l)

# libFuzzer stops itself after max_total_time; the outer limit only catches a hang outside an
# input (start-up, exit), which -timeout does not cover.
(cd "$artifacts" && exec timeout -k 10 $((seconds + 120)) "$fuzzer" "${args[@]}" "$corpus") >"$log" 2>&1
rc=$?

final_stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
runs=$(final_stat number_of_executed_units)
if [[ $rc -eq 0 ]]; then
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$done_line")
  echo "$name: ok, ${runs:-?} runs in ${seconds} s, $(final_stat average_exec_per_sec) exec/s," \
       "cov ${cov:-?} ft ${ft:-?}, corpus ${corp:-?} (from $seeds_n seeds), peak rss $(final_stat peak_rss_mb) MB," \
       "$(grep -m1 -o 'Seed: [0-9]*' "$log")"
  exit 0
fi

if [[ $rc -eq 124 || $rc -eq 137 ]]; then
  echo "$name: FAILED: still running $((seconds + 120)) s after start (a hang outside an input)"
else
  echo "$name: FAILED (exit status $rc) after ${runs:-?} runs; the report:"
  # The report starts at libFuzzer's or a sanitizer's first line; the lines before it are progress.
  start=$(grep -n -m1 -E '==[0-9]+==|runtime error:|check failed' "$log" | cut -d: -f1)
  sed -n "${start:-1},\$p" "$log" | grep -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|INITED)' | head -80
fi
artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
[[ -n $artifact ]] && echo "$name: the input is $artifact; reproduce with: $fuzzer $artifact"
echo "$name: whole log: $log"
exit 1
