/*
 * files_victim: the file descriptor table survives dump, kill and restore.
 *
 * Opens regular files at fixed fd numbers (read-only, write-only O_APPEND, read-write,
 * O_NONBLOCK, O_DSYNC|O_NOATIME, an offset past the end of a file, a name with a space
 * and non-ASCII letters), a dup'ed fd sharing a file description and a second
 * independent description of the same file, a directory fd read halfway with getdents,
 * O_PATH fds to a file and a directory, /dev/null, /dev/zero, /dev/urandom, with gaps
 * in the numbering and close-on-exec on some.
 *
 * Before READY it records, for every open fd: F_GETFL, F_GETFD, offset, fstat identity
 * (dev, ino, mode, rdev), the /proc/self/fd link, fdinfo flags/mnt_id/ino, and which fds
 * share a file description (kcmp). After the go file it compares all of that, checks
 * that no fd appeared or vanished, and that each fd behaves: reading continues at the
 * right place, writes append, dup'ed fds share their offset, the directory listing
 * continues where it stopped.
 */
#include "victim.h"

#include <dirent.h>
#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>

#define MAXFD 64
#define RO_SIZE (64 * 1024)
#define NDIRENT 50

struct fdrec {
	int fd;
	int fl, fdflags;
	off_t pos;
	int pos_errno;
	struct stat st;
	char link[4200];
	char fi_flags[64], fi_mnt[64], fi_ino[64];
};

static struct fdrec before[MAXFD], after[MAXFD];
static int nbefore, nafter;
static int share_before[MAXFD][MAXFD];
static char tmpdir[4200], path_ro[4300], path_app[4300], path_rw[4300], path_sync[4300],
	path_sparse[4300], path_odd[4300], path_dir[4300];
static char seen_names[NDIRENT + 2][64];
static int nseen;
static off_t app_size;

static unsigned char file_byte(size_t off)
{
	return (unsigned char)(v_mix(off / 8 + 99) >> ((off % 8) * 8));
}

/* Offset of the first non-zero byte, or -1. */
static long check_zero(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return (long)i;
	return -1;
}

static int kcmp_file(int a, int b)
{
	pid_t p = getpid();
	return (int)syscall(SYS_kcmp, p, p, KCMP_FILE, a, b);
}

/* Opens path with flags and moves the fd to number want. */
static void open_at(int want, const char *path, int flags, mode_t mode)
{
	int fd = open(path, flags, mode);
	if (fd < 0)
		v_die("open %s: %s", path, strerror(errno));
	if (fd != want) {
		int cloexec = flags & O_CLOEXEC;
		if (dup3(fd, want, cloexec) != want)
			v_die("dup3 %d: %s", want, strerror(errno));
		close(fd);
	}
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len)
		v_die("write %s: %s", path, strerror(errno));
	close(fd);
}

static void fdinfo_field(const char *text, const char *key, char *out, size_t size)
{
	if (v_status_field(text, key, out, size) != 0)
		snprintf(out, size, "-");
}

static int snapshot(struct fdrec *recs)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		v_die("opendir /proc/self/fd: %s", strerror(errno));
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		int fd = atoi(e->d_name);
		if (fd == dirfd(d))
			continue;
		if (n == MAXFD)
			v_die("too many fds");
		struct fdrec *r = &recs[n++];
		memset(r, 0, sizeof(*r));
		r->fd = fd;
	}
	closedir(d);
	/* sort by fd number */
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			if (recs[j].fd < recs[i].fd) {
				struct fdrec t = recs[i];
				recs[i] = recs[j];
				recs[j] = t;
			}
	for (int i = 0; i < n; i++) {
		struct fdrec *r = &recs[i];
		char p[64], text[1024];
		r->fl = fcntl(r->fd, F_GETFL);
		r->fdflags = fcntl(r->fd, F_GETFD);
		errno = 0;
		r->pos = lseek(r->fd, 0, SEEK_CUR);
		r->pos_errno = r->pos < 0 ? errno : 0;
		if (fstat(r->fd, &r->st) != 0)
			v_die("fstat %d: %s", r->fd, strerror(errno));
		snprintf(p, sizeof(p), "/proc/self/fd/%d", r->fd);
		ssize_t l = readlink(p, r->link, sizeof(r->link) - 1);
		r->link[l < 0 ? 0 : l] = 0;
		snprintf(p, sizeof(p), "/proc/self/fdinfo/%d", r->fd);
		if (v_read_file(p, text, sizeof(text)) < 0)
			v_die("read %s: %s", p, strerror(errno));
		fdinfo_field(text, "flags", r->fi_flags, sizeof(r->fi_flags));
		fdinfo_field(text, "mnt_id", r->fi_mnt, sizeof(r->fi_mnt));
		fdinfo_field(text, "ino", r->fi_ino, sizeof(r->fi_ino));
	}
	return n;
}

