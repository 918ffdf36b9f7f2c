/*
 * tree_shared_fd: an open file description shared by a parent and its child (an
 * inherited fd) is still one description after dump, kill and restore: reads by one
 * move the offset the other sees.
 *
 * The parent writes $STASIS_TMP/shared.dat (64 KiB of a known pattern) and opens it:
 *   F   opened before fork, read 100 bytes: inherited by the child (one description);
 *   G   opened before fork, closed by the parent after fork: only the child has it
 *       (the child moves it to 2010);
 *   H   opened by each process after fork, separately (same file, two descriptions):
 *       parent's at fd 50, offset 777; child's at fd 60, offset 999.
 * Before READY the child reads 50 bytes from F, so both see offset 150.
 *
 * After the go file: kcmp(KCMP_FILE) says F is one description and H two; G is open
 * only in the child (at 2010, with the right data) and fd 60 only in the child, fd 50
 * only in the parent; then the two take turns (SIGUSR1, sigtimedwait) reading 16 bytes
 * from F ten times each, each checking before its read that the offset is where the
 * other's read left it and that the bytes are the file's bytes at that offset. The child
 * exits 0 if all its checks passed; the parent reaps it (with a deadline) and prints
 * PASS.
 */
#include "victim.h"

#include <linux/kcmp.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define SIZE 65536
#define ROUNDS 10
#define CHUNK 16
#define START 150
#define H_PARENT 50
#define H_CHILD 60
#define LIMIT_S 20

static const char *role = "parent";
static int fd_f, fd_g;
static char path[4200];

static unsigned char pattern(long i)
{
	return (unsigned char)((i * 7) ^ (i >> 8) ^ 0x5a);
}

static int kcmp_file(pid_t a, pid_t b, int fa, int fb)
{
	return (int)syscall(SYS_kcmp, a, b, KCMP_FILE, fa, fb);
}

static int fd_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1;
}

static void open_at(int want, long off)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0 || dup2(fd, want) != want)
		v_die("%s: open/dup2 %s: %s", role, path, strerror(errno));
	close(fd);
	if (lseek(want, off, SEEK_SET) != off)
		v_die("%s: lseek: %s", role, strerror(errno));
}

static void check_offset(int fd, const char *name, long want)
{
	long off = (long)lseek(fd, 0, SEEK_CUR);
	V_CHECK(off == want, "%s: %s is at offset %ld, expected %ld", role, name, off, want);
}

/* Reads n bytes from fd and checks them against the file at offset off. */
static void read_check(int fd, const char *name, long off, int n)
{
	unsigned char buf[64];
	ssize_t r = read(fd, buf, (size_t)n);
	if (r != n) {
		v_fail("%s: read %d bytes from %s: got %zd (%s)", role, n, name, r,
		       r < 0 ? strerror(errno) : "short");
		return;
	}
	for (int i = 0; i < n; i++)
		if (buf[i] != pattern(off + i)) {
			v_fail("%s: %s: byte at %ld is 0x%02x, the file has 0x%02x there", role, name,
			       off + i, buf[i], pattern(off + i));
			return;
		}
}

static void wait_go_bounded(void)
{
	const char *go = v_go_path();
	struct stat st;
	for (long waited = 0; stat(go, &st) != 0; waited += 10) {
		if (waited > 120000) {
			v_print("FAIL: %s: no go file within 120 s, giving up\n", role);
			_exit(3);
		}
		v_sleep_ms(10);
	}
}

/* Waits for SIGUSR1 (blocked) from the other process. */
static int wait_turn(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	struct timespec ts = { LIMIT_S, 0 };
	for (;;) {
		int s = sigtimedwait(&set, NULL, &ts);
		if (s == SIGUSR1)
			return 0;
		if (s < 0 && errno == EINTR)
			continue;
		v_fail("%s: no turn signal from the other process within %d s", role, LIMIT_S);
		return -1;
	}
}

