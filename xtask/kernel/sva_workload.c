// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * sva-workload: guest program of the uacce-trace test kernel on the QEMU
 * with the uacce-sva-test accelerator (xtask/qemu/). A real uacce SVA
 * client: the device reads and writes this process's memory by its
 * virtual addresses, in the PASID that opening the device bound.
 *
 *   sva-workload PAGES DEVICE [--shared-vmstat] [--wait-for FILE]
 *                [--rounds N] [--gap-ms MS]
 *   (DEVICE: /dev/uacce_sva_test-N)
 *
 * --shared-vmstat: other processes pin at the same time, so the vmstat
 * delta around this one's pin is printed but not required to be PAGES
 * (the caller checks the sum).
 * --wait-for FILE: after step 1 (bound, its "sva_open" line printed), wait
 * until FILE exists before the phases: a process that bound its PASID
 * before a tracer started.
 * --rounds N (1..100000), --gap-ms MS (0..60000): the fault phase N times,
 * each on PAGES fresh pages, then one pin and the pinned phase N times on
 * the same pinned pages, MS milliseconds apart (`cargo xtask demo --sva`:
 * a live view where the faults go on for a while, then stop). Defaults 1
 * and 0: the steps below once.
 *
 * 1. open DEVICE (uacce binds this mm: iommu_sva_bind_device), START_Q,
 *    mmap the queue's register page (region 0, UACCE_QFRT_MMIO).
 * 2. fault phase: PAGES fresh anonymous pages, never touched; the device
 *    fills them with a pattern. Every page is absent, so the device sends
 *    one page request per page and the IOMMU driver reports each from its
 *    page request IRQ thread; the page request count must be PAGES and the
 *    memory must hold the pattern.
 * 3. pinned phase: PAGES other fresh pages, pinned first through
 *    /dev/uacce_ctrl (nr_foll_pin_acquired must grow by PAGES, after
 *    /proc/sys/vm/stat_refresh); the device fills them with no page request.
 *
 * Each phase prints one JSON line with its brackets (CLOCK_MONOTONIC ns
 * before the doorbell and after the completion was seen), and the last
 * line is {"sva_workload":"ok"|"fail", ...}; exit status 0 only when every
 * check held.
 */
#define _GNU_SOURCE
#include "ut_guest.h"

#include <sched.h>

/* include/uapi/misc/uacce/uacce.h */
#define UACCE_CMD_START_Q _IO('W', 0)

/* The queue register page, see hw/misc/uacce-sva-test.c in the patch. */
#define Q_ADDR_LO 0x00
#define Q_ADDR_HI 0x04
#define Q_LEN 0x08
#define Q_FLAGS 0x0c
#define Q_PATTERN 0x10
#define Q_DOORBELL 0x14
#define Q_STATUS 0x18
#define Q_PAGE_REQS 0x1c
#define Q_DONE 0x24
#define Q_FLAG_WRITE 1
#define ST_BUSY 1
#define ST_DONE 2

static volatile uint32_t *regs;
static int failures;
/* --gap-ms: the pause after each phase. */
static long gap_ms;

static uint32_t rd(unsigned off)
{
	return regs[off / 4];
}

static void wr(unsigned off, uint32_t v)
{
	regs[off / 4] = v;
}

static void stat_refresh(void)
{
	int fd = open("/proc/sys/vm/stat_refresh", O_WRONLY);

	if (fd < 0 || write(fd, "1", 1) != 1)
		ut_die("/proc/sys/vm/stat_refresh");
	close(fd);
}

static uint64_t pins_acquired(void)
{
	char name[64];
	unsigned long long value;
	uint64_t found = 0;
	FILE *f;

	stat_refresh();
	f = fopen("/proc/vmstat", "r");
	if (!f)
		ut_die("/proc/vmstat");
	while (fscanf(f, "%63s %llu", name, &value) == 2)
		if (!strcmp(name, "nr_foll_pin_acquired"))
			found = value;
	fclose(f);
	return found;
}