/* Reads directory entries of fd 14 (a few at a time), adding names to seen_names. */
static int read_dir_some(int fd, int max_calls, char names[][64], int *count, int cap)
{
	char buf[256]; /* small: a few entries per call */
	int calls = 0;
	for (;;) {
		if (max_calls >= 0 && calls >= max_calls)
			return 1;
		long n = syscall(SYS_getdents64, fd, buf, sizeof(buf));
		calls++;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		for (long o = 0; o < n;) {
			struct dirent64 *e = (struct dirent64 *)(buf + o);
			if (*count < cap)
				snprintf(names[(*count)++], 64, "%.63s", e->d_name);
			o += e->d_reclen;
		}
	}
}

static void setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s", v_tmp());
	static unsigned char data[RO_SIZE];
	for (size_t i = 0; i < RO_SIZE; i++)
		data[i] = file_byte(i);

	snprintf(path_ro, sizeof(path_ro), "%s/ro.dat", tmpdir);
	write_file(path_ro, data, RO_SIZE);
	snprintf(path_app, sizeof(path_app), "%s/append.log", tmpdir);
	write_file(path_app, "line one\n", 9);
	snprintf(path_rw, sizeof(path_rw), "%s/rw.dat", tmpdir);
	write_file(path_rw, data, 8192);
	snprintf(path_sync, sizeof(path_sync), "%s/sync.dat", tmpdir);
	write_file(path_sync, data, 100);
	snprintf(path_sparse, sizeof(path_sparse), "%s/sparse.dat", tmpdir);
	write_file(path_sparse, "0123456789", 10);
	snprintf(path_odd, sizeof(path_odd), "%s/name with spaces é.dat", tmpdir);
	write_file(path_odd, data, 4096);
	snprintf(path_dir, sizeof(path_dir), "%s/dir", tmpdir);
	if (mkdir(path_dir, 0755) != 0 && errno != EEXIST)
		v_die("mkdir: %s", strerror(errno));
	for (int i = 0; i < NDIRENT; i++) {
		char p[4400];
		snprintf(p, sizeof(p), "%s/entry-%02d-%s", path_dir, i, "xxxxxxxxxxxxxxxx");
		write_file(p, "", 0);
	}

	/* fd 10: read-only, offset 1234; fd 200 is a dup (shared offset) */
	open_at(10, path_ro, O_RDONLY, 0);
	static char buf[2000];
	if (read(10, buf, 1234) != 1234)
		v_die("read ro");
	if (dup2(10, 200) != 200)
		v_die("dup2: %s", strerror(errno));
	/* fd 1000: the same file, an independent description at 777 */
	open_at(1000, path_ro, O_RDONLY | O_CLOEXEC, 0);
	lseek(1000, 777, SEEK_SET);
	/* fd 11: write-only, append */
	open_at(11, path_app, O_WRONLY | O_APPEND, 0);
	if (write(11, "line two\n", 9) != 9 || write(11, "line three\n", 11) != 11)
		v_die("append");
	app_size = lseek(11, 0, SEEK_CUR);
	/* fd 12: read-write at 500 */
	open_at(12, path_rw, O_RDWR, 0);
	lseek(12, 500, SEEK_SET);
	/* fd 13: non-blocking, close-on-exec, at 4096 */
	open_at(13, path_ro, O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0);
	lseek(13, 4096, SEEK_SET);
	/* fd 14: a directory read partway */
	open_at(14, path_dir, O_RDONLY | O_DIRECTORY, 0);
	if (read_dir_some(14, 3, seen_names, &nseen, NDIRENT + 2) != 1)
		v_die("getdents: could not read the directory partway");
	/* fd 15: O_PATH to a file; fd 20: O_PATH to a directory */
	open_at(15, path_ro, O_PATH, 0);
	open_at(20, tmpdir, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
	/* character devices */
	open_at(16, "/dev/null", O_RDWR, 0);
	open_at(17, "/dev/zero", O_RDONLY, 0);
	open_at(18, "/dev/urandom", O_RDONLY | O_CLOEXEC, 0);
	/* fd 19: O_DSYNC | O_NOATIME, at 10 */
	open_at(19, path_sync, O_RDWR | O_DSYNC | O_NOATIME, 0);
	lseek(19, 10, SEEK_SET);
	/* fd 22: offset beyond the end of the file */
	open_at(22, path_sparse, O_RDWR, 0);
	lseek(22, 1 << 20, SEEK_SET);
	/* fd 23: an odd name, at 100 */
	open_at(23, path_odd, O_RDONLY, 0);
	lseek(23, 100, SEEK_SET);
}

