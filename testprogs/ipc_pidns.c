/*
 * ipc_pidns: a process for restores into new PID namespaces (several copies of one
 * image at once, while the original runs too). It reports through its exit status, as
 * every copy shares the image's output file.
 *
 * With the argument "setsid" it first becomes a session and process group leader (so the
 * image holds no process group or session from outside the tree).
 *
 * Before READY it records its pid and fills 8 MiB with a pattern. After the go file:
 * getpid(), gettid() and /proc/self (readlink) give the recorded pid; the memory holds
 * its pattern; it can still fork a child, which gets another pid and whose exit status
 * (7) waitpid returns; then it works for about 300 ms (so that the copies run at the same
 * time) and checks its memory again.
 */
#include "victim.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define WORDS (1 << 20) /* 8 MiB */

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "setsid") == 0 && setsid() < 0)
		v_die("setsid: %s", strerror(errno));
	pid_t me = getpid();
	uint64_t *mem = mmap(NULL, WORDS * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		v_die("mmap: %s", strerror(errno));
	for (size_t i = 0; i < WORDS; i++)
		mem[i] = v_mix(i ^ 0xabc);

	v_ready();
	v_wait_go();

	V_CHECK(getpid() == me, "getpid() is %d, expected %d", (int)getpid(), (int)me);
	V_CHECK(syscall(SYS_gettid) == me, "gettid() is %ld, expected %d", (long)syscall(SYS_gettid), (int)me);
	char link[64] = { 0 };
	ssize_t n = readlink("/proc/self", link, sizeof(link) - 1);
	V_CHECK(n > 0 && atoi(link) == me, "/proc/self is '%s' (%zd), expected %d", n > 0 ? link : strerror(errno), n,
		(int)me);
	for (size_t i = 0; i < WORDS; i++)
		if (mem[i] != v_mix(i ^ 0xabc)) {
			v_fail("memory differs at word %zu", i);
			break;
		}
	pid_t c = fork();
	if (c == 0)
		_exit(7);
	if (c < 0) {
		v_fail("fork after restore: %s", strerror(errno));
	} else {
		int st = 0;
		pid_t w = waitpid(c, &st, 0);
		V_CHECK(c != me && w == c && WIFEXITED(st) && WEXITSTATUS(st) == 7,
			"child %d: waitpid %d, status 0x%x, expected exit 7", (int)c, (int)w, st);
	}
	/* work for a while, touching the memory */
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	uint64_t round = 0;
	do {
		for (size_t i = 0; i < WORDS; i += 512)
			mem[i] = v_mix(mem[i] + round);
		round++;
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < 300);
	for (size_t i = 0; i < WORDS; i++)
		if (i % 512 != 0 && mem[i] != v_mix(i ^ 0xabc)) {
			v_fail("memory differs at word %zu after the work", i);
			break;
		}
	V_CHECK(getpid() == me, "getpid() changed to %d", (int)getpid());
	v_finish();
}
