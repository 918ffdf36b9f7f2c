/*
 * deleted_victim [linked]: regular files unlinked while open or mapped come back as
 * unlinked files with their contents, size, mode, flags, offsets and sharing.
 *
 * In $STASIS_TMP:
 *   fd 5  gone.txt, O_RDWR, 10000 bytes, offset 1234, mode 0604, then unlinked;
 *   fd 6  the same file opened O_WRONLY|O_APPEND before the unlink (own description);
 *   fd 7  dup of fd 5;
 *   fd 8  an O_TMPFILE file (never had a name), 5000 bytes, offset 77;
 *   fd 9  sparse.dat: 3 GiB, with 1 MiB of data at 0, at 1.5 GiB and at the very end,
 *         unlinked (the image must hold the data, not 3 GiB);
 *   fd 10 replaced.txt, unlinked, then a new replaced.txt is made with other contents
 *         (restore must re-create the deleted one under another name and leave the new
 *         file alone);
 *   mapped.dat: 4 pages mapped MAP_SHARED and MAP_PRIVATE, the fd closed, then unlinked;
 *   page 1 written through the shared mapping after the unlink, page 0 of the private one
 *   written (a private copy).
 * After go it checks the links ("PATH (deleted)"), nlink 0, sizes, modes, contents,
 * offsets, flags, sharing (kcmp, writes through one fd seen through another, writes
 * through the shared mapping seen by a second mapping of the same file made now from
 * /proc/self/map_files), the holes of the sparse file (SEEK_DATA, st_blocks), and that the
 * directory holds only replaced.txt (no leftovers).
 *
 * `linked`: gone.txt also has a second name (a hard link) when it is unlinked; stasis
 * refuses that without --link-remap, and with it keeps the two one file: the victim
 * checks that fd 5 is still the file named other-name.txt (inode, nlink 1, contents,
 * offset) and that no link_remap name is left. `dirgone`: gone.txt is in a subdirectory
 * removed after it (refused); the victim checks it is unharmed.
 */
#include "victim.h"

#include <dirent.h>
#include <linux/kcmp.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define PG 4096
#define MIB (1024L * 1024)
#define GIB (1024L * MIB)
#define SPARSE (3 * GIB)

static unsigned char pat(long i, int salt)
{
	return (unsigned char)((i * 31) ^ (i >> 11) ^ salt);
}

static unsigned char big[MIB];
static char path[4300], gone[4300], sparse[4200], replaced[4200], mapped[4200];

static void fill(int fd, long off, long len, int salt)
{
	for (long done = 0; done < len;) {
		long n = len - done < MIB ? len - done : MIB;
		for (long i = 0; i < n; i++)
			big[i] = pat(off + done + i, salt);
		if (pwrite(fd, big, (size_t)n, off + done) != n)
			v_die("pwrite %ld: %s", off + done, strerror(errno));
		done += n;
	}
}

static int holds(int fd, long off, long len, int salt)
{
	for (long done = 0; done < len;) {
		long n = len - done < MIB ? len - done : MIB;
		if (pread(fd, big, (size_t)n, off + done) != n)
			return 0;
		for (long i = 0; i < n; i++)
			if (big[i] != pat(off + done + i, salt))
				return 0;
		done += n;
	}
	return 1;
}

static void check_link(int fd, const char *prefix, const char *suffix)
{
	char p[64], buf[4300];
	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(p, buf, sizeof(buf) - 1);
	buf[n < 0 ? 0 : n] = 0;
	size_t lp = strlen(prefix), ls = strlen(suffix), lb = strlen(buf);
	if (lb < lp + ls || strncmp(buf, prefix, lp) != 0 || strcmp(buf + lb - ls, suffix) != 0)
		v_fail("fd %d links to '%s', expected '%s...%s'", fd, buf, prefix, suffix);
}

static int kcmp_file(int a, int b)
{
	pid_t me = getpid();
	return (int)syscall(SYS_kcmp, me, me, KCMP_FILE, a, b);
}

static void place(int fd, int want)
{
	if (fd < 0 || dup2(fd, want) != want)
		v_die("fd %d: %s", want, strerror(errno));
	close(fd);
}