/* Runs one write descriptor over [buf, buf + len); prints the phase line. */
static void run_phase(const char *phase, char *buf, long len, long pages,
		      uint32_t want_reqs, uint8_t pattern, long pinned)
{
	uint64_t t0, t1;
	uint32_t status, reqs;
	long bad = 0;

	wr(Q_ADDR_LO, (uint32_t)(uintptr_t)buf);
	wr(Q_ADDR_HI, (uint32_t)((uintptr_t)buf >> 32));
	wr(Q_LEN, (uint32_t)len);
	wr(Q_FLAGS, Q_FLAG_WRITE);
	wr(Q_PATTERN, pattern);
	t0 = ut_now_ns();
	wr(Q_DOORBELL, 1);
	while ((status = rd(Q_STATUS)) == ST_BUSY || status == 0)
		sched_yield();
	t1 = ut_now_ns();
	reqs = rd(Q_PAGE_REQS);
	for (long i = 0; i < len; i++)
		bad += (uint8_t)buf[i] != pattern;
	if (status != ST_DONE || reqs != want_reqs || bad)
		failures++;
	printf("{\"sva_phase\":\"%s\",\"pid\":%d,\"pages\":%ld,\"addr\":\"%#lx\","
	       "\"status\":%u,\"page_requests\":%u,\"want_page_requests\":%u,"
	       "\"bad_bytes\":%ld,\"pinned_pages\":%ld,\"t0_ns\":%" PRIu64
	       ",\"t1_ns\":%" PRIu64 "}\n",
	       phase, getpid(), pages, (unsigned long)(uintptr_t)buf, status, reqs,
	       want_reqs, bad, pinned, t0, t1);
	if (gap_ms)
		usleep(gap_ms * 1000);
	fflush(stdout);
}

static char *fresh_pages(long len)
{
	char *buf = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (buf == MAP_FAILED)
		ut_die("mmap");
	return buf;
}

int main(int argc, char **argv)
{
	long pages = argc > 1 ? strtol(argv[1], NULL, 0) : 0;
	const char *dev = argc > 2 ? argv[2] : NULL;
	int shared_vmstat = 0;
	const char *wait_for = NULL;
	long rounds = 1;
	long page = sysconf(_SC_PAGESIZE);
	long len = pages * page;
	struct uacce_pin_address pin;
	uint64_t before, after;
	int fd, ctrl;
	char *a, *b;
	void *map;

	ut_prog = "sva-workload";
	for (int i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "--shared-vmstat"))
			shared_vmstat = 1;
		else if (!strcmp(argv[i], "--wait-for") && i + 1 < argc)
			wait_for = argv[++i];
		else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
			rounds = strtol(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--gap-ms") && i + 1 < argc)
			gap_ms = strtol(argv[++i], NULL, 0);
		else
			pages = 0; /* the usage below */
	}
	if (pages <= 0 || pages > 4096 || !dev || rounds < 1 || rounds > 100000 ||
	    gap_ms < 0 || gap_ms > 60000) {
		fprintf(stderr, "usage: sva-workload PAGES(1..4096) /dev/uacce_sva_test-N "
				"[--shared-vmstat] [--wait-for FILE] [--rounds 1..100000] "
				"[--gap-ms 0..60000]\n");
		return 2;
	}
	fd = open(dev, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		ut_die(dev);
	if (ioctl(fd, UACCE_CMD_START_Q, 0))
		ut_die("UACCE_CMD_START_Q");
	map = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		ut_die("mmap of the queue registers");
	regs = map;
	printf("{\"sva_open\":\"%s\",\"pid\":%d,\"done_before\":%u}\n", dev,
	       getpid(), rd(Q_DONE));
	fflush(stdout);
	while (wait_for && access(wait_for, F_OK))
		usleep(10000);

	for (long r = 0; r < rounds; r++) {
		a = fresh_pages(len);
		run_phase("fault", a, len, pages, (uint32_t)pages, 0xa5, 0);
		munmap(a, len);
	}

	b = fresh_pages(len);
	ctrl = open("/dev/uacce_ctrl", O_RDWR | O_CLOEXEC);
	if (ctrl < 0)
		ut_die("/dev/uacce_ctrl");
	before = pins_acquired();
	pin.addr = (uint64_t)(uintptr_t)b;
	pin.size = (uint64_t)len;
	if (ioctl(ctrl, UACCE_CMD_PIN, &pin))
		ut_die("UACCE_CMD_PIN");
	after = pins_acquired();
	if (after - before != (uint64_t)pages && !shared_vmstat)
		failures++;
	for (long r = 0; r < rounds; r++)
		run_phase("pinned", b, len, pages, 0, (uint8_t)(0x3c + r),
			  (long)(after - before));

	close(ctrl);
	munmap(map, page);
	close(fd);
	printf("{\"sva_workload\":\"%s\",\"pid\":%d,\"pages\":%ld,\"failures\":%d}\n",
	       failures ? "fail" : "ok", getpid(), pages, failures);
	return failures ? 1 : 0;
}
