/*
 * tree_cow: private memory shared copy-on-write between a parent, its child and its
 * grandchild stays shared after dump and restore: same contents, and the same memory
 * use (the proportional set size of the region, from /proc/self/smaps, within 5%).
 *
 * The parent maps 256 MiB of private anonymous memory and gives every page a pattern of
 * its own (P), then forks the child, which forks the grandchild. Then, before READY:
 *   - the parent rewrites pages [A, A+256) (it gets its own copies; the others keep P);
 *   - the child rewrites pages [B, B+256) with its own pattern and discards pages
 *     [D, D+256) with MADV_DONTNEED (they read as zero and are not present);
 *   - the grandchild rewrites pages [C, C+256).
 * Each records the Rss and Pss of the region once all three are done (two pipes make
 * the phases; both are closed before READY).
 *
 * After the go file each process checks every page of the region against what it must
 * hold (its own writes, the parent's pattern where it shares it, zero where discarded),
 * that the discarded pages are still not present (pagemap), and that Rss and Pss are
 * within 5% of what they were (without sharing the Pss would double or triple). The
 * grandchild and child exit 0 when all their checks passed (and only once every process
 * has measured: SIGUSR1 is passed down the tree); each parent reaps its child (with a
 * deadline) and the root prints PASS.
 */
#include "victim.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGES 65536L /* 256 MiB */
#define PG 4096L
#define RUN 256L
#define A 1000L  /* the parent's own pages after fork */
#define B 20000L /* the child's */
#define C 40000L /* the grandchild's */
#define D 60000L /* discarded by the child */
#define LIMIT_S 30

enum role { PARENT, CHILD, GRANDCHILD };
static enum role me = PARENT;
static const char *names[] = { "parent", "child", "grandchild" };
static unsigned char *region;
static long rss_before, pss_before;

static uint64_t word(long page, long k, int tag)
{
	return ((uint64_t)page * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)k << 3) ^ ((uint64_t)tag << 56) ^ 0x5a5a;
}

static void fill(long first, long n, int tag)
{
	for (long p = first; p < first + n; p++) {
		uint64_t *w = (uint64_t *)(region + p * PG);
		for (long k = 0; k < PG / 8; k++)
			w[k] = word(p, k, tag);
	}
}

/* What page p must hold for this process: a tag, or -1 for zero. */
static int expected_tag(long p)
{
	int in_a = p >= A && p < A + RUN, in_b = p >= B && p < B + RUN;
	int in_c = p >= C && p < C + RUN, in_d = p >= D && p < D + RUN;
	switch (me) {
	case PARENT:
		return in_a ? 1 : 0;
	case CHILD:
		return in_b ? 2 : in_d ? -1 : 0;
	case GRANDCHILD:
		/* Forked before the child's changes: the child's writes are not its own. */
		return in_c ? 3 : 0;
	}
	return 0;
}

static void check_contents(void)
{
	long bad = 0, first_bad = -1;
	for (long p = 0; p < PAGES; p++) {
		int tag = expected_tag(p);
		const uint64_t *w = (const uint64_t *)(region + p * PG);
		for (long k = 0; k < PG / 8; k++) {
			uint64_t want = tag < 0 ? 0 : word(p, k, tag);
			if (w[k] != want) {
				if (first_bad < 0)
					first_bad = p;
				bad++;
				break;
			}
		}
	}
	V_CHECK(bad == 0, "%s: %ld page(s) hold the wrong data, the first is page %ld", names[me], bad,
		first_bad);
}

static void check_discarded(void)
{
	if (me != CHILD)
		return;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		v_fail("child: open pagemap: %s", strerror(errno));
		return;
	}
	static uint64_t entries[RUN];
	off_t off = (off_t)(((uintptr_t)region / PG + D) * 8);
	ssize_t n = pread(fd, entries, sizeof(entries), off);
	close(fd);
	if (n != (ssize_t)sizeof(entries)) {
		v_fail("child: read pagemap: %zd", n);
		return;
	}
	long present = 0;
	for (long i = 0; i < RUN; i++)
		present += (entries[i] >> 63) & 1;
	V_CHECK(present == 0, "child: %ld of the %ld discarded pages are present again", present, RUN);
}

