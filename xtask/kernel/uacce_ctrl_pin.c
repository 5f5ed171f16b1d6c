// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * uacce-ctrl-pin: guest program of the uacce-trace test kernel. Exercises
 * /dev/uacce_ctrl (the RFC pin ABI, see uacce_ctrl/uacce_ctrl.c) and checks
 * it against the kernel's own pin counters.
 *
 *   uacce-ctrl-pin [PAGES]      (default 16)
 *   uacce-ctrl-pin --hold-pasid
 *   uacce-ctrl-pin --queue DEVICE
 *
 * Maps PAGES pages, pins them with UACCE_CMD_PIN, checks the error cases
 * (duplicate pin -> EEXIST, unpin of nothing -> ENOENT, empty range ->
 * EINVAL), unpins them with UACCE_CMD_UNPIN, pins them again and closes the
 * file (release unpins). After each step it folds the per-CPU vmstat deltas
 * (/proc/sys/vm/stat_refresh) and reads nr_foll_pin_acquired/released.
 *
 * Prints one JSON line per step and a last line
 *   {"uacce_ctrl_pin":"ok"|"fail", ...}
 * and exits 0 only when every count matched.
 *
 * --hold-pasid: gives this process's mm a PASID through the fixture's
 * test-only UACCE_CTRL_TEST_MM_PASID ioctl (the state an SVA bind leaves),
 * prints {"pasid_holder":"ok","pid":N,"pasid":P} and sleeps until a signal
 * ends it (the kernel frees the PASID at mm teardown).
 *
 * --queue DEVICE: the uacce queue life cycle on DEVICE (the fixture's
 * /dev/uacce_fixture-0): open, UACCE_CMD_START_Q (0), START_Q again
 * (EINVAL: already started), UACCE_CMD_PUT_Q (0), close; prints the steps
 * and {"uacce_queue":"ok"|"fail","pid":N,...}.
 *
 * The pin ABI and the touched pages are ut_guest.h's (see there how it is
 * built).
 */
#define _GNU_SOURCE
#include "ut_guest.h"

/* Fixture test ioctl (not in the RFC), see uacce_ctrl/uacce_ctrl.c. */
#define UACCE_CTRL_TEST_MM_PASID _IOR('W', 0x7e, uint32_t)
/* include/uapi/misc/uacce/uacce.h */
#define UACCE_CMD_START_Q _IO('W', 0)
#define UACCE_CMD_PUT_Q _IO('W', 1)

_Static_assert(UACCE_CMD_START_Q == 0x5700, "UACCE_CMD_START_Q");
_Static_assert(UACCE_CMD_PUT_Q == 0x5701, "UACCE_CMD_PUT_Q");

static int failures;

static void stat_refresh(void)
{
	int fd = open("/proc/sys/vm/stat_refresh", O_WRONLY);

	if (fd < 0 || write(fd, "1", 1) != 1) {
		fprintf(stderr, "uacce-ctrl-pin: stat_refresh: %s\n", strerror(errno));
		failures++;
	}
	if (fd >= 0)
		close(fd);
}

/* nr_foll_pin_acquired and nr_foll_pin_released, after a refresh. */
static void pin_counts(long long *acquired, long long *released)
{
	char name[64];
	long long value;
	FILE *f;

	stat_refresh();
	*acquired = *released = -1;
	f = fopen("/proc/vmstat", "r");
	if (!f) {
		perror("uacce-ctrl-pin: /proc/vmstat");
		failures++;
		return;
	}
	while (fscanf(f, "%63s %lld", name, &value) == 2) {
		if (!strcmp(name, "nr_foll_pin_acquired"))
			*acquired = value;
		else if (!strcmp(name, "nr_foll_pin_released"))
			*released = value;
	}
	fclose(f);
}

/* Runs one ioctl; checks its errno (0 = success expected). */
static void expect_ioctl(const char *step, int fd, unsigned long cmd,
			 struct uacce_pin_address *arg, int want_errno)
{
	int ret = ioctl(fd, cmd, arg);
	int got = ret < 0 ? errno : 0;
	int ok = got == want_errno;

	printf("{\"step\":\"%s\",\"errno\":%d,\"want_errno\":%d,\"ok\":%s}\n", step,
	       got, want_errno, ok ? "true" : "false");
	if (!ok)
		failures++;
}

