/*
 * sysv_victim MODE: System V IPC objects the process uses, checked from inside after
 * restore. Prints "IDS kind=id ..." before READY so the tests can find the objects.
 *
 * shm: segment A (a key, 4 pages + 100 bytes, mode 0640, owner 1234:2345, SHM_LOCK) attached
 *   read-write with its third page unmapped and its fourth read-only, and attached a second
 *   time read-only; segment B (IPC_PRIVATE, 2 pages) filled, then attached read-only and
 *   removed (IPC_RMID) while attached. After restore: the /SYSV lines of /proc/self/maps
 *   are the same (addresses, permissions, shmid), IPC_STAT of both (size, key, owner,
 *   mode, SHM_DEST, SHM_LOCKED, nattch), the contents through every attachment, a write through
 *   the read-write attachment shows through the read-only one.
 * shm-fork: a private segment attached, removed, then shared with a child by fork; after
 *   restore the child's write reaches the parent's attachment.
 * msg: a queue (a key, mode 0620, owner 1234:2345, msg_qbytes 5000) with messages of
 *   several types and sizes (one empty); a second, empty queue (IPC_PRIVATE). After
 *   restore: IPC_STAT, then receiving by type (msgrcv with a type, then in order) gives
 *   every message with its type and text.
 * sem: a set of 3 semaphores (a key, mode 0660, owner 1234:2345) with values 5 0 42 after
 *   semop calls. After restore: IPC_STAT, GETALL, and a semop that takes 5 from the first
 *   without waiting.
 *
 * sem-undo: a semaphore at 1, a semop +1 with SEM_UNDO; after restore the process's
 *   unshare(CLONE_SYSVSEM) applies exactly its adjustment. sem-undo-big: an adjustment of -20000 (a dump refuses:
 *   the undo clamps at 0). sem-undo-threads: the same with a second thread
 *   (refused by a dump that leaves it running or stopped). sem-undo-tree: a parent and a child with adjustments on one
 *   set, each applied exactly at the child's exit and at the parent's unshare.
 * sem-undo-threads-kill: a process of 3 threads (two with adjustments, in their shared
 *   list) and a child with its own; after restore each thread's end applies nothing, the
 *   child's exit its adjustment, the last thread's unshare the whole list (dumped only by
 *   a dump that kills the tree: it measures the list by the process's death).
 *   sem-undo-threads-big: a thread's adjustment of -20000 and a child: the death clamps
 *   it, so a dump that kills the tree fails then and kills the child too.
 *
 * The objects are removed at the end, so an image taken with --leave-running finds
 * them gone and restore creates them.
 */
#include "victim.h"

#include <pthread.h>
#include <sched.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>

#define PG 4096

static char maps_before[8192];

/* The /SYSV lines of /proc/self/maps. */
static void sysv_maps(char *out, size_t size)
{
	static char buf[65536];
	ssize_t n = v_read_file("/proc/self/maps", buf, sizeof buf);
	out[0] = 0;
	if (n <= 0)
		return;
	size_t used = 0;
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		if (!strstr(line, "/SYSV"))
			continue;
		size_t l = strlen(line);
		if (used + l + 2 >= size)
			break;
		memcpy(out + used, line, l);
		used += l;
		out[used++] = '\n';
		out[used] = 0;
	}
}

static unsigned char pattern(int seg, size_t off)
{
	return (unsigned char)(seg * 31 + off * 7 + off / PG);
}

static key_t unique_key(int kind)
{
	return (key_t)(0x5a000000 | (kind << 20) | (getpid() & 0xfffff));
}