int main(int argc, char **argv)
{
	int linked = argc > 1 && strcmp(argv[1], "linked") == 0;
	int dirgone = argc > 1 && strcmp(argv[1], "dirgone") == 0;
	const char *dir = v_tmp();
	snprintf(gone, sizeof(gone), "%s/gone.txt", dir);
	if (dirgone) {
		snprintf(path, sizeof(path), "%s/sub", dir);
		snprintf(gone, sizeof(gone), "%s/sub/gone.txt", dir);
		if (mkdir(path, 0700) != 0)
			v_die("mkdir: %s", strerror(errno));
	}
	snprintf(sparse, sizeof(sparse), "%s/sparse.dat", dir);
	snprintf(replaced, sizeof(replaced), "%s/replaced.txt", dir);
	snprintf(mapped, sizeof(mapped), "%s/mapped.dat", dir);

	place(open(gone, O_RDWR | O_CREAT | O_EXCL, 0604), 5);
	if (fchown(5, 1234, 5678) != 0)
		v_die("fchown: %s", strerror(errno));
	fchmod(5, 0604);
	fill(5, 0, 10000, 1);
	lseek(5, 1234, SEEK_SET);
	place(open(gone, O_WRONLY | O_APPEND), 6);
	if (dup2(5, 7) != 7)
		v_die("dup2");
	if (linked) {
		snprintf(path, sizeof(path), "%s/other-name.txt", dir);
		if (link(gone, path) != 0)
			v_die("link: %s", strerror(errno));
	}
	unlink(gone);
	if (dirgone && rmdir(path) != 0)
		v_die("rmdir: %s", strerror(errno));
	if (linked || dirgone) {
		v_ready();
		v_wait_go();
		if (!holds(5, 0, 10000, 1) || lseek(5, 0, SEEK_CUR) != 1234)
			v_fail("gone.txt changed");
		struct stat a, b;
		if (linked && (fstat(5, &a) || stat(path, &b) || a.st_ino != b.st_ino || a.st_nlink != 1))
			v_fail("fd 5 is no longer the file named %s (nlink %lu)", path, (unsigned long)a.st_nlink);
		if (linked)
			check_link(5, gone, " (deleted)");
		DIR *ld = opendir(dir);
		struct dirent *le;
		while (ld && (le = readdir(ld)))
			if (strncmp(le->d_name, "link_remap", 10) == 0)
				v_fail("left over: %s", le->d_name);
		if (ld)
			closedir(ld);
		if (linked)
			unlink(path);
		v_finish();
	}

	place(open(dir, O_TMPFILE | O_RDWR, 0640), 8);
	fill(8, 0, 5000, 2);
	lseek(8, 77, SEEK_SET);

	place(open(sparse, O_RDWR | O_CREAT | O_EXCL, 0600), 9);
	if (ftruncate(9, SPARSE) != 0)
		v_die("ftruncate: %s", strerror(errno));
	fill(9, 0, MIB, 3);
	fill(9, SPARSE / 2, MIB, 3);
	fill(9, SPARSE - MIB, MIB, 3);
	unlink(sparse);

	place(open(replaced, O_RDWR | O_CREAT | O_EXCL, 0600), 10);
	fill(10, 0, 3000, 4);
	unlink(replaced);
	int nf = open(replaced, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (nf < 0 || write(nf, "the new one", 11) != 11)
		v_die("new replaced.txt");
	close(nf);

	int mf = open(mapped, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (mf < 0)
		v_die("mapped.dat");
	fill(mf, 0, 4 * PG, 5);
	unsigned char *sh = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, mf, 0);
	unsigned char *pr = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, mf, 0);
	if (sh == MAP_FAILED || pr == MAP_FAILED)
		v_die("mmap");
	close(mf);
	unlink(mapped);
	memcpy(sh + PG, "after unlink", 12);
	memcpy(pr, "private", 7);

	v_ready();
	v_wait_go();

	struct stat st5, st6, st8, st9, st10;
	if (fstat(5, &st5) || fstat(6, &st6) || fstat(8, &st8) || fstat(9, &st9) || fstat(10, &st10))
		v_die("fstat: %s", strerror(errno));
	check_link(5, gone, " (deleted)");
	check_link(6, gone, " (deleted)");
	char tmpfile_prefix[4300];
	snprintf(tmpfile_prefix, sizeof(tmpfile_prefix), "%s/", dir);
	check_link(8, tmpfile_prefix, " (deleted)");
	check_link(9, sparse, " (deleted)");
	check_link(10, tmpfile_prefix, " (deleted)");
	if (st5.st_nlink || st8.st_nlink || st9.st_nlink || st10.st_nlink)
		v_fail("nlink %lu %lu %lu %lu", (unsigned long)st5.st_nlink, (unsigned long)st8.st_nlink,
		       (unsigned long)st9.st_nlink, (unsigned long)st10.st_nlink);
	if (st5.st_uid != 1234 || st5.st_gid != 5678)
		v_fail("gone.txt: owner %u:%u", (unsigned)st5.st_uid, (unsigned)st5.st_gid);
	if (st5.st_size != 10000 || (st5.st_mode & 07777) != 0604 || st5.st_ino != st6.st_ino)
		v_fail("gone.txt: size %ld mode %o, fd 6 same inode %d", (long)st5.st_size,
		       st5.st_mode & 07777, st5.st_ino == st6.st_ino);
	if (!holds(5, 0, 10000, 1))
		v_fail("gone.txt contents differ");
	if (lseek(5, 0, SEEK_CUR) != 1234 || lseek(7, 0, SEEK_CUR) != 1234 || lseek(8, 0, SEEK_CUR) != 77)
		v_fail("offsets %ld %ld %ld", (long)lseek(5, 0, SEEK_CUR), (long)lseek(7, 0, SEEK_CUR),
		       (long)lseek(8, 0, SEEK_CUR));
	if ((fcntl(5, F_GETFL) & O_ACCMODE) != O_RDWR ||
	    (fcntl(6, F_GETFL) & (O_ACCMODE | O_APPEND)) != (O_WRONLY | O_APPEND))
		v_fail("flags %#x %#x", fcntl(5, F_GETFL), fcntl(6, F_GETFL));
	if (kcmp_file(5, 7) != 0 || kcmp_file(5, 6) == 0)
		v_fail("sharing: 5/7 %d 5/6 %d", kcmp_file(5, 7), kcmp_file(5, 6));
	if (write(6, "tail", 4) != 4 || fstat(5, &st5) || st5.st_size != 10004)
		v_fail("an append through fd 6 is not seen through fd 5 (size %ld)", (long)st5.st_size);
	if (st8.st_size != 5000 || (st8.st_mode & 07777) != 0640 || !holds(8, 0, 5000, 2))
		v_fail("O_TMPFILE file: size %ld mode %o or contents differ", (long)st8.st_size,
		       st8.st_mode & 07777);
	if (st9.st_size != SPARSE)
		v_fail("sparse.dat size %ld", (long)st9.st_size);
	if (!holds(9, 0, MIB, 3) || !holds(9, SPARSE / 2, MIB, 3) || !holds(9, SPARSE - MIB, MIB, 3))
		v_fail("sparse.dat data differs");
	if (pread(9, big, PG, GIB) != PG || big[0] || memcmp(big, big + 1, PG - 1))
		v_fail("sparse.dat holds data at 1 GiB");
	if (lseek(9, MIB, SEEK_DATA) != SPARSE / 2 || lseek(9, 0, SEEK_HOLE) != MIB)
		v_fail("sparse.dat holes: SEEK_DATA from 1 MiB %ld, SEEK_HOLE %ld",
		       (long)lseek(9, MIB, SEEK_DATA), (long)lseek(9, 0, SEEK_HOLE));
	if (st9.st_blocks * 512L > 64 * MIB)
		v_fail("sparse.dat takes %ld bytes on disk", (long)st9.st_blocks * 512L);
	if (st10.st_size != 3000 || !holds(10, 0, 3000, 4))
		v_fail("the deleted replaced.txt differs");
	char buf[64] = {0};
	int nr = open(replaced, O_RDONLY);
	if (nr < 0 || read(nr, buf, sizeof(buf) - 1) != 11 || strcmp(buf, "the new one"))
		v_fail("the new replaced.txt holds '%s'", buf);
	close(nr);

	if (memcmp(sh + PG, "after unlink", 12) != 0 || memcmp(pr, "private", 7) != 0)
		v_fail("mappings of mapped.dat lost their writes");
	if (memcmp(pr + PG, "after unlink", 12) != 0)
		v_fail("the private mapping's untouched page does not follow the file");
	if (sh[0] != pat(0, 5) || sh[3 * PG + 5] != pat(3 * PG + 5, 5))
		v_fail("mapped.dat contents differ");
	char mf_path[128];
	snprintf(mf_path, sizeof(mf_path), "/proc/self/map_files/%lx-%lx", (unsigned long)sh,
		 (unsigned long)(sh + 4 * PG));
	int again = open(mf_path, O_RDWR);
	if (again < 0) {
		v_fail("open %s: %s", mf_path, strerror(errno));
	} else {
		unsigned char *sh2 = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, again, 0);
		if (sh2 == MAP_FAILED)
			v_die("mmap again");
		sh2[2 * PG] = 0x42;
		if (sh[2 * PG] != 0x42 || pr[2 * PG] != 0x42)
			v_fail("the mappings of mapped.dat are not one file");
		munmap(sh2, 4 * PG);
		close(again);
	}
	char maps[65536];
	snprintf(path, sizeof(path), "%s (deleted)", mapped);
	if (v_read_file("/proc/self/maps", maps, sizeof(maps)) < 0 || !strstr(maps, path))
		v_fail("maps do not show %s", path);

	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "replaced.txt"))
			v_fail("left over in the directory: %s", e->d_name);
	}
	if (d)
		closedir(d);
	v_finish();
}
