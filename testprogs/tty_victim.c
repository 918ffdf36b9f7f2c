/*
 * tty_victim: stdin, stdout and stderr on a terminal (a pseudo-terminal the harness made),
 * for --shell-job: after `stasis restore --shell-job` they must be the terminal of the
 * restore (its stdin), still terminals with the same access modes, sharing one open file
 * description as they did; a regular file at fd 3 keeps its offset.
 *
 * Prints "tty-before: PATH" before READY and "tty-after: PATH" after the go file, so
 * the harness can check which terminal it ended up on.
 */
#include "victim.h"

#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <termios.h>

static int kcmp_file(int a, int b)
{
	pid_t p = getpid();
	return (int)syscall(SYS_kcmp, p, p, KCMP_FILE, a, b);
}

int main(void)
{
	int fl[3], shared01, shared12;
	for (int fd = 0; fd < 3; fd++) {
		if (!isatty(fd))
			v_die("fd %d is not a terminal", fd);
		fl[fd] = fcntl(fd, F_GETFL);
	}
	shared01 = kcmp_file(0, 1) == 0;
	shared12 = kcmp_file(1, 2) == 0;
	char path[4200];
	snprintf(path, sizeof(path), "%s/tty.dat", v_tmp());
	int f = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (f < 0 || write(f, "0123456789", 10) != 10 || dup2(f, 3) != 3)
		v_die("file: %s", strerror(errno));
	if (f != 3)
		close(f);
	lseek(3, 4, SEEK_SET);
	const char *name = ttyname(1);
	v_print("tty-before: %s\n", name ? name : "?");

	v_ready();
	v_wait_go();

	for (int fd = 0; fd < 3; fd++) {
		V_CHECK(isatty(fd), "fd %d is no longer a terminal", fd);
		int now = fcntl(fd, F_GETFL);
		V_CHECK(now == fl[fd], "fd %d: F_GETFL %#o, was %#o", fd, now, fl[fd]);
	}
	V_CHECK((kcmp_file(0, 1) == 0) == shared01, "fds 0 and 1 %s share a file description",
		shared01 ? "no longer" : "now");
	V_CHECK((kcmp_file(1, 2) == 0) == shared12, "fds 1 and 2 %s share a file description",
		shared12 ? "no longer" : "now");
	struct termios t;
	V_CHECK(tcgetattr(0, &t) == 0, "tcgetattr on stdin: %s", strerror(errno));
	V_CHECK(lseek(3, 0, SEEK_CUR) == 4, "fd 3 offset is %lld, expected 4",
		(long long)lseek(3, 0, SEEK_CUR));
	name = ttyname(1);
	v_print("tty-after: %s\n", name ? name : "?");
	v_cleanup_tmp();
	v_finish();
}