/* Rss and Pss (kB) of the region, from /proc/self/smaps. */
static void region_usage(long *rss, long *pss)
{
	static char text[1 << 20];
	*rss = *pss = -1;
	if (v_read_file("/proc/self/smaps", text, sizeof(text)) < 0)
		v_die("%s: read smaps: %s", names[me], strerror(errno));
	char head[32];
	snprintf(head, sizeof(head), "%lx-", (unsigned long)(uintptr_t)region);
	char *p = text;
	while (p && *p && strncmp(p, head, strlen(head)) != 0) {
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	if (!p || !*p)
		v_die("%s: the region is not in smaps", names[me]);
	char val[64];
	if (v_status_field(p, "Rss", val, sizeof(val)) == 0)
		*rss = atol(val);
	if (v_status_field(p, "Pss", val, sizeof(val)) == 0)
		*pss = atol(val);
}

static void check_usage(void)
{
	long rss, pss;
	region_usage(&rss, &pss);
	long rd = rss > rss_before ? rss - rss_before : rss_before - rss;
	long pd = pss > pss_before ? pss - pss_before : pss_before - pss;
	V_CHECK(rd * 20 <= rss_before, "%s: Rss of the region is %ld kB, was %ld kB", names[me], rss,
		rss_before);
	V_CHECK(pd * 20 <= pss_before,
		"%s: Pss of the region is %ld kB, was %ld kB (memory no longer shared?)", names[me], pss,
		pss_before);
}

/* Reads until every writer has closed the pipe. */
static void wait_eof(int fd)
{
	char c;
	while (read(fd, &c, 1) != 0) {
		if (errno != EINTR)
			break;
	}
}

/* Waits for child pid (with a deadline) and checks it exited 0. */
static void reap(pid_t pid)
{
	for (int i = 0; i < LIMIT_S * 100; i++) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			V_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: %s %d ended with status %#x",
				names[me], names[me + 1], pid, st);
			return;
		}
		if (r < 0) {
			v_fail("%s: waitpid %d: %s", names[me], pid, strerror(errno));
			return;
		}
		v_sleep_ms(10);
	}
	v_fail("%s: %s %d did not end in %d s", names[me], names[me + 1], pid, LIMIT_S);
	kill(pid, SIGKILL);
}

int main(void)
{
	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, NULL);
	region = mmap(NULL, PAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED)
		v_die("mmap: %s", strerror(errno));
	fill(0, PAGES, 0);
	int done[2], measured[2];
	if (pipe(done) || pipe(measured))
		v_die("pipe: %s", strerror(errno));
	pid_t child = fork();
	if (child < 0)
		v_die("fork: %s", strerror(errno));
	pid_t grandchild = -1;
	if (child == 0) {
		me = CHILD;
		grandchild = fork();
		if (grandchild < 0)
			v_die("child: fork: %s", strerror(errno));
		if (grandchild == 0)
			me = GRANDCHILD;
	}
	switch (me) {
	case PARENT:
		fill(A, RUN, 1);
		break;
	case CHILD:
		fill(B, RUN, 2);
		if (madvise(region + D * PG, RUN * PG, MADV_DONTNEED))
			v_die("child: madvise: %s", strerror(errno));
		break;
	case GRANDCHILD:
		fill(C, RUN, 3);
		break;
	}
	close(done[1]);
	wait_eof(done[0]);
	close(done[0]);
	region_usage(&rss_before, &pss_before);
	close(measured[1]);
	if (me == PARENT) {
		wait_eof(measured[0]);
		v_ready();
	}
	close(measured[0]);

	v_wait_go();
	/* Before the contents: reading a discarded page maps the zero page there. */
	check_discarded();
	check_contents();
	check_usage();
	/*
	 * No one ends before all have measured (an exit changes the others' Pss): each
	 * waits for its parent's SIGUSR1, then passes it on to its child and reaps it.
	 */
	if (me != PARENT) {
		struct timespec limit = { LIMIT_S, 0 };
		if (sigtimedwait(&usr1, NULL, &limit) != SIGUSR1)
			v_fail("%s: no SIGUSR1 from the parent: %s", names[me], strerror(errno));
	}
	pid_t next = me == PARENT ? child : me == CHILD ? grandchild : -1;
	if (next > 0) {
		kill(next, SIGUSR1);
		reap(next);
	}
	if (me != PARENT)
		_exit(v_failures ? 1 : 0);
	v_finish();
}
