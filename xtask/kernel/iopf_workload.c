// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * iopf-workload: guest program of the uacce-trace test kernel. Produces IO
 * page faults that go through the kernel's real IOPF path
 * (iommu_report_device_fault() -> iommufd fault queue -> user response ->
 * iopf_group_response()) with iommufd's self-test mock device
 * (CONFIG_IOMMUFD_TEST), and records its own timestamps for each fault so a
 * tracer's latency can be checked against them.
 *
 *   iopf-workload [--count N] [--delays-us D1,D2,...] [--pasid P1,P2,...]
 *                 [--grpid G] [--perm P] [--addr A]
 *
 * Fault i (from 0) gets pasid P[i % len], grpid G + i, perm P,
 * addr A + i * 4096, and is answered D[i % len] microseconds after it was
 * read. Defaults: 12 faults, delays 0,200,2000, pasid 1, grpid 1,
 * perm 3 (READ|WRITE), addr 0xdead0000.
 *
 * Set-up, all on one /dev/iommu fd: IOMMU_IOAS_ALLOC; test op MOCK_DOMAIN
 * (-> mock device, its idev); IOMMU_HWPT_ALLOC with NEST_PARENT;
 * IOMMU_FAULT_QUEUE_ALLOC (-> fault fd); IOMMU_HWPT_ALLOC of a selftest
 * nested HWPT with FAULT_ID_VALID; test op MOCK_DOMAIN_REPLACE onto it.
 * Per fault: test op TRIGGER_IOPF (which reports from inside this ioctl),
 * read one struct iommu_hwpt_pgfault from the fault fd, wait, write
 * struct iommu_hwpt_page_response {cookie, SUCCESS}.
 *
 * Output, one JSON object per line on stdout:
 *   {"setup":{...ids...,"pid":N}}
 *   {"fault":i,"pasid":..,"grpid":..,"perm":..,"addr":..,"delay_us":..,
 *    "t_trigger":ns,"t_read":ns,"t_write_start":ns,"t_write_done":ns,
 *    "match":true}
 *   {"iopf_workload":"ok"|"fail","faults":N,"mismatches":M}
 * Times are CLOCK_MONOTONIC nanoseconds (the clock of bpf_ktime_get_ns):
 * t_trigger just before the trigger ioctl, t_read when read() returned,
 * t_write_start just before and t_write_done just after the response
 * write(). A tracer's report -> response latency must lie between
 * t_write_start - t_read and t_write_done - t_trigger. "match" says whether
 * the fault read back carried the pasid/grpid/perm/addr that were triggered.
 *
 * Built with `gcc -static -I <headers of the kernel tree>` by
 * `cargo xtask kernel`: iommufd_test.h is kernel-internal and its op numbers
 * are positional, so it must come from the tree the kernel was built from.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <linux/iommufd.h>
#include "iommufd_test.h"

#define MAX_LIST 64

struct options {
	unsigned long count;
	unsigned long delays_us[MAX_LIST];
	size_t n_delays;
	unsigned long pasids[MAX_LIST];
	size_t n_pasids;
	uint32_t grpid;
	uint32_t perm;
	uint64_t addr;
};

static void die(const char *what)
{
	fprintf(stderr, "iopf-workload: %s: %s\n", what, strerror(errno));
	printf("{\"iopf_workload\":\"fail\",\"error\":\"%s\",\"errno\":%d}\n", what,
	       errno);
	exit(1);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: iopf-workload [--count N] [--delays-us D1,D2,...] "
		"[--pasid P1,P2,...] [--grpid G] [--perm P] [--addr A]\n");
	exit(2);
}

static unsigned long long parse_num(const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end)
		usage();
	return v;
}

/* Comma-separated numbers into list; returns how many. */
static size_t parse_list(const char *s, unsigned long *list)
{
	char buf[1024];
	size_t n = 0;
	char *tok, *save;

	if (strlen(s) >= sizeof(buf))
		usage();
	strcpy(buf, s);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (n == MAX_LIST)
			usage();
		list[n++] = parse_num(tok);
	}
	if (!n)
		usage();
	return n;
}