static int shm_mode(void)
{
	size_t size_a = 4 * PG + 100, size_b = 2 * PG;
	/* B first: it gets the lower id, so a restore creates it before A. */
	int b = shmget(IPC_PRIVATE, size_b, IPC_CREAT | 0600);
	int a = shmget(unique_key(1), size_a, IPC_CREAT | IPC_EXCL | 0640);
	if (a < 0 || b < 0)
		v_die("shmget: %s", strerror(errno));
	struct shmid_ds ds;
	shmctl(a, IPC_STAT, &ds);
	ds.shm_perm.uid = 1234;
	ds.shm_perm.gid = 2345;
	if (shmctl(a, IPC_SET, &ds) < 0)
		v_die("IPC_SET: %s", strerror(errno));
	if (shmctl(a, SHM_LOCK, NULL) < 0)
		v_die("SHM_LOCK: %s", strerror(errno));
	unsigned char *pa = shmat(a, NULL, 0);
	unsigned char *pa_ro = shmat(a, NULL, SHM_RDONLY);
	unsigned char *tmp = shmat(b, NULL, 0);
	if (pa == (void *)-1 || pa_ro == (void *)-1 || tmp == (void *)-1)
		v_die("shmat: %s", strerror(errno));
	for (size_t i = 0; i < size_a; i++)
		pa[i] = pattern(1, i);
	for (size_t i = 0; i < size_b; i++)
		tmp[i] = pattern(2, i);
	shmdt(tmp);
	unsigned char *pb = shmat(b, NULL, SHM_RDONLY);
	if (pb == (void *)-1)
		v_die("shmat b: %s", strerror(errno));
	if (shmctl(b, IPC_RMID, NULL) < 0)
		v_die("IPC_RMID: %s", strerror(errno));
	if (munmap(pa + 2 * PG, PG) < 0 || mprotect(pa + 3 * PG, PG, PROT_READ) < 0)
		v_die("munmap/mprotect: %s", strerror(errno));
	struct shmid_ds sa0, sb0;
	shmctl(a, IPC_STAT, &sa0);
	shmctl(b, IPC_STAT, &sb0);
	sysv_maps(maps_before, sizeof maps_before);
	v_print("IDS shm=%d shm=%d\n", a, b);
	v_ready();
	v_wait_go();

	static char maps_after[8192];
	sysv_maps(maps_after, sizeof maps_after);
	int lineno;
	const char *bline;
	const char *diff = v_first_diff_line(maps_before, maps_after, &lineno, &bline);
	V_CHECK(!diff, "the /SYSV mappings differ: before:\n%s\nafter:\n%s", maps_before, maps_after);
	struct shmid_ds sa, sb;
	V_CHECK(shmctl(a, IPC_STAT, &sa) == 0, "IPC_STAT A: %s", strerror(errno));
	V_CHECK(shmctl(b, IPC_STAT, &sb) == 0, "IPC_STAT B: %s", strerror(errno));
	V_CHECK(sa.shm_segsz == size_a, "A size %zu", sa.shm_segsz);
	V_CHECK(sa.shm_perm.__key == unique_key(1), "A key %#x", sa.shm_perm.__key);
	V_CHECK(sa.shm_perm.uid == 1234 && sa.shm_perm.gid == 2345, "A owner %u:%u",
		sa.shm_perm.uid, sa.shm_perm.gid);
	V_CHECK((sa.shm_perm.mode & 0777) == 0640, "A mode %o", sa.shm_perm.mode);
	V_CHECK(!(sa.shm_perm.mode & SHM_DEST), "A is marked removed");
	V_CHECK(sa.shm_perm.mode & SHM_LOCKED, "A is not locked in memory (SHM_LOCK)");
	V_CHECK(sa.shm_nattch == sa0.shm_nattch, "A nattch %lu, was %lu", sa.shm_nattch,
		sa0.shm_nattch);
	V_CHECK(sb.shm_segsz == size_b, "B size %zu", sb.shm_segsz);
	V_CHECK(sb.shm_perm.mode & SHM_DEST, "B is not marked removed (mode %o)", sb.shm_perm.mode);
	V_CHECK((sb.shm_perm.mode & 0777) == 0600, "B mode %o", sb.shm_perm.mode);
	V_CHECK(sb.shm_nattch == sb0.shm_nattch, "B nattch %lu, was %lu", sb.shm_nattch,
		sb0.shm_nattch);
	int bad = 0;
	for (size_t i = 0; i < size_a && !bad; i++) {
		if (i / PG != 2 && pa[i] != pattern(1, i))
			bad = 1;
		if (pa_ro[i] != pattern(1, i))
			bad = 2;
	}
	V_CHECK(!bad, "A contents differ (through the %s attachment)", bad == 1 ? "read-write" : "read-only");
	for (size_t i = 0; i < size_b; i++)
		if (pb[i] != pattern(2, i)) {
			v_fail("B contents differ at %zu", i);
			break;
		}
	pa[PG + 5] = 0xee;
	V_CHECK(pa_ro[PG + 5] == 0xee, "a write to A does not show through its second attachment");
	shmdt(pa);
	shmdt(pa_ro);
	shmdt(pb);
	shmctl(a, IPC_RMID, NULL);
	v_finish();
}

