/*
 * simple_victim: a small process (a few MiB of patterned memory, an open file at an
 * offset, a counter) used where the test is about the tool rather than about a
 * particular kind of state: error paths, corrupted images, show/check.
 */
#include "victim.h"

#include <sys/mman.h>

#define WORDS (1 << 19) /* 4 MiB */

int main(void)
{
	uint64_t *mem = mmap(NULL, WORDS * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		v_die("mmap: %s", strerror(errno));
	for (size_t i = 0; i < WORDS; i++)
		mem[i] = v_mix(i);
	char path[4200];
	snprintf(path, sizeof(path), "%s/simple.dat", v_tmp());
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, mem, 65536) != 65536)
		v_die("file: %s", strerror(errno));
	lseek(fd, 1000, SEEK_SET);

	v_ready();
	v_wait_go();

	for (size_t i = 0; i < WORDS; i++)
		if (mem[i] != v_mix(i)) {
			v_fail("memory differs at word %zu", i);
			break;
		}
	V_CHECK(lseek(fd, 0, SEEK_CUR) == 1000, "file offset is %lld, expected 1000",
		(long long)lseek(fd, 0, SEEK_CUR));
	v_cleanup_tmp();
	v_finish();
}
