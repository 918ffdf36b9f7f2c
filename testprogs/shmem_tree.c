/*
 * shmem_tree: MAP_SHARED|MAP_ANONYMOUS memory (16 MiB) whose pages were written by a
 * child that has ended since: no process maps those pages in any more, but the memory
 * object holds them (as a server's shared buffers written by short-lived workers).
 *
 * Before READY: the parent writes the first MiB; child A writes 4-8 MiB and exits (the
 * parent reaps it); child B writes 8-9 MiB and stays. 12-16 MiB is never written.
 * After the go file, the parent and B each check every written page (its pattern, from
 * whoever wrote it) and that the never-written quarter reads as zero; then they check the
 * memory is still one object: the parent writes a mark B waits for, and B answers with a
 * mark of its own.
 */
#include "victim.h"

#include <sys/mman.h>
#include <sys/wait.h>

#define MIB (1UL << 20)
#define SIZE (16 * MIB)
#define PAGE 4096UL

static unsigned char pattern(size_t page, int tag)
{
	return (unsigned char)(page * 7 + (size_t)tag);
}

static void fill(unsigned char *m, size_t from, size_t to, int tag)
{
	for (size_t off = from; off < to; off += PAGE)
		memset(m + off, pattern(off / PAGE, tag), PAGE);
}

/* Checks [from, to): every byte of each page is its pattern (or zero, tag < 0). */
static void check(const unsigned char *m, size_t from, size_t to, int tag, const char *who, const char *what)
{
	for (size_t off = from; off < to; off += PAGE) {
		unsigned char want = tag < 0 ? 0 : pattern(off / PAGE, tag);
		for (size_t i = 0; i < PAGE; i++) {
			if (m[off + i] != want) {
				v_fail("%s: %s: byte %zu is %u, expected %u", who, what, off + i, m[off + i], want);
				return;
			}
		}
	}
}

static void check_all(const unsigned char *m, const char *who)
{
	check(m, 0, MIB, 'P', who, "the parent's pages");
	check(m, 4 * MIB, 8 * MIB, 'A', who, "the pages of the child that ended");
	check(m, 8 * MIB, 9 * MIB, 'B', who, "the pages of the child that stays");
	check(m, 12 * MIB, SIZE - PAGE, -1, who, "the never-written pages");
}

/* Waits up to 10 s for m[at] to become v. */
static int wait_mark(volatile unsigned char *m, size_t at, unsigned char v)
{
	for (int i = 0; i < 1000; i++) {
		if (m[at] == v)
			return 1;
		v_sleep_ms(10);
	}
	return 0;
}

int main(void)
{
	unsigned char *m = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		v_die("mmap: %s", strerror(errno));
	fill(m, 0, MIB, 'P');
	pid_t a = fork();
	if (a < 0)
		v_die("fork: %s", strerror(errno));
	if (a == 0) {
		fill(m, 4 * MIB, 8 * MIB, 'A');
		_exit(0);
	}
	int st = 0;
	if (waitpid(a, &st, 0) != a || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		v_die("child A: 0x%x", st);
	/* The parent keeps no page table entry for A's pages: they live in the object only. */
	pid_t b = fork();
	if (b < 0)
		v_die("fork: %s", strerror(errno));
	if (b == 0) {
		fill(m, 8 * MIB, 9 * MIB, 'B');
		m[SIZE - 3] = 1; /* B is ready */
		v_wait_go();
		check_all(m, "child B");
		if (!wait_mark(m, SIZE - 1, 1))
			v_fail("child B: the parent's mark never arrived: the memory is not shared");
		m[SIZE - 2] = 2;
		_exit(v_failures ? 1 : 0);
	}
	if (!wait_mark(m, SIZE - 3, 1))
		v_die("child B did not start");
	v_ready();
	v_wait_go();
	check_all(m, "parent");
	m[SIZE - 1] = 1;
	V_CHECK(wait_mark(m, SIZE - 2, 2), "parent: child B's mark never arrived: the memory is not shared");
	V_CHECK(waitpid(b, &st, 0) == b && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child B ended with 0x%x", st);
	v_finish();
}
