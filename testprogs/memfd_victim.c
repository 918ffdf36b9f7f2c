/*
 * memfd_victim: memfd files come back as the same objects, with their names, contents
 * (holes included), size, mode, seals and descriptor flags and offsets.
 *
 *   fd 5  memfd "stasis-memfd-a" (MFD_ALLOW_SEALING): 64 KiB of pattern at 0, a hole,
 *         64 KiB at 1 MiB, size 2 MiB + 123, mode 0640, seals SHRINK|GROW, offset 777;
 *   fd 6  dup of fd 5 (one description);
 *   fd 7  /proc/self/fd/5 opened again O_RDONLY (same file, own description), offset 100;
 *   fd 8  memfd "b with space" (MFD_CLOEXEC, no sealing: seals = F_SEAL_SEAL), "hello";
 *   a MAP_SHARED mapping of A (page 3 written through it) and a MAP_PRIVATE one (page 0
 *   written: a private copy; page 1 untouched: still follows the file);
 *   memfd "only-mapped": 3 pages, MAP_SHARED, its fd closed (the mapping is the only
 *   reference);
 *   fd 10 memfd "future": a writable MAP_SHARED mapping made, then sealed with
 *   F_SEAL_FUTURE_WRITE|F_SEAL_SEAL (the mapping still writes; nothing new may).
 * A child is forked with all of it (one description for fd 5, the same mappings).
 *
 * After the go file the child writes through its fd 5 and its mapping of "only-mapped"
 * and exits; the parent reaps it, then checks everything above, that the child's writes
 * reach it (one object across processes), that a write through the shared mapping shows
 * in pread and a pwrite in both mappings (private page 0 excepted), and SEEK_DATA/HOLE.
 *
 * `memfd_victim hugetlb` also holds an MFD_HUGETLB memfd at fd 9, which stasis refuses;
 * the victim must then go on unharmed.
 */
#include "victim.h"

#include <linux/kcmp.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define PG 4096
#define MIB (1024 * 1024)
#define SIZE_A (2 * MIB + 123)
#define PAT 65536

static unsigned char pat(long i)
{
	return (unsigned char)((i * 13) ^ (i >> 9) ^ 0xa5);
}

static int kcmp_file(pid_t a, pid_t b, int fa, int fb)
{
	return (int)syscall(SYS_kcmp, a, b, KCMP_FILE, fa, fb);
}

static void check_link(int fd, const char *want)
{
	char p[64], buf[256];
	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(p, buf, sizeof(buf) - 1);
	buf[n < 0 ? 0 : n] = 0;
	if (strcmp(buf, want) != 0)
		v_fail("fd %d links to '%s', expected '%s'", fd, buf, want);
}

static int region_is(int fd, long off, long len, int zero)
{
	static unsigned char buf[PAT];
	if (pread(fd, buf, (size_t)len, off) != len)
		return 0;
	for (long i = 0; i < len; i++)
		if (buf[i] != (zero ? 0 : pat(off + i)))
			return 0;
	return 1;
}

