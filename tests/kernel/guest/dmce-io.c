/*
 * dmce-io: tiny static I/O helper run inside the kernel-lab guest.
 *
 *   dmce-io write   DEV SECTOR COUNT TAG   O_DIRECT write of COUNT sectors at SECTOR;
 *                                          every sector holds "TAG@<sector>" padded
 *   dmce-io fuawrite DEV SECTOR COUNT TAG  the same with O_DSYNC: every write bio has REQ_FUA
 *   dmce-io discard DEV SECTOR COUNT       BLKDISCARD of the byte range
 *   dmce-io flush   DEV                    fsync (empty REQ_PREFLUSH bio)
 *   dmce-io sample  DEV SECTOR COUNT STEP  prints the stamp of every STEP-th sector
 *   dmce-io size    DEV                    prints the size in sectors
 *   dmce-io spread  DEV FIRST STEP COUNT TAG
 *                                          buffered 4 KiB writes at sectors FIRST,
 *                                          FIRST + STEP, ... (COUNT of them), then
 *                                          fsync: the target gets them as one batch
 *
 * Exit status 0 on success, 1 on an I/O error (message on stderr).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define SECTOR 512ULL
#define CHUNK_SECTORS 2048ULL

static unsigned long long num(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 0);
	if (*s == '\0' || *end != '\0') {
		fprintf(stderr, "dmce-io: bad number '%s'\n", s);
		exit(2);
	}
	return v;
}

static int open_dev(const char *dev, int flags)
{
	int fd = open(dev, flags);
	if (fd < 0) {
		fprintf(stderr, "dmce-io: open %s: %s\n", dev, strerror(errno));
		exit(1);
	}
	return fd;
}

static void stamp(char *sec, const char *tag, unsigned long long s)
{
	int n;
	memset(sec, 0, SECTOR);
	n = snprintf(sec, SECTOR, "%s@%llu", tag, s);
	/* repeat the stamp to fill the sector (keeps each sector self-describing) */
	for (int i = n + 1; i + n + 1 < (int)SECTOR; i += n + 1)
		memcpy(sec + i, sec, n);
}

static int do_write(const char *dev, unsigned long long s0, unsigned long long cnt, const char *tag,
		    int fua)
{
	int fd = open_dev(dev, O_WRONLY | O_DIRECT | (fua ? O_DSYNC : 0));
	char *buf;
	if (posix_memalign((void **)&buf, 4096, CHUNK_SECTORS * SECTOR))
		return 1;
	for (unsigned long long done = 0; done < cnt;) {
		unsigned long long n = cnt - done;
		if (n > CHUNK_SECTORS)
			n = CHUNK_SECTORS;
		for (unsigned long long i = 0; i < n; i++)
			stamp(buf + i * SECTOR, tag, s0 + done + i);
		ssize_t w = pwrite(fd, buf, n * SECTOR, (off_t)((s0 + done) * SECTOR));
		if (w != (ssize_t)(n * SECTOR)) {
			fprintf(stderr, "dmce-io: write %s at %llu: %s\n", dev, s0 + done,
				w < 0 ? strerror(errno) : "short write");
			return 1;
		}
		done += n;
	}
	free(buf);
	return close(fd) ? 1 : 0;
}

static int do_discard(const char *dev, unsigned long long s0, unsigned long long cnt)
{
	int fd = open_dev(dev, O_WRONLY);
	uint64_t range[2] = { s0 * SECTOR, cnt * SECTOR };
	if (ioctl(fd, BLKDISCARD, range)) {
		fprintf(stderr, "dmce-io: discard %s %llu+%llu: %s\n", dev, s0, cnt, strerror(errno));
		return 1;
	}
	return close(fd) ? 1 : 0;
}

static int do_flush(const char *dev)
{
	int fd = open_dev(dev, O_WRONLY);
	if (fsync(fd)) {
		fprintf(stderr, "dmce-io: fsync %s: %s\n", dev, strerror(errno));
		return 1;
	}
	return close(fd) ? 1 : 0;
}

static int do_sample(const char *dev, unsigned long long s0, unsigned long long cnt, unsigned long long step)
{
	int fd = open_dev(dev, O_RDONLY | O_DIRECT);
	char *buf;
	if (step == 0)
		step = 1;
	if (posix_memalign((void **)&buf, 4096, 4096))
		return 1;
	for (unsigned long long s = s0; s < s0 + cnt; s += step) {
		ssize_t r = pread(fd, buf, SECTOR, (off_t)(s * SECTOR));
		if (r != (ssize_t)SECTOR) {
			fprintf(stderr, "dmce-io: read %s at %llu failed\n", dev, s);
			return 1;
		}
		buf[64] = 0;
		printf("%llu %s\n", s, buf[0] ? buf : "-");
	}
	return 0;
}

static int do_spread(const char *dev, unsigned long long first, unsigned long long step,
		     unsigned long long cnt, const char *tag)
{
	int fd = open_dev(dev, O_WRONLY);
	char buf[4096];
	for (unsigned long long i = 0; i < cnt; i++) {
		unsigned long long s = first + i * step;
		for (int k = 0; k < 8; k++)
			stamp(buf + k * SECTOR, tag, s + k);
		ssize_t w = pwrite(fd, buf, sizeof(buf), (off_t)(s * SECTOR));
		if (w != (ssize_t)sizeof(buf)) {
			fprintf(stderr, "dmce-io: write %s at %llu: %s\n", dev, s,
				w < 0 ? strerror(errno) : "short write");
			return 1;
		}
	}
	if (fsync(fd)) {
		fprintf(stderr, "dmce-io: fsync %s: %s\n", dev, strerror(errno));
		return 1;
	}
	return close(fd) ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc >= 6 && !strcmp(argv[1], "write"))
		return do_write(argv[2], num(argv[3]), num(argv[4]), argv[5], 0);
	if (argc >= 6 && !strcmp(argv[1], "fuawrite"))
		return do_write(argv[2], num(argv[3]), num(argv[4]), argv[5], 1);
	if (argc >= 5 && !strcmp(argv[1], "discard"))
		return do_discard(argv[2], num(argv[3]), num(argv[4]));
	if (argc >= 3 && !strcmp(argv[1], "flush"))
		return do_flush(argv[2]);
	if (argc >= 6 && !strcmp(argv[1], "sample"))
		return do_sample(argv[2], num(argv[3]), num(argv[4]), num(argv[5]));
	if (argc >= 3 && !strcmp(argv[1], "size")) {
		int fd = open_dev(argv[2], O_RDONLY);
		unsigned long long b = 0;
		if (ioctl(fd, BLKGETSIZE64, &b))
			return 1;
		printf("%llu\n", b / SECTOR);
		return 0;
	}
	if (argc >= 7 && !strcmp(argv[1], "spread"))
		return do_spread(argv[2], num(argv[3]), num(argv[4]), num(argv[5]), argv[6]);
	fprintf(stderr, "usage: dmce-io write|fuawrite|discard|flush|sample|size|spread ...\n");
	return 2;
}