/* A segment attached before fork is shared by parent and child after restore too. */
static int shm_fork_mode(void)
{
	int id = shmget(IPC_PRIVATE, 3 * PG, IPC_CREAT | 0600);
	unsigned char *p = shmat(id, NULL, 0);
	if (id < 0 || p == (void *)-1)
		v_die("shmget/shmat: %s", strerror(errno));
	shmctl(id, IPC_RMID, NULL);
	p[0] = 0x11;
	pid_t child = fork();
	if (child < 0)
		v_die("fork: %s", strerror(errno));
	if (child == 0) {
		v_wait_go();
		/* The child's write must reach the parent's attachment. */
		int ok = p[0] == 0x11;
		p[2 * PG + 7] = 0x5a;
		_exit(ok ? 0 : 3);
	}
	v_print("IDS shm=%d\n", id);
	v_ready();
	v_wait_go();
	int status = 0;
	V_CHECK(waitpid(child, &status, 0) == child, "waitpid: %s", strerror(errno));
	V_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		"the child saw the wrong contents (status %#x)", status);
	V_CHECK(p[2 * PG + 7] == 0x5a, "the child's write did not reach the parent");
	struct shmid_ds ds;
	V_CHECK(shmctl(id, IPC_STAT, &ds) == 0 && ds.shm_nattch == 1,
		"nattch %lu after the child ended, expected 1", ds.shm_nattch);
	shmdt(p);
	v_finish();
}

struct msg {
	long mtype;
	char text[512];
};

static const struct {
	long type;
	const char *text;
} msgs[] = {
	{ 3, "three" }, { 1, "one, first" }, { 7, "" }, { 1, "one, second" }, { 2, "two: a longer message of the second type" },
};
#define NMSGS (sizeof msgs / sizeof msgs[0])

