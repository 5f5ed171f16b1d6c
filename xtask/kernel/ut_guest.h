/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * ut_guest.h: what the guest programs of the uacce-trace test kernel
 * (uacce_ctrl_pin.c, iopf_workload.c, uacce_demo.c) share, as static
 * inline functions: dying with a message, CLOCK_MONOTONIC times, touched
 * anonymous pages, the /dev/uacce_ctrl pin ABI, and iommufd's self-test
 * mock device (a fault queue, mock devices on nested HWPTs that report
 * to it, triggering, reading and answering faults).
 *
 * Built with `gcc -static -I <include/ of the test kernel folder>` by
 * xtask's vm::programs (xtask/src/vm/programs.rs): iommufd_test.h is
 * kernel-internal and its op numbers are positional, so it must come from
 * the tree the kernel was built from.
 */
#ifndef UT_GUEST_H
#define UT_GUEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/iommufd.h>
#include "iommufd_test.h"

/* ---- dying -------------------------------------------------------------- */

/* The program's name in messages (set by main when it is not fixed). */
static const char *ut_prog;
/* Called by ut_die, when set, after the message and before exit(1), with
 * what failed and errno (iopf-workload prints its JSON fail line). */
static void (*ut_on_die)(const char *what, int err);

/* "PROG: WHAT: strerror(errno)" on stderr, ut_on_die, exit(1). */
static inline __attribute__((noreturn)) void ut_die(const char *what)
{
	int err = errno;

	fprintf(stderr, "%s: %s: %s\n", ut_prog, what, strerror(err));
	if (ut_on_die)
		ut_on_die(what, err);
	exit(1);
}

/* ---- time --------------------------------------------------------------- */