static void parse_args(int argc, char **argv, struct options *o)
{
	int i;

	o->count = 12;
	o->delays_us[0] = 0;
	o->delays_us[1] = 200;
	o->delays_us[2] = 2000;
	o->n_delays = 3;
	o->pasids[0] = 1;
	o->n_pasids = 1;
	o->grpid = 1;
	o->perm = IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE;
	o->addr = 0xdead0000;
	for (i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (!val)
			usage();
		if (!strcmp(arg, "--count"))
			o->count = parse_num(val);
		else if (!strcmp(arg, "--delays-us"))
			o->n_delays = parse_list(val, o->delays_us);
		else if (!strcmp(arg, "--pasid"))
			o->n_pasids = parse_list(val, o->pasids);
		else if (!strcmp(arg, "--grpid"))
			o->grpid = parse_num(val);
		else if (!strcmp(arg, "--perm"))
			o->perm = parse_num(val);
		else if (!strcmp(arg, "--addr"))
			o->addr = parse_num(val);
		else
			usage();
		i++;
	}
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void sleep_until_ns(uint64_t t)
{
	struct timespec ts = {
		.tv_sec = t / 1000000000ull,
		.tv_nsec = t % 1000000000ull,
	};

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static void test_cmd(int fd, struct iommu_test_cmd *cmd, const char *what)
{
	cmd->size = sizeof(*cmd);
	if (ioctl(fd, IOMMU_TEST_CMD, cmd))
		die(what);
}

/* Reads one fault (one group of one fault), waiting up to a second. */
static void read_fault(int fault_fd, struct iommu_hwpt_pgfault *fault)
{
	struct pollfd pfd = { .fd = fault_fd, .events = POLLIN };
	ssize_t n;
	int tries;

	for (tries = 0; tries < 2; tries++) {
		n = read(fault_fd, fault, sizeof(*fault));
		if (n == sizeof(*fault))
			return;
		if (n < 0)
			die("read fault fd");
		if (poll(&pfd, 1, 1000) < 0)
			die("poll fault fd");
	}
	errno = ETIMEDOUT;
	die("no fault to read");
}

int main(int argc, char **argv)
{
	struct iommu_hwpt_selftest selftest = { .iotlb = IOMMU_TEST_IOTLB_DEFAULT };
	struct iommu_ioas_alloc ioas = { .size = sizeof(ioas) };
	struct iommu_fault_alloc fault_alloc = { .size = sizeof(fault_alloc) };
	struct iommu_hwpt_alloc parent = { .size = sizeof(parent) };
	struct iommu_hwpt_alloc iopf = { .size = sizeof(iopf) };
	struct iommu_test_cmd cmd;
	uint32_t stdev_id, idev_id;
	unsigned long i, mismatches = 0;
	struct options o;
	int fd;

	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_args(argc, argv, &o);

	fd = open("/dev/iommu", O_RDWR);
	if (fd < 0)
		die("open /dev/iommu");
	if (ioctl(fd, IOMMU_IOAS_ALLOC, &ioas))
		die("IOMMU_IOAS_ALLOC");

	memset(&cmd, 0, sizeof(cmd));
	cmd.op = IOMMU_TEST_OP_MOCK_DOMAIN;
	cmd.id = ioas.out_ioas_id;
	test_cmd(fd, &cmd, "IOMMU_TEST_OP_MOCK_DOMAIN");
	stdev_id = cmd.mock_domain.out_stdev_id;
	idev_id = cmd.mock_domain.out_idev_id;

	parent.flags = IOMMU_HWPT_ALLOC_NEST_PARENT;
	parent.dev_id = idev_id;
	parent.pt_id = ioas.out_ioas_id;
	parent.data_type = IOMMU_HWPT_DATA_NONE;
	if (ioctl(fd, IOMMU_HWPT_ALLOC, &parent))
		die("IOMMU_HWPT_ALLOC (nest parent)");

	if (ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &fault_alloc))
		die("IOMMU_FAULT_QUEUE_ALLOC");

	iopf.flags = IOMMU_HWPT_FAULT_ID_VALID;
	iopf.dev_id = idev_id;
	iopf.pt_id = parent.out_hwpt_id;
	iopf.data_type = IOMMU_HWPT_DATA_SELFTEST;
	iopf.data_len = sizeof(selftest);
	iopf.data_uptr = (uintptr_t)&selftest;
	iopf.fault_id = fault_alloc.out_fault_id;
	if (ioctl(fd, IOMMU_HWPT_ALLOC, &iopf))
		die("IOMMU_HWPT_ALLOC (iopf)");

	memset(&cmd, 0, sizeof(cmd));
	cmd.op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE;
	cmd.id = stdev_id;
	cmd.mock_domain_replace.pt_id = iopf.out_hwpt_id;
	test_cmd(fd, &cmd, "IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE");

	printf("{\"setup\":{\"pid\":%d,\"ioas\":%u,\"stdev\":%u,\"idev\":%u,"
	       "\"parent_hwpt\":%u,\"fault_id\":%u,\"fault_fd\":%u,\"iopf_hwpt\":%u}}\n",
	       getpid(), ioas.out_ioas_id, stdev_id, idev_id, parent.out_hwpt_id,
	       fault_alloc.out_fault_id, fault_alloc.out_fault_fd,
	       iopf.out_hwpt_id);

	for (i = 0; i < o.count; i++) {
		struct iommu_hwpt_page_response response = {
			.code = IOMMUFD_PAGE_RESP_SUCCESS,
		};
		struct iommu_hwpt_pgfault fault;
		uint32_t pasid = o.pasids[i % o.n_pasids];
		uint32_t grpid = o.grpid + (uint32_t)i;
		uint64_t addr = o.addr + (uint64_t)i * 4096;
		unsigned long delay_us = o.delays_us[i % o.n_delays];
		uint64_t t_trigger, t_read, t_write_start, t_write_done;
		int match;

		memset(&cmd, 0, sizeof(cmd));
		cmd.op = IOMMU_TEST_OP_TRIGGER_IOPF;
		cmd.trigger_iopf.dev_id = idev_id;
		cmd.trigger_iopf.pasid = pasid;
		cmd.trigger_iopf.grpid = grpid;
		cmd.trigger_iopf.perm = o.perm;
		cmd.trigger_iopf.addr = addr;
		t_trigger = now_ns();
		test_cmd(fd, &cmd, "IOMMU_TEST_OP_TRIGGER_IOPF");

		read_fault(fault_alloc.out_fault_fd, &fault);
		t_read = now_ns();
		if (delay_us)
			sleep_until_ns(t_read + (uint64_t)delay_us * 1000);

		response.cookie = fault.cookie;
		t_write_start = now_ns();
		if (write(fault_alloc.out_fault_fd, &response, sizeof(response)) !=
		    sizeof(response))
			die("write page response");
		t_write_done = now_ns();

		match = fault.pasid == pasid && fault.grpid == grpid &&
			fault.perm == o.perm && fault.addr == addr &&
			fault.dev_id == idev_id;
		if (!match)
			mismatches++;
		printf("{\"fault\":%lu,\"pasid\":%u,\"grpid\":%u,\"perm\":%u,"
		       "\"addr\":%" PRIu64 ",\"delay_us\":%lu,\"t_trigger\":%" PRIu64
		       ",\"t_read\":%" PRIu64 ",\"t_write_start\":%" PRIu64
		       ",\"t_write_done\":%" PRIu64 ",\"flags\":%u,\"cookie\":%u,"
		       "\"match\":%s}\n",
		       i, fault.pasid, fault.grpid, fault.perm, (uint64_t)fault.addr,
		       delay_us, t_trigger, t_read, t_write_start, t_write_done,
		       fault.flags, fault.cookie, match ? "true" : "false");
	}

	printf("{\"iopf_workload\":\"%s\",\"faults\":%lu,\"mismatches\":%lu}\n",
	       mismatches ? "fail" : "ok", o.count, mismatches);
	return mismatches ? 1 : 0;
}
