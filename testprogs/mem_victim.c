/*
 * mem_victim: the address space survives dump, kill and restore.
 *
 * Sets up every kind of memory the core issue names, records what it can observe of it
 * (/proc/self/maps, the VmFlags of every VMA, the mm fields in /proc/self/stat, auxv,
 * exe, cmdline, environ, which pages of a sparse region are present), prints READY,
 * waits for the go file and then checks all of it from inside.
 *
 * Only static buffers are used after setup, so the checks themselves do not change the
 * layout they compare.
 */
#include "victim.h"

#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>

#define PAGE 4096UL

static char maps_before[1 << 17], maps_after[1 << 17];
static char smaps_buf[1 << 20];
static char flags_before[1 << 16], flags_after[1 << 16];
static char stat_before[4096], stat_after[4096];
static char auxv_before[4096], auxv_after[4096];
static ssize_t auxv_before_len, auxv_after_len;
static char exe_before[4096], exe_after[4096];
static char cmdline_before[8192], cmdline_after[8192];
static ssize_t cmdline_before_len, cmdline_after_len;
static char environ_before[65536], environ_after[65536];
static ssize_t environ_before_len, environ_after_len;
static char msg_a[512], msg_b[512];

/* ---- patterns ---------------------------------------------------------------------- */

/* The 8-byte word at address a of a region tagged t. */
static inline uint64_t pat(uint64_t tag, uintptr_t a)
{
	return v_mix(tag * 0x9e3779b97f4a7c15ULL ^ a);
}

static void fill(uint64_t tag, void *p, size_t len)
{
	uint64_t *w = p;
	for (size_t i = 0; i < len / 8; i++)
		w[i] = pat(tag, (uintptr_t)&w[i]);
}

/* Returns the offset of the first wrong word, or -1. */
static long check_fill(uint64_t tag, const void *p, size_t len)
{
	const uint64_t *w = p;
	for (size_t i = 0; i < len / 8; i++)
		if (w[i] != pat(tag, (uintptr_t)&w[i]))
			return (long)(i * 8);
	return -1;
}

static long check_zero(const void *p, size_t len)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < len; i++)
		if (c[i])
			return (long)i;
	return -1;
}

/* Byte at offset off of the test files: a function of the file and the offset. */
static inline unsigned char file_byte(int file, size_t off)
{
	return (unsigned char)(v_mix((uint64_t)file << 40 | off / 8) >> ((off % 8) * 8));
}

static void fill_file_bytes(int file, unsigned char *p, size_t off, size_t len)
{
	for (size_t i = 0; i < len; i++)
		p[i] = file_byte(file, off + i);
}

static long check_file_bytes(int file, const unsigned char *p, size_t off, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != file_byte(file, off + i))
			return (long)i;
	return -1;
}

/* ---- faults -------------------------------------------------------------------------- */

static sigjmp_buf fault_jmp;
static volatile sig_atomic_t fault_expected;

static void on_segv(int sig)
{
	(void)sig;
	if (fault_expected)
		siglongjmp(fault_jmp, 1);
	static const char m[] = "FAIL: unexpected SIGSEGV\n";
	v_write_all(1, m, sizeof(m) - 1);
	_exit(1);
}

/* 1 if reading *p faults, 0 if not. */
static int read_faults(volatile const char *p)
{
	fault_expected = 1;
	if (sigsetjmp(fault_jmp, 1)) {
		fault_expected = 0;
		return 1;
	}
	(void)*p;
	fault_expected = 0;
	return 0;
}

static int write_faults(volatile char *p)
{
	fault_expected = 1;
	if (sigsetjmp(fault_jmp, 1)) {
		fault_expected = 0;
		return 1;
	}
	*p = *p;
	fault_expected = 0;
	return 0;
}

/* ---- /proc helpers ------------------------------------------------------------------- */

/*
 * The inode of an anonymous shared mapping ("/dev/zero (deleted)") is a fresh shmem
 * inode number that no one can choose, so it is blanked out (with the padding after it,
 * whose width depends on it) before comparing maps.
 */
static void normalize_maps(char *text)
{
	char *line = text;
	while (*line) {
		char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		char *name = memmem(line, len, "/dev/zero (deleted)", 19);
		if (!name)
			name = memmem(line, len, "/SYSV", 5);
		if (name) {
			/* fields: range perms offset dev inode name; blank the inode */
			char *p = line;
			for (int f = 0; f < 4; f++) {
				while (p < name && *p != ' ')
					p++;
				while (p < name && *p == ' ')
					p++;
			}
			/* the inode and the padding after it (its width varies) */
			while (p < name)
				*p++ = '#';
		}
		if (!end)
			break;
		line = end + 1;
	}
}