__attribute__((noreturn)) static void run_child(pid_t parent)
{
	role = "child";
	/* before READY: move F on by 50, G to 2010, own H at 999 */
	check_offset(fd_f, "F", 100);
	read_check(fd_f, "F", 100, 50);
	if (lseek(fd_g, 2000, SEEK_SET) != 2000)
		v_die("child: lseek G: %s", strerror(errno));
	read_check(fd_g, "G", 2000, 10);
	open_at(H_CHILD, 999);
	if (v_failures)
		_exit(1);
	kill(parent, SIGUSR1);

	wait_go_bounded();
	check_offset(fd_g, "G", 2010);
	read_check(fd_g, "G", 2010, 20);
	check_offset(H_CHILD, "H (the child's own)", 999);
	read_check(H_CHILD, "H (the child's own)", 999, 16);
	V_CHECK(!fd_open(H_PARENT), "child: fd %d (the parent's H) is open in the child", H_PARENT);
	V_CHECK(kcmp_file(getpid(), parent, fd_f, fd_f) == 0,
		"child: kcmp says its F and the parent's F are different descriptions");
	V_CHECK(kcmp_file(getpid(), parent, H_CHILD, H_PARENT) != 0,
		"child: kcmp says its H and the parent's H are one description");
	for (int r = 0; r < ROUNDS; r++) {
		if (wait_turn() != 0)
			break;
		long off = START + (long)(2 * r + 1) * CHUNK;
		check_offset(fd_f, "F", off);
		read_check(fd_f, "F", off, CHUNK);
		kill(parent, SIGUSR1);
	}
	_exit(v_failures ? 1 : 0);
}

int main(void)
{
	(void)v_go_path();
	snprintf(path, sizeof(path), "%s/shared.dat", v_tmp());
	static unsigned char data[SIZE];
	for (long i = 0; i < SIZE; i++)
		data[i] = pattern(i);
	int w = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (w < 0 || write(w, data, SIZE) != SIZE)
		v_die("write %s: %s", path, strerror(errno));
	close(w);

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);

	fd_f = open(path, O_RDONLY);
	fd_g = open(path, O_RDONLY);
	if (fd_f < 0 || fd_g < 0)
		v_die("open %s: %s", path, strerror(errno));
	read_check(fd_f, "F", 0, 100);

	pid_t me = getpid();
	pid_t child = fork();
	if (child < 0)
		v_die("fork: %s", strerror(errno));
	if (child == 0)
		run_child(me);
	close(fd_g);
	open_at(H_PARENT, 777);
	if (wait_turn() != 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		v_die("the child did not get ready");
	}
	check_offset(fd_f, "F", START);
	if (v_failures) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		v_die("setup checks failed");
	}
	v_print("parent %d, child %d, F is fd %d, G fd %d\n", me, child, fd_f, fd_g);
	v_ready();
	wait_go_bounded();

	V_CHECK(!fd_open(fd_g), "parent: fd %d (G, closed after fork) is open in the parent", fd_g);
	V_CHECK(!fd_open(H_CHILD), "parent: fd %d (the child's H) is open in the parent", H_CHILD);
	check_offset(H_PARENT, "H (the parent's own)", 777);
	read_check(H_PARENT, "H (the parent's own)", 777, 16);
	V_CHECK(kcmp_file(me, child, fd_f, fd_f) == 0,
		"parent: kcmp says its F and the child's F are different descriptions");
	V_CHECK(kcmp_file(me, child, H_PARENT, H_CHILD) != 0,
		"parent: kcmp says its H and the child's H are one description");
	V_CHECK(kcmp_file(me, child, fd_f, fd_g) != 0,
		"parent: kcmp says its F and the child's G are one description");
	for (int r = 0; r < ROUNDS; r++) {
		long off = START + (long)(2 * r) * CHUNK;
		check_offset(fd_f, "F", off);
		read_check(fd_f, "F", off, CHUNK);
		kill(child, SIGUSR1);
		if (wait_turn() != 0)
			break;
	}
	check_offset(fd_f, "F", START + 2L * ROUNDS * CHUNK);

	int st = 0;
	long waited = 0;
	pid_t r;
	while ((r = waitpid(child, &st, WNOHANG)) == 0 && waited < LIMIT_S * 1000L) {
		v_sleep_ms(5);
		waited += 5;
	}
	if (r == 0) {
		v_fail("parent: the child (%d) did not exit within %d s", child, LIMIT_S);
		kill(child, SIGKILL);
		waitpid(child, &st, 0);
	} else if (r < 0) {
		v_fail("parent: waitpid(child %d): %s", child, strerror(errno));
	} else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		v_fail("parent: the child exited with status 0x%x (its FAIL lines say why)", st);
	}
	v_finish();
}
