/*
 * time_ns_victim MODE MS: CLOCK_MONOTONIC and CLOCK_BOOTTIME across a dump and restore.
 *
 * Just before READY it reads both clocks through the vDSO (clock_gettime) and through
 * the raw system call. After the go file it reads them again, both ways, and checks:
 *   - the vDSO agrees with the system call (a syscall read before and one after bracket
 *     the vDSO read, within 100 ms): the vDSO data the restored process sees belongs to
 *     its time namespace;
 *   - CLOCK_BOOTTIME - CLOCK_MONOTONIC (the time the machine was suspended) has not
 *     changed by more than 100 ms: both clocks were carried over the same way;
 *   - MODE "continue": neither clock (nor CLOCK_MONOTONIC_COARSE) moved back, and none
 *     moved forward by more than MS milliseconds (restore --time-ns: they go on from
 *     their values at dump, however long the image waited);
 *     MODE "jump": CLOCK_MONOTONIC moved forward by at least MS milliseconds (a plain
 *     restore: the clocks are the machine's, and the time the image waited shows).
 */
#include "victim.h"

#include <sys/syscall.h>

static int64_t vdso_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t sys_ns(clockid_t c)
{
	struct timespec ts;
	syscall(SYS_clock_gettime, c, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void check_vdso(clockid_t c, const char *name)
{
	int64_t before = sys_ns(c), v = vdso_ns(c), after = sys_ns(c);
	V_CHECK(before <= v + 1000000 && v <= after + 1000000 && after - before < 100000000,
		"%s: vDSO %lld ns is not between the system calls %lld and %lld", name, (long long)v,
		(long long)before, (long long)after);
}

int main(int argc, char **argv)
{
	if (argc != 3 || (strcmp(argv[1], "continue") != 0 && strcmp(argv[1], "jump") != 0))
		v_die("usage: time_ns_victim continue|jump MS");
	int continues = strcmp(argv[1], "continue") == 0;
	int64_t ms = atoll(argv[2]) * 1000000;

	int64_t mono0 = vdso_ns(CLOCK_MONOTONIC), boot0 = vdso_ns(CLOCK_BOOTTIME);
	int64_t coarse0 = vdso_ns(CLOCK_MONOTONIC_COARSE);
	int64_t smono0 = sys_ns(CLOCK_MONOTONIC), sboot0 = sys_ns(CLOCK_BOOTTIME);
	v_ready();
	v_wait_go();
	int64_t mono1 = vdso_ns(CLOCK_MONOTONIC), boot1 = vdso_ns(CLOCK_BOOTTIME);
	int64_t coarse1 = vdso_ns(CLOCK_MONOTONIC_COARSE);
	int64_t smono1 = sys_ns(CLOCK_MONOTONIC), sboot1 = sys_ns(CLOCK_BOOTTIME);

	check_vdso(CLOCK_MONOTONIC, "CLOCK_MONOTONIC");
	check_vdso(CLOCK_BOOTTIME, "CLOCK_BOOTTIME");
	int64_t suspended0 = boot0 - mono0, suspended1 = boot1 - mono1;
	V_CHECK(llabs(suspended1 - suspended0) < 100000000,
		"BOOTTIME - MONOTONIC was %lld ns, is %lld ns", (long long)suspended0, (long long)suspended1);

	struct {
		const char *name;
		int64_t before, after;
	} moves[] = {
		{ "CLOCK_MONOTONIC (vDSO)", mono0, mono1 },
		{ "CLOCK_BOOTTIME (vDSO)", boot0, boot1 },
		{ "CLOCK_MONOTONIC_COARSE (vDSO)", coarse0, coarse1 },
		{ "CLOCK_MONOTONIC (syscall)", smono0, smono1 },
		{ "CLOCK_BOOTTIME (syscall)", sboot0, sboot1 },
	};
	for (unsigned i = 0; i < sizeof(moves) / sizeof(moves[0]); i++) {
		int64_t d = moves[i].after - moves[i].before;
		v_print("%s moved %lld ms\n", moves[i].name, (long long)(d / 1000000));
		if (continues) {
			V_CHECK(d >= -5000000, "%s went back by %lld ms", moves[i].name, (long long)(-d / 1000000));
			V_CHECK(d <= ms, "%s jumped by %lld ms (more than %lld)", moves[i].name, (long long)(d / 1000000),
				(long long)(ms / 1000000));
		} else if (i == 0) {
			V_CHECK(d >= ms, "%s moved only %lld ms, expected at least %lld", moves[i].name,
				(long long)(d / 1000000), (long long)(ms / 1000000));
		}
	}
	v_finish();
}