/* CLOCK_MONOTONIC in nanoseconds (the clock of bpf_ktime_get_ns). */
static inline uint64_t ut_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* Sleeps until ut_now_ns() >= t. */
static inline void ut_sleep_until_ns(uint64_t t)
{
	struct timespec ts = {
		.tv_sec = t / 1000000000ull,
		.tv_nsec = t % 1000000000ull,
	};

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* ---- memory ------------------------------------------------------------- */

/* `pages` anonymous pages of `page` bytes, written to: real pages, not the
 * shared zero page (pins of which are not counted). */
static inline char *ut_map_pages(long pages, long page)
{
	char *buf = mmap(NULL, pages * page, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (buf == MAP_FAILED)
		ut_die("mmap");
	memset(buf, 0x5a, pages * page);
	return buf;
}

/* ---- /dev/uacce_ctrl (the RFC pin ABI, see uacce_ctrl/uacce_ctrl.c) ----- */

struct uacce_pin_address {
	uint64_t addr;
	uint64_t size;
};

#define UACCE_CMD_PIN _IOW('W', 2, struct uacce_pin_address)
#define UACCE_CMD_UNPIN _IOW('W', 3, struct uacce_pin_address)

_Static_assert(UACCE_CMD_PIN == 0x40105702, "UACCE_CMD_PIN");
_Static_assert(UACCE_CMD_UNPIN == 0x40105703, "UACCE_CMD_UNPIN");

/* ---- iommufd's self-test mock device ------------------------------------ */

/* /dev/iommu with an IOAS and a fault queue. */
struct ut_iommufd {
	int fd;
	uint32_t ioas_id;
	uint32_t fault_id;
	uint32_t fault_fd;
};

/* A mock device, and (after ut_fault_domain) its HWPTs. */
struct ut_mock {
	uint32_t stdev_id;
	uint32_t idev_id;
	uint32_t parent_hwpt;
	uint32_t iopf_hwpt;
	/* Its dev_name() where the program looked it up, else "". */
	char name[64];
};

/* Opens /dev/iommu; IOMMU_IOAS_ALLOC; IOMMU_FAULT_QUEUE_ALLOC. */
static inline void ut_iommufd_open(struct ut_iommufd *u)
{
	struct iommu_ioas_alloc ioas = { .size = sizeof(ioas) };
	struct iommu_fault_alloc fault_alloc = { .size = sizeof(fault_alloc) };

	u->fd = open("/dev/iommu", O_RDWR);
	if (u->fd < 0)
		ut_die("open /dev/iommu");
	if (ioctl(u->fd, IOMMU_IOAS_ALLOC, &ioas))
		ut_die("IOMMU_IOAS_ALLOC");
	if (ioctl(u->fd, IOMMU_FAULT_QUEUE_ALLOC, &fault_alloc))
		ut_die("IOMMU_FAULT_QUEUE_ALLOC");
	u->ioas_id = ioas.out_ioas_id;
	u->fault_id = fault_alloc.out_fault_id;
	u->fault_fd = fault_alloc.out_fault_fd;
}

/* IOMMU_TEST_CMD; ut_die(what) when it fails. */
static inline void ut_test_cmd(int fd, struct iommu_test_cmd *cmd, const char *what)
{
	cmd->size = sizeof(*cmd);
	if (ioctl(fd, IOMMU_TEST_CMD, cmd))
		ut_die(what);
}

/* Test op MOCK_DOMAIN: a mock device on the IOAS. */
static inline void ut_mock_device(const struct ut_iommufd *u, struct ut_mock *m)
{
	struct iommu_test_cmd cmd;

	memset(m, 0, sizeof(*m));
	memset(&cmd, 0, sizeof(cmd));
	cmd.op = IOMMU_TEST_OP_MOCK_DOMAIN;
	cmd.id = u->ioas_id;
	ut_test_cmd(u->fd, &cmd, "IOMMU_TEST_OP_MOCK_DOMAIN");
	m->stdev_id = cmd.mock_domain.out_stdev_id;
	m->idev_id = cmd.mock_domain.out_idev_id;
}

/* Moves mock m onto a nested HWPT that reports faults to the fault queue:
 * IOMMU_HWPT_ALLOC with NEST_PARENT, IOMMU_HWPT_ALLOC of a selftest nested
 * HWPT with FAULT_ID_VALID, test op MOCK_DOMAIN_REPLACE onto it. */
static inline void ut_fault_domain(const struct ut_iommufd *u, struct ut_mock *m)
{
	struct iommu_hwpt_selftest selftest = { .iotlb = IOMMU_TEST_IOTLB_DEFAULT };
	struct iommu_hwpt_alloc parent = { .size = sizeof(parent) };
	struct iommu_hwpt_alloc iopf = { .size = sizeof(iopf) };
	struct iommu_test_cmd cmd;

	parent.flags = IOMMU_HWPT_ALLOC_NEST_PARENT;
	parent.dev_id = m->idev_id;
	parent.pt_id = u->ioas_id;
	parent.data_type = IOMMU_HWPT_DATA_NONE;
	if (ioctl(u->fd, IOMMU_HWPT_ALLOC, &parent))
		ut_die("IOMMU_HWPT_ALLOC (nest parent)");
	m->parent_hwpt = parent.out_hwpt_id;

	iopf.flags = IOMMU_HWPT_FAULT_ID_VALID;
	iopf.dev_id = m->idev_id;
	iopf.pt_id = parent.out_hwpt_id;
	iopf.data_type = IOMMU_HWPT_DATA_SELFTEST;
	iopf.data_len = sizeof(selftest);
	iopf.data_uptr = (uintptr_t)&selftest;
	iopf.fault_id = u->fault_id;
	if (ioctl(u->fd, IOMMU_HWPT_ALLOC, &iopf))
		ut_die("IOMMU_HWPT_ALLOC (iopf)");
	m->iopf_hwpt = iopf.out_hwpt_id;

	memset(&cmd, 0, sizeof(cmd));
	cmd.op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE;
	cmd.id = m->stdev_id;
	cmd.mock_domain_replace.pt_id = iopf.out_hwpt_id;
	ut_test_cmd(u->fd, &cmd, "IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE");
}

/* Test op TRIGGER_IOPF: the mock reports one page request (from inside
 * this ioctl, or from a kworker with the test kernel's perm bit 31). */
static inline void ut_trigger(int fd, uint32_t idev_id, uint32_t pasid,
			      uint32_t grpid, uint32_t perm, uint64_t addr)
{
	struct iommu_test_cmd cmd;

	memset(&cmd, 0, sizeof(cmd));
	cmd.op = IOMMU_TEST_OP_TRIGGER_IOPF;
	cmd.trigger_iopf.dev_id = idev_id;
	cmd.trigger_iopf.pasid = pasid;
	cmd.trigger_iopf.grpid = grpid;
	cmd.trigger_iopf.perm = perm;
	cmd.trigger_iopf.addr = addr;
	ut_test_cmd(fd, &cmd, "IOMMU_TEST_OP_TRIGGER_IOPF");
}

/* Reads until `want` page requests are in faults[], waiting up to a second
 * (poll) after each empty read; dies after three empty reads. */
static inline void ut_read_faults(uint32_t fault_fd, struct iommu_hwpt_pgfault *faults,
				  size_t want)
{
	struct pollfd pfd = { .fd = (int)fault_fd, .events = POLLIN };
	size_t got = 0;
	int idle = 0;

	while (got < want) {
		ssize_t n = read((int)fault_fd, faults + got,
				 (want - got) * sizeof(*faults));

		if (n < 0 && errno != EAGAIN && errno != EINTR)
			ut_die("read fault fd");
		if (n > 0) {
			got += (size_t)n / sizeof(*faults);
			idle = 0;
			continue;
		}
		if (++idle > 2) {
			errno = ETIMEDOUT;
			ut_die("no fault to read");
		}
		if (poll(&pfd, 1, 1000) < 0 && errno != EINTR)
			ut_die("poll fault fd");
	}
}

/* Answers the group of `cookie` with IOMMUFD_PAGE_RESP_SUCCESS. */
static inline void ut_respond(uint32_t fault_fd, uint32_t cookie)
{
	struct iommu_hwpt_page_response response = {
		.code = IOMMUFD_PAGE_RESP_SUCCESS,
		.cookie = cookie,
	};

	if (write((int)fault_fd, &response, sizeof(response)) != sizeof(response))
		ut_die("write page response");
}

#endif /* UT_GUEST_H */