static void record(void)
{
	nbefore = snapshot(before);
	for (int i = 0; i < nbefore; i++)
		for (int j = 0; j < nbefore; j++)
			share_before[i][j] = kcmp_file(before[i].fd, before[j].fd) == 0;
}

static const struct fdrec *find(const struct fdrec *recs, int n, int fd)
{
	for (int i = 0; i < n; i++)
		if (recs[i].fd == fd)
			return &recs[i];
	return NULL;
}

static void compare_table(void)
{
	nafter = snapshot(after);
	for (int i = 0; i < nbefore; i++)
		if (!find(after, nafter, before[i].fd))
			v_fail("fd %d (%s) is missing after restore", before[i].fd, before[i].link);
	for (int i = 0; i < nafter; i++)
		if (!find(before, nbefore, after[i].fd))
			v_fail("fd %d (%s) appeared after restore", after[i].fd, after[i].link);
	for (int i = 0; i < nbefore; i++) {
		const struct fdrec *b = &before[i], *a = find(after, nafter, b->fd);
		if (!a)
			continue;
		int fd = b->fd;
		off_t want_pos = b->pos;
		if (fd == 1 || fd == 2)
			want_pos += 6; /* "READY\n" */
		V_CHECK(a->fl == b->fl, "fd %d (%s): F_GETFL %#o, was %#o", fd, b->link, a->fl, b->fl);
		V_CHECK(a->fdflags == b->fdflags, "fd %d (%s): F_GETFD %d, was %d", fd, b->link,
			a->fdflags, b->fdflags);
		V_CHECK(a->pos == want_pos && a->pos_errno == b->pos_errno,
			"fd %d (%s): offset %lld (errno %d), expected %lld (errno %d)", fd, b->link,
			(long long)a->pos, a->pos_errno, (long long)want_pos, b->pos_errno);
		V_CHECK(a->st.st_dev == b->st.st_dev && a->st.st_ino == b->st.st_ino,
			"fd %d (%s): dev/ino %lu/%lu, was %lu/%lu", fd, b->link,
			(unsigned long)a->st.st_dev, (unsigned long)a->st.st_ino,
			(unsigned long)b->st.st_dev, (unsigned long)b->st.st_ino);
		V_CHECK(a->st.st_mode == b->st.st_mode && a->st.st_rdev == b->st.st_rdev,
			"fd %d (%s): mode %o rdev %u:%u, was %o %u:%u", fd, b->link, a->st.st_mode,
			major(a->st.st_rdev), minor(a->st.st_rdev), b->st.st_mode,
			major(b->st.st_rdev), minor(b->st.st_rdev));
		V_CHECK(strcmp(a->link, b->link) == 0, "fd %d points to \"%s\", was \"%s\"", fd,
			a->link, b->link);
		V_CHECK(strcmp(a->fi_flags, b->fi_flags) == 0, "fd %d (%s): fdinfo flags %s, was %s",
			fd, b->link, a->fi_flags, b->fi_flags);
		V_CHECK(strcmp(a->fi_mnt, b->fi_mnt) == 0, "fd %d (%s): fdinfo mnt_id %s, was %s", fd,
			b->link, a->fi_mnt, b->fi_mnt);
		V_CHECK(strcmp(a->fi_ino, b->fi_ino) == 0, "fd %d (%s): fdinfo ino %s, was %s", fd,
			b->link, a->fi_ino, b->fi_ino);
	}
	for (int i = 0; i < nbefore; i++)
		for (int j = i + 1; j < nbefore; j++) {
			if (!find(after, nafter, before[i].fd) || !find(after, nafter, before[j].fd))
				continue;
			int now = kcmp_file(before[i].fd, before[j].fd) == 0;
			if (now != share_before[i][j])
				v_fail("fds %d and %d %s share a file description, but %s before", before[i].fd,
				       before[j].fd, now ? "now" : "no longer", now ? "did not" : "did");
		}
}

static void check_bytes(int fd, const char *what, size_t off, size_t len)
{
	static unsigned char buf[4096];
	ssize_t n = read(fd, buf, len);
	if (n != (ssize_t)len) {
		v_fail("%s: read returned %zd (%s), expected %zu bytes", what, n,
		       n < 0 ? strerror(errno) : "short", len);
		return;
	}
	for (size_t i = 0; i < len; i++)
		if (buf[i] != file_byte(off + i)) {
			v_fail("%s: byte %zu differs: reading does not continue at offset %zu", what, i, off);
			return;
		}
}

