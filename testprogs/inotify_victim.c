/*
 * inotify_victim: an inotify instance with three watches (a directory, a file, and a
 * third added after one in between was removed, so the watch descriptors are 1, 3, 4).
 * After restore: the same descriptors, and events on each watched file arrive with its
 * descriptor and mask (the descriptors the program holds still mean what they meant).
 */
#include "victim.h"

#include <sys/inotify.h>

static int wait_event(int fd, int wd, uint32_t mask)
{
	char buf[4096] __attribute__((aligned(8)));
	for (int i = 0; i < 200; i++) {
		ssize_t n = read(fd, buf, sizeof buf);
		for (ssize_t off = 0; n > 0 && off < n;) {
			struct inotify_event *e = (struct inotify_event *)(buf + off);
			if (e->wd == wd && (e->mask & mask))
				return 1;
			off += (ssize_t)(sizeof *e + e->len);
		}
		usleep(10000);
	}
	return 0;
}

int main(void)
{
	char dir[4200], file[4300], other[4300], gone[4300];
	snprintf(dir, sizeof dir, "%s/watched", v_tmp());
	mkdir(dir, 0700);
	snprintf(file, sizeof file, "%s/file", dir);
	snprintf(other, sizeof other, "%s/other", v_tmp());
	snprintf(gone, sizeof gone, "%s/gone", v_tmp());
	close(open(file, O_CREAT | O_WRONLY, 0600));
	close(open(other, O_CREAT | O_WRONLY, 0600));
	close(open(gone, O_CREAT | O_WRONLY, 0600));
	int fd = inotify_init1(IN_NONBLOCK);
	int w1 = inotify_add_watch(fd, dir, IN_CREATE | IN_DELETE);
	int w2 = inotify_add_watch(fd, gone, IN_MODIFY);
	int w3 = inotify_add_watch(fd, file, IN_MODIFY | IN_CLOSE_WRITE);
	inotify_rm_watch(fd, w2);
	int w4 = inotify_add_watch(fd, other, IN_ATTRIB);
	if (w1 != 1 || w3 != 3 || w4 != 4)
		v_die("unexpected watch descriptors %d %d %d", w1, w3, w4);
	char buf[4096];
	while (read(fd, buf, sizeof buf) > 0) /* the IN_IGNORED of w2 */
		;
	v_ready();
	v_wait_go();
	V_CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK, "O_NONBLOCK lost");
	char created[4300];
	snprintf(created, sizeof created, "%s/new", dir);
	unlink(created); /* left by an earlier run of the same image */
	close(open(created, O_CREAT | O_WRONLY, 0600));
	V_CHECK(wait_event(fd, 1, IN_CREATE), "no IN_CREATE on watch 1 (the directory)");
	int f = open(file, O_WRONLY | O_APPEND);
	V_CHECK(write(f, "x", 1) == 1, "write");
	close(f);
	V_CHECK(wait_event(fd, 3, IN_MODIFY | IN_CLOSE_WRITE), "no IN_MODIFY on watch 3 (the file)");
	V_CHECK(chmod(other, 0640) == 0, "chmod");
	V_CHECK(wait_event(fd, 4, IN_ATTRIB), "no IN_ATTRIB on watch 4");
	V_CHECK(inotify_add_watch(fd, gone, IN_MODIFY) == 5, "the next watch descriptor is not 5");
	v_finish();
}