static int msg_mode(void)
{
	int q = msgget(unique_key(2), IPC_CREAT | IPC_EXCL | 0620);
	int e = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
	if (q < 0 || e < 0)
		v_die("msgget: %s", strerror(errno));
	struct msqid_ds ds;
	msgctl(q, IPC_STAT, &ds);
	ds.msg_perm.uid = 1234;
	ds.msg_perm.gid = 2345;
	ds.msg_qbytes = 5000;
	if (msgctl(q, IPC_SET, &ds) < 0)
		v_die("IPC_SET: %s", strerror(errno));
	static struct msg m;
	for (size_t i = 0; i < NMSGS; i++) {
		m.mtype = msgs[i].type;
		size_t len = strlen(msgs[i].text);
		memcpy(m.text, msgs[i].text, len);
		if (msgsnd(q, &m, len, IPC_NOWAIT) < 0)
			v_die("msgsnd: %s", strerror(errno));
	}
	/* The empty queue has been used by this process too (a message sent and taken). */
	m.mtype = 9;
	msgsnd(e, &m, 1, 0);
	msgrcv(e, &m, sizeof m.text, 0, 0);
	v_print("IDS msg=%d msg=%d\n", q, e);
	v_ready();
	v_wait_go();

	struct msqid_ds st, se;
	V_CHECK(msgctl(q, IPC_STAT, &st) == 0, "IPC_STAT: %s", strerror(errno));
	V_CHECK(msgctl(e, IPC_STAT, &se) == 0, "IPC_STAT of the empty queue: %s", strerror(errno));
	V_CHECK(se.msg_qnum == 0, "the empty queue has %lu messages", se.msg_qnum);
	V_CHECK(st.msg_qnum == NMSGS, "%lu messages, expected %zu", st.msg_qnum, NMSGS);
	V_CHECK(st.msg_qbytes == 5000, "msg_qbytes %lu", st.msg_qbytes);
	V_CHECK(st.msg_perm.__key == unique_key(2), "key %#x", st.msg_perm.__key);
	V_CHECK(st.msg_perm.uid == 1234 && st.msg_perm.gid == 2345, "owner %u:%u",
		st.msg_perm.uid, st.msg_perm.gid);
	V_CHECK((st.msg_perm.mode & 0777) == 0620, "mode %o", st.msg_perm.mode);
	/* Type 2 first (by type), then the rest in queue order. */
	static const int order[] = { 4, 0, 1, 2, 3 };
	for (size_t k = 0; k < NMSGS; k++) {
		size_t i = order[k];
		long want = k == 0 ? 2 : 0;
		ssize_t n = msgrcv(q, &m, sizeof m.text, want, IPC_NOWAIT);
		if (n < 0) {
			v_fail("message %zu: msgrcv: %s", k, strerror(errno));
			break;
		}
		V_CHECK(m.mtype == msgs[i].type && (size_t)n == strlen(msgs[i].text) &&
				memcmp(m.text, msgs[i].text, (size_t)n) == 0,
			"message %zu: type %ld \"%.*s\", expected type %ld \"%s\"", k, m.mtype,
			(int)n, m.text, msgs[i].type, msgs[i].text);
	}
	V_CHECK(msgrcv(q, &m, sizeof m.text, 0, IPC_NOWAIT) < 0 && errno == ENOMSG,
		"a message too many");
	msgctl(q, IPC_RMID, NULL);
	msgctl(e, IPC_RMID, NULL);
	v_finish();
}

static int sem_mode(void)
{
	int s = semget(unique_key(3), 3, IPC_CREAT | IPC_EXCL | 0660);
	if (s < 0)
		v_die("semget: %s", strerror(errno));
	struct semid_ds ds;
	if (semctl(s, 0, IPC_STAT, &ds) < 0)
		v_die("IPC_STAT: %s", strerror(errno));
	ds.sem_perm.uid = 1234;
	ds.sem_perm.gid = 2345;
	if (semctl(s, 0, IPC_SET, &ds) < 0)
		v_die("IPC_SET: %s", strerror(errno));
	struct sembuf ops[] = { { 0, 7, 0 }, { 2, 42, 0 }, { 0, -2, 0 } };
	if (semop(s, ops, 3) < 0)
		v_die("semop: %s", strerror(errno));
	v_print("IDS sem=%d\n", s);
	v_ready();
	v_wait_go();

	V_CHECK(semctl(s, 0, IPC_STAT, &ds) == 0, "IPC_STAT: %s", strerror(errno));
	V_CHECK(ds.sem_nsems == 3, "nsems %lu", ds.sem_nsems);
	V_CHECK(ds.sem_perm.__key == unique_key(3), "key %#x", ds.sem_perm.__key);
	V_CHECK(ds.sem_perm.uid == 1234 && ds.sem_perm.gid == 2345, "owner %u:%u",
		ds.sem_perm.uid, ds.sem_perm.gid);
	V_CHECK((ds.sem_perm.mode & 0777) == 0660, "mode %o", ds.sem_perm.mode);
	unsigned short vals[3];
	V_CHECK(semctl(s, 0, GETALL, vals) == 0, "GETALL: %s", strerror(errno));
	V_CHECK(vals[0] == 5 && vals[1] == 0 && vals[2] == 42, "values %u %u %u, expected 5 0 42",
		vals[0], vals[1], vals[2]);
	struct sembuf take = { 0, -5, IPC_NOWAIT };
	V_CHECK(semop(s, &take, 1) == 0, "semop -5 on the first: %s", strerror(errno));
	V_CHECK(semctl(s, 0, GETVAL) == 0, "the first is not 0 after taking 5");
	semctl(s, 0, IPC_RMID);
	v_finish();
}