/*
 * One line per VMA: "start-end: flags", taken from smaps, without "sd" (soft-dirty
 * tracking state, not a property of the mapping the program can rely on).
 */
static void read_vmflags(char *out, size_t size)
{
	if (v_read_file("/proc/self/smaps", smaps_buf, sizeof(smaps_buf)) < 0)
		v_die("read smaps: %s", strerror(errno));
	size_t o = 0;
	out[0] = 0;
	char range[64] = "";
	for (char *line = smaps_buf; *line;) {
		char *end = strchr(line, '\n');
		if (end)
			*end = 0;
		if ((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f')) {
			char *sp = strchr(line, ' ');
			if (sp && strchr(line, '-') && strchr(line, '-') < sp) {
				size_t n = (size_t)(sp - line);
				if (n >= sizeof(range))
					n = sizeof(range) - 1;
				memcpy(range, line, n);
				range[n] = 0;
			}
		}
		if (strncmp(line, "VmFlags:", 8) == 0) {
			o += (size_t)snprintf(out + o, size - o, "%s:", range);
			char *save = NULL;
			for (char *tok = strtok_r(line + 8, " ", &save); tok;
			     tok = strtok_r(NULL, " ", &save)) {
				if (strcmp(tok, "sd") == 0)
					continue;
				o += (size_t)snprintf(out + o, size - o, " %s", tok);
			}
			o += (size_t)snprintf(out + o, size - o, "\n");
			if (o >= size)
				v_die("vmflags buffer too small");
		}
		if (!end)
			break;
		line = end + 1;
	}
}

/* The smaps field "key:" of the VMA starting at addr, in kB, or -1. */
static long smaps_kb(uintptr_t addr, const char *key)
{
	if (v_read_file("/proc/self/smaps", smaps_buf, sizeof(smaps_buf)) < 0)
		return -1;
	char head[32];
	snprintf(head, sizeof(head), "%lx-", (unsigned long)addr);
	char *p = smaps_buf;
	while (p && *p) {
		if (strncmp(p, head, strlen(head)) == 0)
			break;
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	if (!p || !*p)
		return -1;
	size_t klen = strlen(key);
	for (p = strchr(p, '\n'); p && p[1]; p = strchr(p + 1, '\n')) {
		char *l = p + 1;
		if ((l[0] >= '0' && l[0] <= '9') || (l[0] >= 'a' && l[0] <= 'f'))
			if (strchr(l, '-') && strchr(l, '-') < strchr(l, ' '))
				return -1; /* next VMA */
		if (strncmp(l, key, klen) == 0 && l[klen] == ':')
			return strtol(l + klen + 1, NULL, 10);
	}
	return -1;
}

/* /proc/self/stat fields 26-28 and 45-51 (mm layout fields), as text. */
static void read_mm_stat(char *out, size_t size)
{
	static char buf[4096];
	if (v_read_file("/proc/self/stat", buf, sizeof(buf)) < 0)
		v_die("read stat: %s", strerror(errno));
	char *p = strrchr(buf, ')');
	if (!p)
		v_die("bad stat");
	p += 2; /* field 3 */
	static const char *names[52];
	names[26] = "start_code";
	names[27] = "end_code";
	names[28] = "start_stack";
	names[45] = "start_data";
	names[46] = "end_data";
	names[47] = "start_brk";
	names[48] = "arg_start";
	names[49] = "arg_end";
	names[50] = "env_start";
	names[51] = "env_end";
	size_t o = 0;
	out[0] = 0;
	for (int field = 3; *p && field <= 52; field++) {
		char *sp = strchr(p, ' ');
		size_t n = sp ? (size_t)(sp - p) : strlen(p);
		if (field < 52 && names[field])
			o += (size_t)snprintf(out + o, size - o, "%s=%.*s\n", names[field], (int)n,
					      p);
		if (!sp)
			break;
		p = sp + 1;
	}
}

/* 1 if the page at addr is present in memory (pagemap bit 63), 2 if swapped, 0 if not. */
static int page_state(const void *addr)
{
	/* opened and closed each time: an fd on /proc/self/... held across the dump is
	 * not what this victim is about */
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		v_die("open pagemap: %s", strerror(errno));
	uint64_t e;
	off_t off = (off_t)((uintptr_t)addr / PAGE * 8);
	if (pread(fd, &e, 8, off) != 8)
		v_die("read pagemap: %s", strerror(errno));
	close(fd);
	if (e >> 63)
		return 1;
	if ((e >> 62) & 1)
		return 2;
	return 0;
}

/* ---- the layout ------------------------------------------------------------------------ */

#define SPARSE_PAGES 64
#define BIG_SIZE (4UL << 20)
#define THP_SIZE (2UL << 20)
#define PRIV_PAGES 16
#define SHARED_PAGES 8
#define SHANON_PAGES 4
#define NBLOCKS 1000
#define FIXED_ADDR ((void *)0x100000000UL)

static int sparse_touched(int i)
{
	return i % 3 == 0 || i == SPARSE_PAGES - 1 || i == 7;
}

static char *sparse, *big, *thp, *priv, *priv_off, *shared, *shanon, *none, *split, *gapped,
	*code, *dontfork, *locked, *dontdump, *wipe, *rnd, *seq, *noreserve, *fixed, *brk_area;
static char priv_path[4200], shared_path[4200];
static int priv_fd, shared_fd;
static char *blocks[NBLOCKS];
static size_t block_len[NBLOCKS];
static char *large_block;
static void *brk_end;
static int sparse_present[SPARSE_PAGES];

static char *map(size_t len, int prot, int flags)
{
	void *p = mmap(NULL, len, prot, flags | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		v_die("mmap %zu: %s", len, strerror(errno));
	return p;
}

static void do_madvise(void *p, size_t len, int advice, const char *name)
{
	if (madvise(p, len, advice) != 0)
		v_die("madvise %s: %s", name, strerror(errno));
}

static int make_file(const char *name, int file, size_t pages, char *path, size_t pathsize)
{
	snprintf(path, pathsize, "%s/%s", v_tmp(), name);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		v_die("create %s: %s", path, strerror(errno));
	static unsigned char page[PAGE];
	for (size_t i = 0; i < pages; i++) {
		fill_file_bytes(file, page, i * PAGE, PAGE);
		if (pwrite(fd, page, PAGE, (off_t)(i * PAGE)) != (ssize_t)PAGE)
			v_die("write %s: %s", path, strerror(errno));
	}
	return fd;
}

/* Grows the stack by about depth KiB and returns; the frames hold data. */
static __attribute__((noinline)) uint64_t recurse(int depth)
{
	volatile char frame[1024];
	for (size_t i = 0; i < sizeof(frame); i += 64)
		frame[i] = (char)(depth + (int)i);
	if (depth == 0)
		return frame[0];
	return recurse(depth - 1) + frame[64];
}

static void setup(void)
{
	/* brk first, before malloc makes its own use of it */
	brk_area = sbrk(0);
	if (sbrk((intptr_t)(3 * PAGE)) == (void *)-1)
		v_die("sbrk: %s", strerror(errno));
	fill(20, brk_area, 3 * PAGE);

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_segv;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_NODEFER;
	if (sigaction(SIGSEGV, &sa, NULL) != 0)
		v_die("sigaction: %s", strerror(errno));

	/* the stack grows to about 3 MiB, then shrinks back (the VMA stays) */
	(void)recurse(3000);

	/* anonymous private memory: some pages touched, others never */
	sparse = map(SPARSE_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	do_madvise(sparse, SPARSE_PAGES * PAGE, MADV_NOHUGEPAGE, "NOHUGEPAGE");
	for (int i = 0; i < SPARSE_PAGES; i++)
		if (sparse_touched(i))
			fill(1, sparse + i * PAGE, PAGE);
	for (int i = 0; i < SPARSE_PAGES; i++) {
		sparse_present[i] = page_state(sparse + i * PAGE);
		if (sparse_touched(i) != (sparse_present[i] == 1))
			v_die("sparse page %d: present=%d but touched=%d", i, sparse_present[i],
			      sparse_touched(i));
	}

	big = map(BIG_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	fill(2, big, BIG_SIZE);

	/* a 2 MiB aligned MADV_HUGEPAGE region */
	char *raw = map(2 * THP_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	thp = (char *)(((uintptr_t)raw + THP_SIZE - 1) & ~(THP_SIZE - 1));
	if (thp > raw)
		munmap(raw, (size_t)(thp - raw));
	if (thp + THP_SIZE < raw + 2 * THP_SIZE)
		munmap(thp + THP_SIZE, (size_t)(raw + 2 * THP_SIZE - (thp + THP_SIZE)));
	do_madvise(thp, THP_SIZE, MADV_HUGEPAGE, "HUGEPAGE");
	fill(3, thp, THP_SIZE);

	/* MAP_PRIVATE file mapping: pages 1 and 3 written, 0 and 2 read, others untouched */
	priv_fd = make_file("priv.dat", 1, PRIV_PAGES, priv_path, sizeof(priv_path));
	priv = mmap(NULL, PRIV_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, priv_fd, 0);
	if (priv == MAP_FAILED)
		v_die("mmap priv: %s", strerror(errno));
	fill(4, priv + 1 * PAGE, PAGE);
	fill(5, priv + 3 * PAGE, PAGE);
	if (check_file_bytes(1, (unsigned char *)priv, 0, PAGE) >= 0 ||
	    check_file_bytes(1, (unsigned char *)priv + 2 * PAGE, 2 * PAGE, PAGE) >= 0)
		v_die("private mapping does not show the file");
	/* a read-only view of the same file at an offset */
	priv_off = mmap(NULL, 4 * PAGE, PROT_READ, MAP_PRIVATE, priv_fd, 8 * PAGE);
	if (priv_off == MAP_FAILED)
		v_die("mmap priv_off: %s", strerror(errno));

	/* MAP_SHARED file mapping: pages 0-3 written through the mapping */
	shared_fd = make_file("shared.dat", 2, SHARED_PAGES, shared_path, sizeof(shared_path));
	shared = mmap(NULL, SHARED_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, shared_fd, 0);
	if (shared == MAP_FAILED)
		v_die("mmap shared: %s", strerror(errno));
	fill(6, shared, 4 * PAGE);

	/* MAP_SHARED|MAP_ANONYMOUS with contents in pages 0 and 2 */
	shanon = map(SHANON_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED);
	fill(7, shanon, PAGE);
	fill(8, shanon + 2 * PAGE, PAGE);

	/* heap: many small blocks (some freed) and one mmap'ed block */
	for (int i = 0; i < NBLOCKS; i++) {
		block_len[i] = 16 + (size_t)(v_mix((uint64_t)i) % 2000) / 8 * 8;
		blocks[i] = malloc(block_len[i]);
		if (!blocks[i])
			v_die("malloc");
		fill(100 + (uint64_t)i, blocks[i], block_len[i]);
	}
	for (int i = 0; i < NBLOCKS; i += 3) {
		free(blocks[i]);
		blocks[i] = NULL;
	}
	large_block = malloc(1 << 20);
	if (!large_block)
		v_die("malloc large");
	fill(9, large_block, 1 << 20);

	/* PROT_NONE region; a region split into RW / NONE / R / RW */
	none = map(8 * PAGE, PROT_NONE, MAP_PRIVATE);
	split = map(8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	fill(10, split, 8 * PAGE);
	if (mprotect(split + 2 * PAGE, 2 * PAGE, PROT_NONE) != 0 ||
	    mprotect(split + 6 * PAGE, PAGE, PROT_READ) != 0)
		v_die("mprotect: %s", strerror(errno));

	/* executable code: mov $42, %eax; ret */
	code = map(PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	static const unsigned char insn[] = { 0xb8, 42, 0, 0, 0, 0xc3 };
	memcpy(code, insn, sizeof(insn));
	if (mprotect(code, PAGE, PROT_READ | PROT_EXEC) != 0)
		v_die("mprotect exec: %s", strerror(errno));

	/* madvise / mlock settings */
	dontfork = map(4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	fill(12, dontfork, 4 * PAGE);
	do_madvise(dontfork, 4 * PAGE, MADV_DONTFORK, "DONTFORK");
	locked = map(4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	fill(13, locked, 4 * PAGE);
	if (mlock(locked, 4 * PAGE) != 0)
		v_die("mlock: %s", strerror(errno));
	dontdump = map(4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	fill(14, dontdump, 4 * PAGE);
	do_madvise(dontdump, 4 * PAGE, MADV_DONTDUMP, "DONTDUMP");
	wipe = map(4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	fill(15, wipe, 4 * PAGE);
	do_madvise(wipe, 4 * PAGE, MADV_WIPEONFORK, "WIPEONFORK");
	rnd = map(4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	fill(16, rnd, 4 * PAGE);
	do_madvise(rnd, 4 * PAGE, MADV_RANDOM, "RANDOM");
	seq = map(4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	fill(17, seq, 4 * PAGE);
	do_madvise(seq, 4 * PAGE, MADV_SEQUENTIAL, "SEQUENTIAL");
	noreserve = map(4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE);
	fill(18, noreserve, 2 * PAGE);

	/* a mapping at a fixed address far from the others */
	fixed = mmap(FIXED_ADDR, 4 * PAGE, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (fixed != FIXED_ADDR)
		v_die("mmap fixed: %s", strerror(errno));
	fill(19, fixed, 4 * PAGE);

	/* a gap between two mappings that came from one (made last, so that no
	 * later mmap fills it) */
	gapped = map(16 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	fill(11, gapped, 16 * PAGE);
	if (munmap(gapped + 4 * PAGE, 4 * PAGE) != 0)
		v_die("munmap: %s", strerror(errno));


	brk_end = sbrk(0);
}

/* Whether the VmFlags line of the VMA starting at p (in read_vmflags format) has flag. */
static int vma_has_flag(const char *flags, const void *p, const char *flag)
{
	char head[40], want[8];
	snprintf(head, sizeof(head), "%lx-", (unsigned long)(uintptr_t)p);
	snprintf(want, sizeof(want), " %s", flag);
	for (const char *l = flags; l && *l;) {
		const char *end = strchr(l, '\n');
		size_t len = end ? (size_t)(end - l) : strlen(l);
		if (strncmp(l, head, strlen(head)) == 0) {
			for (const char *q = memmem(l, len, want, strlen(want)); q;
			     q = memmem(q + 1, len - (size_t)(q + 1 - l), want, strlen(want)))
				if (q + strlen(want) == l + len || q[strlen(want)] == ' ')
					return 1;
			return 0;
		}
		l = end ? end + 1 : NULL;
	}
	return 0;
}

static void record(void)
{
	if (v_read_file("/proc/self/maps", maps_before, sizeof(maps_before)) < 0)
		v_die("read maps: %s", strerror(errno));
	normalize_maps(maps_before);
	read_vmflags(flags_before, sizeof(flags_before));
	/* the comparison after restore only means something if the flags are there */
	if (!vma_has_flag(flags_before, dontfork, "dc") || !vma_has_flag(flags_before, thp, "hg") ||
	    !vma_has_flag(flags_before, locked, "lo") || !vma_has_flag(flags_before, dontdump, "dd") ||
	    !vma_has_flag(flags_before, wipe, "wf") || !vma_has_flag(flags_before, rnd, "rr") ||
	    !vma_has_flag(flags_before, seq, "sr") || !vma_has_flag(flags_before, sparse, "nh"))
		v_die("the madvise/mlock flags do not show in smaps VmFlags:\n%s", flags_before);
	read_mm_stat(stat_before, sizeof(stat_before));
	auxv_before_len = v_read_file("/proc/self/auxv", auxv_before, sizeof(auxv_before));
	if (readlink("/proc/self/exe", exe_before, sizeof(exe_before) - 1) < 0)
		v_die("readlink exe: %s", strerror(errno));
	cmdline_before_len = v_read_file("/proc/self/cmdline", cmdline_before, sizeof(cmdline_before));
	environ_before_len = v_read_file("/proc/self/environ", environ_before, sizeof(environ_before));
}

static void compare_text(const char *what, const char *before, const char *after)
{
	int line;
	const char *bl;
	const char *al = v_first_diff_line(before, after, &line, &bl);
	if (al)
		v_fail("%s differs at line %d:\n  before: %s\n  after:  %s", what, line,
		       v_line(al, msg_a, sizeof(msg_a)), v_line(bl, msg_b, sizeof(msg_b)));
}

static void check_layout(void)
{
	if (v_read_file("/proc/self/maps", maps_after, sizeof(maps_after)) < 0)
		v_die("read maps: %s", strerror(errno));
	normalize_maps(maps_after);
	compare_text("/proc/self/maps", maps_before, maps_after);
	read_vmflags(flags_after, sizeof(flags_after));
	compare_text("VmFlags (smaps)", flags_before, flags_after);
	read_mm_stat(stat_after, sizeof(stat_after));
	compare_text("mm fields of /proc/self/stat", stat_before, stat_after);
	auxv_after_len = v_read_file("/proc/self/auxv", auxv_after, sizeof(auxv_after));
	if (auxv_after_len != auxv_before_len ||
	    memcmp(auxv_before, auxv_after, (size_t)auxv_before_len) != 0) {
		const uint64_t *a = (const uint64_t *)auxv_before, *b = (const uint64_t *)auxv_after;
		size_t n = (size_t)(auxv_before_len < auxv_after_len ? auxv_before_len : auxv_after_len) / 16;
		size_t i = 0;
		while (i < n && a[2 * i] == b[2 * i] && a[2 * i + 1] == b[2 * i + 1])
			i++;
		if (i < n)
			v_fail("/proc/self/auxv differs (%zd vs %zd bytes): entry %zu: type %lu value %#lx, now type %lu value %#lx",
			       auxv_before_len, auxv_after_len, i, (unsigned long)a[2 * i],
			       (unsigned long)a[2 * i + 1], (unsigned long)b[2 * i], (unsigned long)b[2 * i + 1]);
		else
			v_fail("/proc/self/auxv differs: %zd bytes before, %zd after", auxv_before_len,
			       auxv_after_len);
	}
	if (readlink("/proc/self/exe", exe_after, sizeof(exe_after) - 1) < 0)
		v_fail("readlink /proc/self/exe: %s", strerror(errno));
	else if (strcmp(exe_before, exe_after) != 0)
		v_fail("/proc/self/exe was %s, now %s", exe_before, exe_after);
	cmdline_after_len = v_read_file("/proc/self/cmdline", cmdline_after, sizeof(cmdline_after));
	if (cmdline_after_len != cmdline_before_len ||
	    memcmp(cmdline_before, cmdline_after, (size_t)cmdline_before_len) != 0)
		v_fail("/proc/self/cmdline differs (%zd vs %zd bytes)", cmdline_before_len,
		       cmdline_after_len);
	environ_after_len = v_read_file("/proc/self/environ", environ_after, sizeof(environ_after));
	if (environ_after_len != environ_before_len ||
	    memcmp(environ_before, environ_after, (size_t)environ_before_len) != 0)
		v_fail("/proc/self/environ differs (%zd vs %zd bytes)", environ_before_len,
		       environ_after_len);
}

#define CHECK_FILL(tag, p, len, what)                                                       \
	do {                                                                                \
		long off_ = check_fill(tag, p, len);                                         \
		if (off_ >= 0)                                                               \
			v_fail("%s: wrong data at %p (offset %ld)", what, (void *)((p) + off_), \
			       off_);                                                        \
	} while (0)

static void check_contents(void)
{
	/* untouched pages must still be untouched: check before reading anything */
	for (int i = 0; i < SPARSE_PAGES; i++) {
		int st = page_state(sparse + i * PAGE);
		if (!sparse_touched(i) && st != 0)
			v_fail("sparse page %d was never touched but is %s after restore", i,
			       st == 1 ? "present" : "swapped");
	}
	for (int i = 0; i < SPARSE_PAGES; i++) {
		if (sparse_touched(i)) {
			CHECK_FILL(1, sparse + i * PAGE, PAGE, "touched anonymous page");
		} else {
			long z = check_zero(sparse + i * PAGE, PAGE);
			if (z >= 0)
				v_fail("untouched anonymous page %d is not zero at offset %ld", i, z);
		}
	}
	CHECK_FILL(2, big, BIG_SIZE, "4 MiB anonymous region");
	CHECK_FILL(3, thp, THP_SIZE, "MADV_HUGEPAGE region");

	/* private file mapping */
	for (int i = 0; i < PRIV_PAGES; i++) {
		if (i == 1) {
			CHECK_FILL(4, priv + PAGE, PAGE, "written page 1 of MAP_PRIVATE file mapping");
		} else if (i == 3) {
			CHECK_FILL(5, priv + 3 * PAGE, PAGE, "written page 3 of MAP_PRIVATE file mapping");
		} else {
			long o = check_file_bytes(1, (unsigned char *)priv + i * PAGE, (size_t)i * PAGE, PAGE);
			if (o >= 0)
				v_fail("unwritten page %d of MAP_PRIVATE file mapping differs from the file at offset %ld",
				       i, o);
		}
	}
	for (int i = 0; i < 4; i++) {
		long o = check_file_bytes(1, (unsigned char *)priv_off + i * PAGE, (size_t)(8 + i) * PAGE, PAGE);
		if (o >= 0)
			v_fail("page %d of the read-only file mapping at file offset 32 KiB differs at %ld", i, o);
	}
	/* unwritten private pages are still the file's: a new write to the file shows */
	static unsigned char page[PAGE];
	memset(page, 0x5a, PAGE);
	if (pwrite(priv_fd, page, PAGE, 5 * PAGE) != (ssize_t)PAGE)
		v_fail("pwrite priv: %s", strerror(errno));
	else if (priv[5 * PAGE] != 0x5a || priv[6 * PAGE - 1] != 0x5a)
		v_fail("unwritten page 5 of the MAP_PRIVATE mapping does not follow the file: it was restored as a private copy");
	/* ...and written pages are private copies: a write to the file does not show */
	if (pwrite(priv_fd, page, PAGE, 1 * PAGE) != (ssize_t)PAGE)
		v_fail("pwrite priv: %s", strerror(errno));
	else
		CHECK_FILL(4, priv + PAGE, PAGE, "written page 1 of MAP_PRIVATE mapping after a file write");

	/* shared file mapping */
	CHECK_FILL(6, shared, 4 * PAGE, "written pages of MAP_SHARED file mapping");
	for (int i = 4; i < SHARED_PAGES; i++) {
		long o = check_file_bytes(2, (unsigned char *)shared + i * PAGE, (size_t)i * PAGE, PAGE);
		if (o >= 0)
			v_fail("page %d of MAP_SHARED file mapping differs from the file at %ld", i, o);
	}
	if (pread(shared_fd, page, PAGE, 2 * PAGE) != (ssize_t)PAGE)
		v_fail("pread shared: %s", strerror(errno));
	else if (memcmp(page, shared + 2 * PAGE, PAGE) != 0)
		v_fail("the file under the MAP_SHARED mapping does not hold what was written through it");
	memset(shared + 5 * PAGE, 0x77, PAGE);
	if (pread(shared_fd, page, PAGE, 5 * PAGE) != (ssize_t)PAGE || page[0] != 0x77 ||
	    page[PAGE - 1] != 0x77)
		v_fail("a write through the MAP_SHARED mapping after restore does not reach the file");
	memset(page, 0x66, PAGE);
	if (pwrite(shared_fd, page, PAGE, 6 * PAGE) != (ssize_t)PAGE || shared[6 * PAGE] != 0x66)
		v_fail("a write to the file does not show in the MAP_SHARED mapping after restore");

	/* shared anonymous */
	CHECK_FILL(7, shanon, PAGE, "MAP_SHARED|MAP_ANONYMOUS page 0");
	CHECK_FILL(8, shanon + 2 * PAGE, PAGE, "MAP_SHARED|MAP_ANONYMOUS page 2");
	if (check_zero(shanon + PAGE, PAGE) >= 0 || check_zero(shanon + 3 * PAGE, PAGE) >= 0)
		v_fail("untouched pages of MAP_SHARED|MAP_ANONYMOUS are not zero");

	/* heap */
	for (int i = 0; i < NBLOCKS; i++)
		if (blocks[i] && check_fill(100 + (uint64_t)i, blocks[i], block_len[i]) >= 0) {
			v_fail("malloc block %d (%zu bytes at %p) lost its contents", i, block_len[i],
			       (void *)blocks[i]);
			break;
		}
	CHECK_FILL(9, large_block, 1 << 20, "1 MiB malloc block");
	CHECK_FILL(20, brk_area, 3 * PAGE, "memory from sbrk");
	if (sbrk(0) != brk_end)
		v_fail("sbrk(0) was %p, now %p", brk_end, sbrk(0));

	/* protections */
	if (!read_faults(none) || !read_faults(none + 7 * PAGE))
		v_fail("PROT_NONE region is readable after restore");
	CHECK_FILL(10, split, 2 * PAGE, "split region, RW part");
	if (!read_faults(split + 2 * PAGE) || !read_faults(split + 3 * PAGE))
		v_fail("PROT_NONE middle of split region is readable");
	CHECK_FILL(10, split + 4 * PAGE, 2 * PAGE, "split region, second RW part");
	CHECK_FILL(10, split + 6 * PAGE, PAGE, "split region, read-only page");
	if (!write_faults(split + 6 * PAGE))
		v_fail("read-only page is writable after restore");
	CHECK_FILL(10, split + 7 * PAGE, PAGE, "split region, last RW page");
	if (write_faults(split + 7 * PAGE))
		v_fail("RW page is not writable after restore");
	CHECK_FILL(11, gapped, 4 * PAGE, "mapping before a gap");
	CHECK_FILL(11, gapped + 8 * PAGE, 8 * PAGE, "mapping after a gap");
	if (!read_faults(gapped + 4 * PAGE) || !read_faults(gapped + 7 * PAGE))
		v_fail("the gap between mappings is mapped after restore");
	int (*fn)(void) = (int (*)(void))(void *)code;
	if (fn() != 42)
		v_fail("code in an executable anonymous page does not run correctly");
	if (!write_faults(code))
		v_fail("executable page is writable after restore");

	CHECK_FILL(12, dontfork, 4 * PAGE, "MADV_DONTFORK region");
	CHECK_FILL(13, locked, 4 * PAGE, "mlock'ed region");
	unsigned char vec[4];
	if (mincore(locked, 4 * PAGE, vec) != 0)
		v_fail("mincore: %s", strerror(errno));
	else
		for (int i = 0; i < 4; i++)
			if (!(vec[i] & 1))
				v_fail("page %d of the mlock'ed region is not resident", i);
	long lk = smaps_kb((uintptr_t)locked, "Locked");
	if (lk != (long)(4 * PAGE / 1024))
		v_fail("smaps Locked of the mlock'ed region is %ld kB, expected %lu", lk, 4 * PAGE / 1024);
	CHECK_FILL(14, dontdump, 4 * PAGE, "MADV_DONTDUMP region");
	CHECK_FILL(15, wipe, 4 * PAGE, "MADV_WIPEONFORK region");
	CHECK_FILL(16, rnd, 4 * PAGE, "MADV_RANDOM region");
	CHECK_FILL(17, seq, 4 * PAGE, "MADV_SEQUENTIAL region");
	CHECK_FILL(18, noreserve, 2 * PAGE, "MAP_NORESERVE region");
	CHECK_FILL(19, fixed, 4 * PAGE, "mapping at 0x100000000");
}

/* The vDSO still works and reads the live clock: compare it with the system call. */
static void check_vdso_clocks(void)
{
	static const struct {
		clockid_t id;
		const char *name;
	} clocks[] = { { CLOCK_MONOTONIC, "CLOCK_MONOTONIC" },
		       { CLOCK_REALTIME, "CLOCK_REALTIME" },
		       { CLOCK_BOOTTIME, "CLOCK_BOOTTIME" } };
	for (size_t i = 0; i < sizeof(clocks) / sizeof(clocks[0]); i++) {
		struct timespec v, k;
		if (clock_gettime(clocks[i].id, &v) != 0 ||
		    syscall(SYS_clock_gettime, clocks[i].id, &k) != 0) {
			v_fail("clock_gettime(%s): %s", clocks[i].name, strerror(errno));
			continue;
		}
		long long d = (long long)(k.tv_sec - v.tv_sec) * 1000000000LL + (k.tv_nsec - v.tv_nsec);
		if (d < 0 || d > 500000000LL)
			v_fail("%s from the vDSO is %lld ns away from the system call's: the vDSO data is stale",
			       clocks[i].name, d);
	}
	struct timeval tv;
	gettimeofday(&tv, NULL);
	long kt = syscall(SYS_time, NULL);
	if (tv.tv_sec < kt - 1 || tv.tv_sec > kt + 1)
		v_fail("gettimeofday from the vDSO says %ld, time(2) says %ld", (long)tv.tv_sec, kt);
}

/* Things that change the layout: done last. */
static void check_growth(void)
{
	/* the stack can still grow (it is a grows-down VMA with its guard gap) */
	if (recurse(6000) == 12345)
		v_say("");
	/* malloc and brk still work */
	void *cur = sbrk(0);
	if (sbrk((intptr_t)PAGE) == (void *)-1)
		v_fail("sbrk(+4096) fails after restore: %s", strerror(errno));
	else {
		memset(cur, 1, PAGE);
		if (sbrk(-(intptr_t)PAGE) == (void *)-1)
			v_fail("sbrk(-4096) fails after restore");
	}
	for (int i = 0; i < 200; i++) {
		char *p = malloc(64 + (size_t)i * 100);
		if (!p) {
			v_fail("malloc fails after restore");
			break;
		}
		memset(p, i, 64 + (size_t)i * 100);
		free(p);
	}
	char *p = malloc(8 << 20);
	if (!p)
		v_fail("large malloc fails after restore");
	else {
		memset(p, 3, 8 << 20);
		free(p);
	}
}

int main(void)
{
	/* data on the stack of main */
	uint64_t on_stack[512];
	fill(30, on_stack, sizeof(on_stack));

	setup();
	record();
	v_ready();
	v_wait_go();

	check_layout();
	check_contents();
	CHECK_FILL(30, (char *)on_stack, sizeof(on_stack), "array on the stack of main");
	check_vdso_clocks();
	check_growth();
	v_cleanup_tmp();
	v_finish();
}