/* Checks the counter movement since (a0, r0). */
static void expect_counts(const char *step, long long a0, long long r0,
			  long long want_acquired, long long want_released)
{
	long long a1, r1;
	int ok;

	pin_counts(&a1, &r1);
	ok = a1 - a0 == want_acquired && r1 - r0 == want_released;
	printf("{\"step\":\"%s\",\"acquired\":%lld,\"released\":%lld,"
	       "\"want_acquired\":%lld,\"want_released\":%lld,\"ok\":%s}\n",
	       step, a1 - a0, r1 - r0, want_acquired, want_released,
	       ok ? "true" : "false");
	if (!ok)
		failures++;
}

static int hold_pasid(void)
{
	uint32_t pasid = 0;
	int fd = open("/dev/uacce_ctrl", O_RDWR);

	if (fd < 0 || ioctl(fd, UACCE_CTRL_TEST_MM_PASID, &pasid)) {
		printf("{\"pasid_holder\":\"fail\",\"errno\":%d}\n", errno);
		return 1;
	}
	/* The PASID belongs to the mm, not the file: closing keeps it. */
	close(fd);
	printf("{\"pasid_holder\":\"ok\",\"pid\":%d,\"pasid\":%u}\n",
	       getpid(), pasid);
	for (;;)
		pause();
}

static int queue_cycle(const char *device)
{
	const char *name = strrchr(device, '/') ? strrchr(device, '/') + 1 : device;
	int fd = open(device, O_RDWR);

	if (fd < 0) {
		printf("{\"uacce_queue\":\"fail\",\"step\":\"open\",\"errno\":%d}\n",
		       errno);
		return 1;
	}
	printf("{\"step\":\"open\",\"ok\":true}\n");
	expect_ioctl("start_q", fd, UACCE_CMD_START_Q, NULL, 0);
	expect_ioctl("start_q_again", fd, UACCE_CMD_START_Q, NULL, EINVAL);
	expect_ioctl("put_q", fd, UACCE_CMD_PUT_Q, NULL, 0);
	if (close(fd))
		failures++;
	printf("{\"uacce_queue\":\"%s\",\"pid\":%d,\"device\":\"%s\","
	       "\"start_q\":2,\"put_q\":1,\"failures\":%d}\n",
	       failures ? "fail" : "ok", getpid(), name, failures);
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	long page = sysconf(_SC_PAGESIZE);
	long pages = argc > 1 ? strtol(argv[1], NULL, 0) : 16;
	struct uacce_pin_address range, empty;
	long long a0, r0;
	char *buf;
	int fd;

	ut_prog = "uacce-ctrl-pin";
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 2 && !strcmp(argv[1], "--hold-pasid"))
		return hold_pasid();
	if (argc == 3 && !strcmp(argv[1], "--queue"))
		return queue_cycle(argv[2]);
	if (pages <= 0) {
		fprintf(stderr, "usage: uacce-ctrl-pin [PAGES > 0]\n");
		return 2;
	}
	buf = ut_map_pages(pages, page);
	fd = open("/dev/uacce_ctrl", O_RDWR);
	if (fd < 0)
		ut_die("/dev/uacce_ctrl");
	range.addr = (uintptr_t)buf;
	range.size = pages * page;
	empty.addr = (uintptr_t)buf;
	empty.size = 0;

	pin_counts(&a0, &r0);
	expect_ioctl("unpin_nothing", fd, UACCE_CMD_UNPIN, &range, ENOENT);
	expect_ioctl("pin_empty", fd, UACCE_CMD_PIN, &empty, EINVAL);
	expect_ioctl("pin", fd, UACCE_CMD_PIN, &range, 0);
	expect_counts("after_pin", a0, r0, pages, 0);
	expect_ioctl("pin_again", fd, UACCE_CMD_PIN, &range, EEXIST);
	expect_ioctl("unpin", fd, UACCE_CMD_UNPIN, &range, 0);
	expect_counts("after_unpin", a0, r0, pages, pages);
	expect_ioctl("unpin_again", fd, UACCE_CMD_UNPIN, &range, ENOENT);

	pin_counts(&a0, &r0);
	expect_ioctl("pin_before_close", fd, UACCE_CMD_PIN, &range, 0);
	close(fd);
	expect_counts("after_close", a0, r0, pages, pages);

	printf("{\"uacce_ctrl_pin\":\"%s\",\"pages\":%ld,\"failures\":%d}\n",
	       failures ? "fail" : "ok", pages, failures);
	return failures ? 1 : 0;
}