/* A semaphore at 1, then a semop +1 with SEM_UNDO (adjustment -1): after restore the
 * value is 2 and the process's own unshare(CLONE_SYSVSEM) applies exactly its adjustment. */
static int sem_undo_mode(void)
{
	int s = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
	struct sembuf op = { 0, 1, SEM_UNDO };
	if (s < 0 || semctl(s, 0, SETVAL, 1) < 0 || semop(s, &op, 1) < 0)
		v_die("semget/semop: %s", strerror(errno));
	v_print("IDS sem=%d\n", s);
	v_ready();
	v_wait_go();
	V_CHECK(semctl(s, 0, GETVAL) == 2, "value %d, expected 2", semctl(s, 0, GETVAL));
	V_CHECK(unshare(CLONE_SYSVSEM) == 0, "unshare: %s", strerror(errno));
	V_CHECK(semctl(s, 0, GETVAL) == 1, "value %d after the undo, expected 1 (adjustment -1)",
		semctl(s, 0, GETVAL));
	semctl(s, 0, IPC_RMID);
	v_finish();
}

/* A semop of +20000 with SEM_UNDO (adjustment -20000): the undo takes the value to 0,
 * where exit clamps, so a dump cannot tell the adjustment and refuses; the process keeps
 * its value and its adjustment (checked with its own unshare). */
static int sem_undo_big_mode(void)
{
	int s = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
	struct sembuf op = { 0, 20000, SEM_UNDO };
	if (s < 0 || semop(s, &op, 1) < 0)
		v_die("semget/semop: %s", strerror(errno));
	v_print("IDS sem=%d\n", s);
	v_ready();
	v_wait_go();
	V_CHECK(semctl(s, 0, GETVAL) == 20000, "value %d, expected 20000", semctl(s, 0, GETVAL));
	/* Raised first, so that the undo does not clamp and shows the whole adjustment. */
	struct sembuf raise = { 0, 5000, IPC_NOWAIT };
	V_CHECK(semop(s, &raise, 1) == 0, "semop +5000: %s", strerror(errno));
	V_CHECK(unshare(CLONE_SYSVSEM) == 0, "unshare: %s", strerror(errno));
	V_CHECK(semctl(s, 0, GETVAL) == 5000,
		"value %d after the undo, expected 5000 (adjustment -20000)", semctl(s, 0, GETVAL));
	semctl(s, 0, IPC_RMID);
	v_finish();
}