static void check_behaviour(void)
{
	/* fd 10 reads on at 1234; fd 200 shares the offset; fd 1000 does not */
	check_bytes(10, "fd 10", 1234, 100);
	off_t p200 = lseek(200, 0, SEEK_CUR);
	V_CHECK(p200 == 1334, "fd 200 (dup of fd 10) is at %lld after reading fd 10, expected 1334",
		(long long)p200);
	check_bytes(200, "fd 200", 1334, 10);
	check_bytes(1000, "fd 1000", 777, 10);
	V_CHECK(lseek(10, 0, SEEK_CUR) == 1344, "fd 10 did not move with its dup fd 200");

	/* fd 11 appends */
	struct stat st;
	fstat(11, &st);
	V_CHECK(st.st_size == app_size, "append.log has %lld bytes, expected %lld",
		(long long)st.st_size, (long long)app_size);
	lseek(11, 0, SEEK_SET); /* O_APPEND: writes still go to the end */
	if (write(11, "line four\n", 10) != 10)
		v_fail("write fd 11: %s", strerror(errno));
	fstat(11, &st);
	V_CHECK(st.st_size == app_size + 10, "append.log has %lld bytes after an O_APPEND write, expected %lld",
		(long long)st.st_size, (long long)app_size + 10);
	char tail[16] = "";
	int rfd = open(path_app, O_RDONLY | O_CLOEXEC);
	if (rfd < 0 || pread(rfd, tail, 10, app_size) != 10 || memcmp(tail, "line four\n", 10) != 0)
		v_fail("the O_APPEND write did not land at the end of append.log");
	if (rfd >= 0)
		close(rfd);

	/* fd 12 reads and writes at 500 */
	if (write(12, "XYZ", 3) != 3)
		v_fail("write fd 12: %s", strerror(errno));
	char xyz[4] = "";
	if (pread(12, xyz, 3, 500) != 3 || memcmp(xyz, "XYZ", 3) != 0)
		v_fail("the write on fd 12 did not land at offset 500");
	check_bytes(12, "fd 12 after writing", 503, 100);

	check_bytes(13, "fd 13 (O_NONBLOCK)", 4096, 100);
	check_bytes(23, "fd 23 (odd name)", 100, 100);

	/* fd 14: the listing continues; together with what was read before, every name once */
	static char rest[NDIRENT + 8][64];
	int nrest = 0;
	int r = read_dir_some(14, -1, rest, &nrest, NDIRENT + 8);
	if (r < 0)
		v_fail("getdents on fd 14: %s", strerror(-r));
	V_CHECK(nseen + nrest == NDIRENT + 2,
		"directory fd 14: %d entries before dump + %d after = %d, expected %d (. and .. included)",
		nseen, nrest, nseen + nrest, NDIRENT + 2);
	for (int i = 0; i < nrest; i++)
		for (int j = 0; j < nseen; j++)
			if (strcmp(rest[i], seen_names[j]) == 0)
				v_fail("directory fd 14: entry %s listed again after restore", rest[i]);

	/* O_PATH fds */
	char c;
	V_CHECK(read(15, &c, 1) < 0 && errno == EBADF, "read on an O_PATH fd did not fail with EBADF");
	int via = openat(20, "ro.dat", O_RDONLY | O_CLOEXEC);
	if (via < 0)
		v_fail("openat through the O_PATH directory fd 20: %s", strerror(errno));
	else
		close(via);

	/* devices */
	V_CHECK(write(16, "x", 1) == 1 && read(16, &c, 1) == 0, "/dev/null does not behave");
	unsigned char z[64];
	memset(z, 1, sizeof(z));
	if (read(17, z, sizeof(z)) != (ssize_t)sizeof(z) || check_zero(z, sizeof(z)) >= 0)
		v_fail("/dev/zero does not give zeros");
	memset(z, 0, sizeof(z));
	if (read(18, z, sizeof(z)) != (ssize_t)sizeof(z) || check_zero(z, sizeof(z)) < 0)
		v_fail("/dev/urandom does not give random bytes");

	/* fd 22: writing past the end makes a hole */
	if (write(22, "E", 1) != 1)
		v_fail("write fd 22: %s", strerror(errno));
	fstat(22, &st);
	V_CHECK(st.st_size == (1 << 20) + 1, "sparse.dat has %lld bytes, expected %d",
		(long long)st.st_size, (1 << 20) + 1);
}

int main(void)
{
	setup();
	record();
	v_ready();
	v_wait_go();
	compare_table();
	check_behaviour();
	v_cleanup_tmp();
	v_finish();
}
