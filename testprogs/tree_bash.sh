# tree_bash.sh: a bash script with background jobs and `wait` survives dump, kill and
# restore. Run with bash (not sourced, no job control).
#
# Three background jobs are started before READY:
#   job 1: a subshell that polls for a release file, then exits 3;
#   job 2: a subshell that polls for the release file, then kills itself with SIGTERM;
#   job 3: `sleep 3` (an external program, restored mid-sleep).
# After the go file the script checks that jobs 1 and 2 still exist and are its
# children (/proc/PID/stat) and that `jobs -p` still lists them, creates the release
# file, then `wait`s for each job and checks the statuses: 3, 143 (128+SIGTERM) and 0;
# a last `wait` with no argument must find nothing left. Every loop is bounded, so
# nothing runs on forever.

set -u
go=${STASIS_GO:?STASIS_GO is not set}
tmp=${STASIS_TMP:?STASIS_TMP is not set}

release=$tmp/release

# wait_for FILE: polls for FILE for at most 120 s.
wait_for() {
	local i
	for ((i = 0; i < 2400; i++)); do
		[ -e "$1" ] && return 0
		sleep 0.05
	done
	return 1
}

(
	wait_for "$release" || exit 100
	exit 3
) &
job1=$!
(
	wait_for "$release" || exit 100
	kill -TERM "$BASHPID"
	sleep 5
	exit 101
) &
job2=$!
sleep 3 &
job3=$!
echo "$$ $job1 $job2 $job3" >"$tmp/pids"
echo "jobs: $job1 $job2 $job3 (shell $$)"
echo READY

fails=0
fail() {
	echo "FAIL: $*"
	fails=$((fails + 1))
}

wait_for "$go" || {
	echo "FAIL: no go file within 120 s"
	exit 1
}

ppid_of() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	set -- $stat
	echo "$2"
}

for j in "$job1" "$job2"; do
	p=$(ppid_of "$j") || {
		fail "job $j does not exist after the go file"
		continue
	}
	[ "$p" = "$$" ] || fail "job $j has parent $p, expected the shell ($$)"
done
listed=" $(jobs -p | tr '\n' ' ') "
for j in "$job1" "$job2"; do
	case "$listed" in
	*" $j "*) ;;
	*) fail "jobs -p ($listed) does not list job $j" ;;
	esac
done

: >"$release"
wait "$job1"
s1=$?
wait "$job2"
s2=$?
wait "$job3"
s3=$?
[ "$s1" -eq 3 ] || fail "job 1 ($job1) exited with $s1, expected 3"
[ "$s2" -eq 143 ] || fail "job 2 ($job2) exited with $s2, expected 143 (SIGTERM)"
[ "$s3" -eq 0 ] || fail "job 3 (sleep, $job3) exited with $s3, expected 0"
wait
left=$(jobs -p)
[ -z "$left" ] || fail "jobs left after wait: $left"

if [ "$fails" -eq 0 ]; then
	echo PASS
	exit 0
fi
echo "FAIL: $fails check(s) failed"
exit 1