static void *idle_thread(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

/* As sem-undo, with a second thread: the threads share the undo list, which a dump that
 * leaves the process running cannot measure without splitting it: refused, and the
 * process goes on unharmed. */
static int sem_undo_threads_mode(void)
{
	int s = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
	struct sembuf op = { 0, 1, SEM_UNDO };
	if (s < 0 || semop(s, &op, 1) < 0)
		v_die("semget/semop: %s", strerror(errno));
	pthread_t t;
	if (pthread_create(&t, NULL, idle_thread, NULL) != 0)
		v_die("pthread_create");
	v_print("IDS sem=%d\n", s);
	v_ready();
	v_wait_go();
	V_CHECK(semctl(s, 0, GETVAL) == 1, "value %d, expected 1", semctl(s, 0, GETVAL));
	/* The list is the threads': a fork child has none, the process's unshare only drops
	 * its reference (the thread still holds the list), so the value stays. */
	V_CHECK(unshare(CLONE_SYSVSEM) == 0, "unshare: %s", strerror(errno));
	V_CHECK(semctl(s, 0, GETVAL) == 1, "value %d after unshare, expected 1 (list shared)",
		semctl(s, 0, GETVAL));
	semctl(s, 0, IPC_RMID);
	v_finish();
}

/* Forks a child that posts `by` on semaphore `num` of set `s` with SEM_UNDO and returns
 * once it has. After the go file the child checks the values with `values_ok`, then ends
 * when the parent writes to `*tell` (its exit applies its adjustment, which the parent
 * checks then); its status says what it saw (0: right values). */
static pid_t start_poster(int s, unsigned short num, short by, int (*values_ok)(int), int *tell)
{
	int p[2], q[2];
	if (pipe(p) < 0 || pipe(q) < 0)
		v_die("pipe: %s", strerror(errno));
	pid_t child = fork();
	if (child < 0)
		v_die("fork: %s", strerror(errno));
	if (child == 0) {
		struct sembuf post = { num, by, SEM_UNDO };
		int posted = semop(s, &post, 1) == 0;
		close(p[0]);
		if (write(p[1], "x", 1) != 1)
			_exit(4);
		close(p[1]);
		close(q[1]);
		if (!posted)
			_exit(5);
		v_wait_go();
		int ok = values_ok(s);
		char done;
		if (read(q[0], &done, 1) != 1)
			_exit(6);
		_exit(ok ? 0 : 3);
	}
	close(p[1]);
	close(q[0]);
	char c;
	if (read(p[0], &c, 1) != 1)
		v_die("the child did not post");
	close(p[0]);
	*tell = q[1];
	return child;
}

static int tree_values_ok(int s)
{
	return semctl(s, 0, GETVAL) == 0 && semctl(s, 1, GETVAL) == 13;
}

/* A parent and a child with undo adjustments on one set of 2 (values 1 and 10 at first):
 * the parent holds semaphore 0 as a lock (semop -1: adjustment +1), the child posted 3 on
 * semaphore 1 (adjustment -3). After restore: the values are 0 and 13; the child exits and
 * semaphore 1 is 10 again (its adjustment applied at exit, exactly); the parent's unshare
 * (CLONE_SYSVSEM) releases the lock: semaphore 0 is 1. */
static int sem_undo_tree_mode(void)
{
	int s = semget(unique_key(4), 2, IPC_CREAT | IPC_EXCL | 0600);
	unsigned short init[2] = { 1, 10 };
	if (s < 0 || semctl(s, 0, SETALL, init) < 0)
		v_die("semget/SETALL: %s", strerror(errno));
	struct sembuf lock = { 0, -1, SEM_UNDO | IPC_NOWAIT };
	if (semop(s, &lock, 1) < 0)
		v_die("semop lock: %s", strerror(errno));
	int tell;
	pid_t child = start_poster(s, 1, 3, tree_values_ok, &tell);
	v_print("IDS sem=%d\n", s);
	v_ready();
	v_wait_go();
	V_CHECK(semctl(s, 0, GETVAL) == 0 && semctl(s, 1, GETVAL) == 13,
		"values %d %d, expected 0 13", semctl(s, 0, GETVAL), semctl(s, 1, GETVAL));
	V_CHECK(write(tell, "x", 1) == 1, "tell the child: %s", strerror(errno));
	close(tell);
	int status = 0;
	V_CHECK(waitpid(child, &status, 0) == child, "waitpid: %s", strerror(errno));
	V_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		"the child saw the wrong values (status %#x)", status);
	V_CHECK(semctl(s, 1, GETVAL) == 10,
		"semaphore 1 is %d after the child exited, expected 10 (its adjustment -3)",
		semctl(s, 1, GETVAL));
	V_CHECK(semctl(s, 0, GETVAL) == 0, "semaphore 0 is %d, the lock is not held",
		semctl(s, 0, GETVAL));
	V_CHECK(unshare(CLONE_SYSVSEM) == 0, "unshare: %s", strerror(errno));
	V_CHECK(semctl(s, 0, GETVAL) == 1,
		"semaphore 0 is %d after the parent's undo, expected 1 (its adjustment +1)",
		semctl(s, 0, GETVAL));
	V_CHECK(semctl(s, 1, GETVAL) == 10, "semaphore 1 is %d after the parent's undo",
		semctl(s, 1, GETVAL));
	semctl(s, 0, IPC_RMID);
	v_finish();
}

/* One thread of sem-undo-threads-kill: one semop with SEM_UNDO, then it waits for the
 * word to end (a byte on its pipe). */
struct undo_thread {
	int sem, num, op, ok;
	int done[2]; /* the thread has made its semop */
	int quit[2]; /* the thread may end */
};