int main(int argc, char **argv)
{
	static unsigned char buf[PAT];
	int a = memfd_create("stasis-memfd-a", MFD_ALLOW_SEALING);
	if (a < 0 || dup2(a, 5) != 5)
		v_die("memfd a: %s", strerror(errno));
	close(a);
	for (long i = 0; i < PAT; i++)
		buf[i] = pat(i);
	if (pwrite(5, buf, PAT, 0) != PAT)
		v_die("pwrite a");
	for (long i = 0; i < PAT; i++)
		buf[i] = pat(MIB + i);
	if (pwrite(5, buf, PAT, MIB) != PAT || ftruncate(5, SIZE_A) != 0 || fchmod(5, 0640) != 0)
		v_die("fill a: %s", strerror(errno));
	if (fcntl(5, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0)
		v_die("seal a: %s", strerror(errno));
	lseek(5, 777, SEEK_SET);
	if (dup2(5, 6) != 6)
		v_die("dup");
	int r = open("/proc/self/fd/5", O_RDONLY);
	if (r < 0 || dup2(r, 7) != 7)
		v_die("reopen: %s", strerror(errno));
	close(r);
	lseek(7, 100, SEEK_SET);
	int b = memfd_create("b with space", MFD_CLOEXEC);
	if (b < 0 || dup3(b, 8, O_CLOEXEC) != 8 || pwrite(8, "hello", 5, 0) != 5)
		v_die("memfd b: %s", strerror(errno));
	close(b);

	unsigned char *shared = mmap(NULL, 2 * MIB, PROT_READ | PROT_WRITE, MAP_SHARED, 5, 0);
	unsigned char *priv = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, 5, 0);
	if (shared == MAP_FAILED || priv == MAP_FAILED)
		v_die("mmap a: %s", strerror(errno));
	memcpy(shared + 3 * PG, "shared-write", 12);
	memcpy(priv, "private-copy", 12);
	volatile unsigned char touch = priv[PG];
	(void)touch;

	int c = memfd_create("only-mapped", 0);
	if (c < 0 || ftruncate(c, 3 * PG) != 0 || pwrite(c, "only in memory", 14, PG) != 14)
		v_die("memfd c: %s", strerror(errno));
	unsigned char *cmap = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, c, 0);
	if (cmap == MAP_FAILED)
		v_die("mmap c");
	close(c);

	if (argc > 1 && strcmp(argv[1], "hugetlb") == 0) {
		int h = memfd_create("huge", MFD_HUGETLB);
		if (h < 0 || dup2(h, 9) != 9)
			v_die("MFD_HUGETLB: %s", strerror(errno));
		close(h);
	}

	int fu = memfd_create("future", MFD_ALLOW_SEALING);
	if (fu < 0 || dup2(fu, 10) != 10 || ftruncate(10, PG) != 0)
		v_die("memfd future: %s", strerror(errno));
	close(fu);
	unsigned char *fmap = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, 10, 0);
	if (fmap == MAP_FAILED)
		v_die("mmap future");
	memcpy(fmap, "before", 6);
	if (fcntl(10, F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_SEAL) != 0)
		v_die("seal future: %s", strerror(errno));

	pid_t kid = fork();
	if (kid < 0)
		v_die("fork");
	if (kid == 0) {
		v_wait_go();
		int bad = kcmp_file(getpid(), getppid(), 5, 5) != 0;
		bad |= pwrite(5, "kid!", 4, 2 * MIB) != 4;
		memcpy(cmap + 2 * PG, "kid-map", 7);
		_exit(bad);
	}
	v_ready();
	v_wait_go();

	int st = 0;
	if (waitpid(kid, &st, 0) != kid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		v_fail("child: status %#x", st);
	check_link(5, "/memfd:stasis-memfd-a (deleted)");
	check_link(7, "/memfd:stasis-memfd-a (deleted)");
	check_link(8, "/memfd:b with space (deleted)");
	struct stat s5, s7, s8;
	if (fstat(5, &s5) || fstat(7, &s7) || fstat(8, &s8))
		v_die("fstat");
	if (s5.st_size != SIZE_A)
		v_fail("size of a %ld", (long)s5.st_size);
	if ((s5.st_mode & 07777) != 0640)
		v_fail("mode of a %o", s5.st_mode & 07777);
	if (s5.st_ino != s7.st_ino)
		v_fail("fd 7 is not the same file as fd 5");
	if (s8.st_size != 5)
		v_fail("size of b %ld", (long)s8.st_size);
	char h[6] = {0};
	if (pread(8, h, 5, 0) != 5 || strcmp(h, "hello"))
		v_fail("b holds '%s'", h);
	if (fcntl(5, F_GET_SEALS) != (F_SEAL_SHRINK | F_SEAL_GROW))
		v_fail("seals of a %#x", fcntl(5, F_GET_SEALS));
	if (fcntl(8, F_GET_SEALS) != F_SEAL_SEAL)
		v_fail("seals of b %#x", fcntl(8, F_GET_SEALS));
	if (ftruncate(5, 3 * MIB) == 0 || errno != EPERM)
		v_fail("a grew despite F_SEAL_GROW");
	if ((fcntl(5, F_GETFL) & O_ACCMODE) != O_RDWR || (fcntl(7, F_GETFL) & O_ACCMODE) != O_RDONLY)
		v_fail("access modes %#x %#x", fcntl(5, F_GETFL), fcntl(7, F_GETFL));
	if (fcntl(8, F_GETFD) != FD_CLOEXEC || fcntl(5, F_GETFD) != 0)
		v_fail("FD_CLOEXEC %d %d", fcntl(8, F_GETFD), fcntl(5, F_GETFD));
	if (lseek(5, 0, SEEK_CUR) != 777 || lseek(6, 0, SEEK_CUR) != 777 || lseek(7, 0, SEEK_CUR) != 100)
		v_fail("offsets %ld %ld %ld", (long)lseek(5, 0, SEEK_CUR), (long)lseek(6, 0, SEEK_CUR),
		       (long)lseek(7, 0, SEEK_CUR));
	pid_t me = getpid();
	if (kcmp_file(me, me, 5, 6) != 0 || kcmp_file(me, me, 5, 7) == 0)
		v_fail("description sharing: 5/6 %d, 5/7 %d", kcmp_file(me, me, 5, 6), kcmp_file(me, me, 5, 7));

	/* Contents: the two patterns and the hole between them (still a hole). */
	if (!region_is(5, 0, 3 * PG, 0) || !region_is(5, 4 * PG, PAT - 4 * PG, 0))
		v_fail("first pattern of a differs");
	if (memcmp(shared + 3 * PG, "shared-write", 12) != 0 || pread(5, buf, 12, 3 * PG) != 12 ||
	    memcmp(buf, "shared-write", 12) != 0)
		v_fail("write through the shared mapping lost");
	if (!region_is(5, MIB, PAT, 0))
		v_fail("second pattern of a differs");
	if (!region_is(5, PAT, PAT, 1))
		v_fail("the hole of a holds data");
	off_t d = lseek(5, PAT, SEEK_DATA);
	if (d != MIB)
		v_fail("SEEK_DATA from 64 KiB: %ld, expected %d (the hole was filled)", (long)d, MIB);
	off_t hole = lseek(5, 0, SEEK_HOLE);
	if (hole != PAT)
		v_fail("SEEK_HOLE from 0: %ld", (long)hole);
	lseek(5, 777, SEEK_SET);
	if (pread(5, buf, 4, 2 * MIB) != 4 || memcmp(buf, "kid!", 4) != 0)
		v_fail("the child's write through its fd 5 is not in the parent's file");

	/* Mappings: the same object as the descriptors. */
	memcpy(shared + 5 * PG, "after", 5);
	if (pread(5, buf, 5, 5 * PG) != 5 || memcmp(buf, "after", 5) != 0)
		v_fail("a write through the shared mapping does not reach the file");
	if (pwrite(5, "file-side", 9, PG) != 9 || memcmp(shared + PG, "file-side", 9) != 0)
		v_fail("a pwrite does not show in the shared mapping");
	if (memcmp(priv + PG, "file-side", 9) != 0)
		v_fail("the untouched private page does not follow the file");
	if (memcmp(priv, "private-copy", 12) != 0)
		v_fail("the private copy is lost");
	if (pread(5, buf, 12, 0) != 12 || memcmp(buf, "private-copy", 12) == 0)
		v_fail("the private copy leaked into the file");
	if (memcmp(cmap + PG, "only in memory", 14) != 0)
		v_fail("the fd-less memfd lost its contents");
	if (memcmp(cmap + 2 * PG, "kid-map", 7) != 0)
		v_fail("the child's write to the fd-less memfd is not seen by the parent");
	if (fcntl(10, F_GET_SEALS) != (F_SEAL_FUTURE_WRITE | F_SEAL_SEAL))
		v_fail("seals of future %#x", fcntl(10, F_GET_SEALS));
	memcpy(fmap + 6, " and after", 10);
	if (pread(10, buf, 16, 0) != 16 || memcmp(buf, "before and after", 16) != 0)
		v_fail("the writable mapping of the future-sealed memfd does not write");
	if (pwrite(10, "x", 1, 0) != -1 || errno != EPERM)
		v_fail("a pwrite to the future-sealed memfd was not refused");
	void *again = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, 10, 0);
	if (again != MAP_FAILED || errno != EPERM)
		v_fail("a new writable mapping of the future-sealed memfd was not refused");
	char maps[65536];
	if (v_read_file("/proc/self/maps", maps, sizeof(maps)) < 0 ||
	    !strstr(maps, "/memfd:only-mapped (deleted)") || !strstr(maps, "/memfd:stasis-memfd-a (deleted)"))
		v_fail("maps do not name the memfds");
	v_finish();
}
