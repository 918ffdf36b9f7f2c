/*
 * Shared helpers for the stasis victim programs (see README.md for the protocol).
 *
 * Everything here avoids stdio and malloc after setup: output goes through write(2)
 * from static buffers, so that checking the state after restore does not itself change
 * the state (heap layout, /proc/self/maps, fd table).
 */
#ifndef STASIS_VICTIM_H
#define STASIS_VICTIM_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static __attribute__((unused)) int v_failures;

/* Writes all of buf to fd, retrying on EINTR and short writes. */
static __attribute__((unused)) void v_write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		buf += n;
		len -= (size_t)n;
	}
}

static __attribute__((unused)) void v_say(const char *s)
{
	v_write_all(1, s, strlen(s));
}

/* printf-like output to stdout with a static buffer. */
__attribute__((format(printf, 1, 2), unused)) static void v_print(const char *fmt, ...)
{
	static char buf[4096];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	v_write_all(1, buf, (size_t)n);
}

/* Reports one failed check ("FAIL: ..." on its own line) and keeps going. */
__attribute__((format(printf, 1, 2), unused)) static void v_fail(const char *fmt, ...)
{
	static char buf[4096];
	va_list ap;
	int n = snprintf(buf, sizeof(buf), "FAIL: ");
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 2, fmt, ap);
	va_end(ap);
	if ((size_t)n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	v_write_all(1, buf, (size_t)n);
	v_failures++;
}

/* A setup step that failed: the victim cannot run at all. */
__attribute__((format(printf, 1, 2), noreturn, unused)) static void v_die(const char *fmt, ...)
{
	static char buf[4096];
	va_list ap;
	int n = snprintf(buf, sizeof(buf), "FAIL: setup: ");
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 2, fmt, ap);
	va_end(ap);
	if ((size_t)n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	v_write_all(1, buf, (size_t)n);
	_exit(1);
}

#define V_CHECK(cond, ...)                  \
	do {                                \
		if (!(cond))                \
			v_fail(__VA_ARGS__); \
	} while (0)

/* Prints PASS and exits 0 when no check failed, exits 1 otherwise. */
__attribute__((noreturn, unused)) static void v_finish(void)
{
	if (v_failures == 0) {
		v_say("PASS\n");
		_exit(0);
	}
	v_print("FAIL: %d check(s) failed\n", v_failures);
	_exit(1);
}

static __attribute__((unused)) void v_ready(void)
{
	v_say("READY\n");
}

static __attribute__((unused)) const char *v_go_path(void)
{
	const char *p = getenv("STASIS_GO");
	if (!p || !*p)
		v_die("STASIS_GO is not set");
	return p;
}

/* Sleeps about ms milliseconds, resuming after EINTR. */
static __attribute__((unused)) void v_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Polls every ~10 ms until the go file exists. */
static __attribute__((unused)) void v_wait_go(void)
{
	const char *go = v_go_path();
	struct stat st;
	while (stat(go, &st) != 0)
		v_sleep_ms(10);
}

/* Reads a whole (proc) file into buf, NUL-terminated; returns its length or -1. */
static __attribute__((unused)) ssize_t v_read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t len = 0;
	while (len + 1 < size) {
		ssize_t n = read(fd, buf + len, size - 1 - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = 0;
	return (ssize_t)len;
}

/*
 * Copies the value of the line "key:\t..." of a /proc status-like text into out
 * (without the key and leading blanks, without the newline). Returns 0 if found.
 */
static __attribute__((unused)) int v_status_field(const char *text, const char *key, char *out, size_t size)
{
	size_t klen = strlen(key);
	const char *p = text;
	while (p && *p) {
		if (strncmp(p, key, klen) == 0 && p[klen] == ':') {
			p += klen + 1;
			while (*p == ' ' || *p == '\t')
				p++;
			size_t i = 0;
			while (p[i] && p[i] != '\n' && i + 1 < size) {
				out[i] = p[i];
				i++;
			}
			out[i] = 0;
			return 0;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return -1;
}

/* Returns the first line (1-based number in *lineno) where a and b differ, or NULL. */
static __attribute__((unused)) const char *v_first_diff_line(const char *a, const char *b, int *lineno, const char **bline)
{
	int line = 1;
	const char *la = a, *lb = b;
	while (*la || *lb) {
		const char *ea = strchr(la, '\n');
		const char *eb = strchr(lb, '\n');
		size_t na = ea ? (size_t)(ea - la) : strlen(la);
		size_t nb = eb ? (size_t)(eb - lb) : strlen(lb);
		if (na != nb || memcmp(la, lb, na) != 0) {
			*lineno = line;
			*bline = lb;
			return la;
		}
		la += na + (ea ? 1 : 0);
		lb += nb + (eb ? 1 : 0);
		line++;
	}
	return NULL;
}

/* Copies one line (up to newline) into out for messages. */
static __attribute__((unused)) const char *v_line(const char *p, char *out, size_t size)
{
	size_t i = 0;
	if (!*p) {
		snprintf(out, size, "<end of text>");
		return out;
	}
	while (p[i] && p[i] != '\n' && i + 1 < size) {
		out[i] = p[i];
		i++;
	}
	out[i] = 0;
	return out;
}

/*
 * The directory the victim keeps its files in: $STASIS_TMP (made fresh by the test
 * harness, which removes it) or a new directory under /tmp (removed by v_cleanup_tmp).
 */
static char v_tmpdir[4096];
static __attribute__((unused)) int v_tmpdir_owned;

static __attribute__((unused)) const char *v_tmp(void)
{
	if (v_tmpdir[0])
		return v_tmpdir;
	const char *t = getenv("STASIS_TMP");
	if (t && *t) {
		snprintf(v_tmpdir, sizeof(v_tmpdir), "%s", t);
		return v_tmpdir;
	}
	snprintf(v_tmpdir, sizeof(v_tmpdir), "/tmp/stasis-victim-XXXXXX");
	if (!mkdtemp(v_tmpdir))
		v_die("mkdtemp: %s", strerror(errno));
	v_tmpdir_owned = 1;
	return v_tmpdir;
}

/*
 * Removes the victim's own temporary directory if it created one (standalone runs);
 * with $STASIS_TMP the harness owns the files (it may restore the same image again).
 */
static __attribute__((unused)) int v_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP || flag == FTW_D)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

static __attribute__((unused)) void v_cleanup_tmp(void)
{
	if (!v_tmpdir_owned)
		return;
	nftw(v_tmpdir, v_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A cheap deterministic 64-bit mixer used for memory patterns. */
static inline uint64_t v_mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

#endif