static void *undo_thread(void *arg)
{
	struct undo_thread *t = arg;
	struct sembuf op = { (unsigned short)t->num, (short)t->op, SEM_UNDO | IPC_NOWAIT };
	t->ok = semop(t->sem, &op, 1) == 0;
	if (write(t->done[1], "x", 1) != 1)
		t->ok = 0;
	char c;
	while (read(t->quit[0], &c, 1) < 0 && errno == EINTR)
		;
	return NULL;
}

static void undo_thread_start(struct undo_thread *t, pthread_t *th)
{
	if (pipe(t->done) < 0 || pipe(t->quit) < 0)
		v_die("pipe: %s", strerror(errno));
	if (pthread_create(th, NULL, undo_thread, t) != 0)
		v_die("pthread_create");
	char c;
	if (read(t->done[0], &c, 1) != 1 || !t->ok)
		v_die("thread semop %d on %d: failed", t->op, t->num);
}

static int undo_thread_end(struct undo_thread *t, pthread_t th)
{
	return write(t->quit[1], "x", 1) == 1 && pthread_join(th, NULL) == 0;
}

static int sem_values_are(int s, int a, int b, int c)
{
	return semctl(s, 0, GETVAL) == a && semctl(s, 1, GETVAL) == b && semctl(s, 2, GETVAL) == c;
}

static int threads_values_ok(int s)
{
	return sem_values_are(s, 0, 12, 8);
}

#define SEM3(s) semctl(s, 0, GETVAL), semctl(s, 1, GETVAL), semctl(s, 2, GETVAL)

/* A process of 3 threads sharing one undo list and a single-threaded child, on a set of 3
 * (1 10 5 at first): thread A takes semaphore 0 as a lock (adjustment +1), thread B posts
 * 2 on semaphore 1 (adjustment -2), the child posts 3 on semaphore 2 (adjustment -3): the
 * values are 0 12 8. After restore: A ends and nothing is applied (the list is still the
 * other threads'); the child ends and exactly its adjustment is applied (5); B ends,
 * nothing applied; the main thread, the last one, unshares: the list, which holds what A
 * and B did, is applied exactly (1 10). A second set, used without SEM_UNDO, holds 7
 * throughout. A dump that leaves the tree running refuses. */
static int sem_undo_threads_kill_mode(void)
{
	int s = semget(unique_key(5), 3, IPC_CREAT | IPC_EXCL | 0600);
	unsigned short init[3] = { 1, 10, 5 };
	if (s < 0 || semctl(s, 0, SETALL, init) < 0)
		v_die("semget/SETALL: %s", strerror(errno));
	/* A set used without SEM_UNDO (value 7): measured by the death too, with no
	 * adjustment on it. */
	int plain = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
	struct sembuf seven = { 0, 7, 0 };
	if (plain < 0 || semop(plain, &seven, 1) < 0)
		v_die("semget/semop plain: %s", strerror(errno));
	static struct undo_thread a, b;
	a = (struct undo_thread){ .sem = s, .num = 0, .op = -1 };
	b = (struct undo_thread){ .sem = s, .num = 1, .op = 2 };
	pthread_t ta, tb;
	undo_thread_start(&a, &ta);
	undo_thread_start(&b, &tb);
	int tell;
	pid_t child = start_poster(s, 2, 3, threads_values_ok, &tell);
	v_print("IDS sem=%d sem=%d\n", s, plain);
	v_ready();
	v_wait_go();
	V_CHECK(sem_values_are(s, 0, 12, 8), "values %d %d %d, expected 0 12 8", SEM3(s));
	V_CHECK(semctl(plain, 0, GETVAL) == 7, "the set without undo holds %d, expected 7",
		semctl(plain, 0, GETVAL));
	V_CHECK(undo_thread_end(&a, ta), "end thread A");
	V_CHECK(sem_values_are(s, 0, 12, 8),
		"values %d %d %d after thread A ended, expected 0 12 8 (the list is shared)",
		SEM3(s));
	V_CHECK(write(tell, "x", 1) == 1, "tell the child: %s", strerror(errno));
	close(tell);
	int status = 0;
	V_CHECK(waitpid(child, &status, 0) == child, "waitpid: %s", strerror(errno));
	V_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		"the child saw the wrong values (status %#x)", status);
	V_CHECK(sem_values_are(s, 0, 12, 5),
		"values %d %d %d after the child exited, expected 0 12 5 (its adjustment -3)",
		SEM3(s));
	V_CHECK(undo_thread_end(&b, tb), "end thread B");
	V_CHECK(sem_values_are(s, 0, 12, 5),
		"values %d %d %d after thread B ended, expected 0 12 5 (the list is shared)",
		SEM3(s));
	V_CHECK(unshare(CLONE_SYSVSEM) == 0, "unshare: %s", strerror(errno));
	V_CHECK(sem_values_are(s, 1, 10, 5),
		"values %d %d %d after the last thread's undo, expected 1 10 5 (adjustments +1 -2)",
		SEM3(s));
	V_CHECK(semctl(plain, 0, GETVAL) == 7, "the set without undo holds %d at the end, expected 7",
		semctl(plain, 0, GETVAL));
	semctl(s, 0, IPC_RMID);
	semctl(plain, 0, IPC_RMID);
	v_finish();
}

/* A thread posts 20000 with SEM_UNDO (adjustment -20000) on a set of 1, and the process
 * has a child: the death of the process, which measures its adjustment, clamps the value
 * at 0, so a dump that kills the tree finds out only then: it fails and kills the rest of
 * the tree (the child) too. Alone, after GO: the list is the threads' (the thread's end
 * applies nothing) and the last thread's unshare applies it (clamped at 0). */
static int sem_undo_threads_big_mode(void)
{
	int s = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
	if (s < 0)
		v_die("semget: %s", strerror(errno));
	static struct undo_thread a;
	a = (struct undo_thread){ .sem = s, .num = 0, .op = 20000 };
	pthread_t ta;
	undo_thread_start(&a, &ta);
	pid_t child = fork();
	if (child < 0)
		v_die("fork: %s", strerror(errno));
	if (child == 0) {
		v_wait_go();
		_exit(0);
	}
	v_print("IDS sem=%d\n", s);
	v_ready();
	v_wait_go();
	V_CHECK(semctl(s, 0, GETVAL) == 20000, "value %d, expected 20000", semctl(s, 0, GETVAL));
	V_CHECK(undo_thread_end(&a, ta), "end the thread");
	V_CHECK(semctl(s, 0, GETVAL) == 20000, "value %d after the thread ended, expected 20000",
		semctl(s, 0, GETVAL));
	V_CHECK(unshare(CLONE_SYSVSEM) == 0, "unshare: %s", strerror(errno));
	V_CHECK(semctl(s, 0, GETVAL) == 0, "value %d after the undo, expected 0 (clamped)",
		semctl(s, 0, GETVAL));
	int status = 0;
	V_CHECK(waitpid(child, &status, 0) == child, "waitpid: %s", strerror(errno));
	semctl(s, 0, IPC_RMID);
	v_finish();
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	if (!strcmp(mode, "shm"))
		return shm_mode();
	if (!strcmp(mode, "shm-fork"))
		return shm_fork_mode();
	if (!strcmp(mode, "msg"))
		return msg_mode();
	if (!strcmp(mode, "sem"))
		return sem_mode();
	if (!strcmp(mode, "sem-undo"))
		return sem_undo_mode();
	if (!strcmp(mode, "sem-undo-big"))
		return sem_undo_big_mode();
	if (!strcmp(mode, "sem-undo-threads"))
		return sem_undo_threads_mode();
	if (!strcmp(mode, "sem-undo-tree"))
		return sem_undo_tree_mode();
	if (!strcmp(mode, "sem-undo-threads-kill"))
		return sem_undo_threads_kill_mode();
	if (!strcmp(mode, "sem-undo-threads-big"))
		return sem_undo_threads_big_mode();
	v_die("usage: sysv_victim shm|shm-fork|msg|sem|sem-undo|sem-undo-big|sem-undo-threads|"
	      "sem-undo-tree|sem-undo-threads-kill|sem-undo-threads-big");
}
