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
 *                 [--kworker] [--devices K] [--pages M] [--grpid-mod W]
 *                 [--unanswered U] [--orphans O]
 *
 * Fault i (from 0) gets pasid P[i % len], grpid G + i, perm P,
 * addr A + i * 4096, and is answered D[i % len] microseconds after it was
 * read. Defaults: 12 faults, delays 0,200,2000, pasid 1, grpid 1,
 * perm 3 (READ|WRITE), addr 0xdead0000.
 *
 * The attribution and pairing tests (xtask/src/vm/attribution.rs) add:
 *   --kworker     the mock reports each fault from a kworker, not from this
 *                 process's ioctl (perm bit 31 of the test kernel's patch
 *                 xtask/kernel/iommufd-selftest-iopf.patch);
 *   --devices K   K mock devices (default 1) on one fault queue; round i
 *                 raises the same pasid/grpid on each of them before any is
 *                 answered, and answers them in reverse order;
 *   --pages M     each group is M page requests (default 1): M - 1 without
 *                 LAST_PAGE (perm bit 30 of the patch), then the last;
 *   --grpid-mod W grpid (G + i) % W: group ids wrap and are reused;
 *   --unanswered U the last U rounds are read but never answered; the
 *                 program then closes the fault fd and /dev/iommu, and
 *                 iommufd answers them itself (IOMMU_PAGE_RESP_INVALID,
 *                 through iopf_group_response());
 *   --orphans O   then O faults on one more mock device that stays on its
 *                 plain domain: no fault handler, so the kernel answers
 *                 with the driver's page_response op directly and
 *                 iopf_group_response() never runs. They share one
 *                 group id (G + N): each is a whole group (LAST_PAGE) of
 *                 its own on the same (device, PASID, group) key.
 * The address of page j of device k in round i is
 * A + ((i * K + k) * M + j) * 4096; a group is known by its first page.
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
 *   {"setup":{...ids...,"pid":N,"devices":[{"idev":..,"name":".."}],...}}
 *   {"fault":i,"dev":k,"idev":..,"pasid":..,"grpid":..,"perm":..,"addr":..,
 *    "pages":M,"delay_us":..,"t_trigger":ns,"t_read":ns,"t_write_start":ns,
 *    "t_write_done":ns,"answered":true,"code":0,"match":true}
 *   {"orphan":n,"idev":..,"device":"..","pasid":..,"grpid":..,"addr":..,
 *    "t_trigger":ns}
 *   {"closed":{"t_close_start":ns,"t_close_done":ns}}
 *   {"iopf_workload":"ok"|"fail","faults":N,"mismatches":M}
 * "name" is the mock device's name (dev_name(), iommufd_mockN), read as the
 * entry that appeared in /sys/bus/iommufd_mock/devices; "" if unknown.
 * An unanswered fault's line comes after the close, with t_write_start and
 * t_write_done the times around it and code 1 (INVALID).
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
#include <dirent.h>
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
#define MAX_DEVICES 4
#define MAX_PAGES 8
/* perm bits of the test kernel's patch to the mock's TRIGGER_IOPF. */
#define UT_IOPF_FROM_WORK (1U << 31)
#define UT_IOPF_NOT_LAST (1U << 30)
#define MOCK_BUS_DEVICES "/sys/bus/iommufd_mock/devices"

struct options {
	unsigned long count;
	unsigned long delays_us[MAX_LIST];
	size_t n_delays;
	unsigned long pasids[MAX_LIST];
	size_t n_pasids;
	uint32_t grpid;
	uint32_t perm;
	uint64_t addr;
	int kworker;
	unsigned long devices;
	unsigned long pages;
	unsigned long grpid_mod;
	unsigned long unanswered;
	unsigned long orphans;
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
		"[--pasid P1,P2,...] [--grpid G] [--perm P] [--addr A] "
		"[--kworker] [--devices K] [--pages M] [--grpid-mod W] "
		"[--unanswered U] [--orphans O]\n");
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

	memset(o, 0, sizeof(*o));
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
	o->devices = 1;
	o->pages = 1;
	for (i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(arg, "--kworker")) {
			o->kworker = 1;
			continue;
		}
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
		else if (!strcmp(arg, "--devices"))
			o->devices = parse_num(val);
		else if (!strcmp(arg, "--pages"))
			o->pages = parse_num(val);
		else if (!strcmp(arg, "--grpid-mod"))
			o->grpid_mod = parse_num(val);
		else if (!strcmp(arg, "--unanswered"))
			o->unanswered = parse_num(val);
		else if (!strcmp(arg, "--orphans"))
			o->orphans = parse_num(val);
		else
			usage();
		i++;
	}
	if (!o->devices || o->devices > MAX_DEVICES || !o->pages ||
	    o->pages > MAX_PAGES || o->unanswered > o->count ||
	    (o->perm & (UT_IOPF_FROM_WORK | UT_IOPF_NOT_LAST)))
		usage();
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

/* Names in MOCK_BUS_DEVICES, as one string "\n"-separated. */
static void mock_names(char *out, size_t len)
{
	DIR *d = opendir(MOCK_BUS_DEVICES);
	struct dirent *e;
	size_t used = 0;

	out[0] = 0;
	if (!d)
		return;
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);

		if (e->d_name[0] == '.' || used + n + 2 > len)
			continue;
		memcpy(out + used, e->d_name, n);
		used += n;
		out[used++] = '\n';
		out[used] = 0;
	}
	closedir(d);
}

struct mock {
	uint32_t stdev_id;
	uint32_t idev_id;
	uint32_t parent_hwpt;
	uint32_t iopf_hwpt;
	char name[64];
};

/* A mock device on the IOAS, its dev_name() learnt from sysfs. */
static void mock_device(int fd, uint32_t ioas_id, struct mock *m)
{
	char before[4096], after[4096], *line, *save;
	struct iommu_test_cmd cmd;

	mock_names(before, sizeof(before));
	memset(&cmd, 0, sizeof(cmd));
	cmd.op = IOMMU_TEST_OP_MOCK_DOMAIN;
	cmd.id = ioas_id;
	test_cmd(fd, &cmd, "IOMMU_TEST_OP_MOCK_DOMAIN");
	m->stdev_id = cmd.mock_domain.out_stdev_id;
	m->idev_id = cmd.mock_domain.out_idev_id;
	m->name[0] = 0;
	mock_names(after, sizeof(after));
	for (line = strtok_r(after, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char want[80];

		snprintf(want, sizeof(want), "%s\n", line);
		if (!strstr(before, want) && strlen(line) < sizeof(m->name)) {
			strcpy(m->name, line);
			break;
		}
	}
}

/* Moves mock m onto a nested HWPT that reports faults to fault_id. */
static void fault_domain(int fd, uint32_t ioas_id, uint32_t fault_id, struct mock *m)
{
	struct iommu_hwpt_selftest selftest = { .iotlb = IOMMU_TEST_IOTLB_DEFAULT };
	struct iommu_hwpt_alloc parent = { .size = sizeof(parent) };
	struct iommu_hwpt_alloc iopf = { .size = sizeof(iopf) };
	struct iommu_test_cmd cmd;

	parent.flags = IOMMU_HWPT_ALLOC_NEST_PARENT;
	parent.dev_id = m->idev_id;
	parent.pt_id = ioas_id;
	parent.data_type = IOMMU_HWPT_DATA_NONE;
	if (ioctl(fd, IOMMU_HWPT_ALLOC, &parent))
		die("IOMMU_HWPT_ALLOC (nest parent)");
	m->parent_hwpt = parent.out_hwpt_id;

	iopf.flags = IOMMU_HWPT_FAULT_ID_VALID;
	iopf.dev_id = m->idev_id;
	iopf.pt_id = parent.out_hwpt_id;
	iopf.data_type = IOMMU_HWPT_DATA_SELFTEST;
	iopf.data_len = sizeof(selftest);
	iopf.data_uptr = (uintptr_t)&selftest;
	iopf.fault_id = fault_id;
	if (ioctl(fd, IOMMU_HWPT_ALLOC, &iopf))
		die("IOMMU_HWPT_ALLOC (iopf)");
	m->iopf_hwpt = iopf.out_hwpt_id;

	memset(&cmd, 0, sizeof(cmd));
	cmd.op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE;
	cmd.id = m->stdev_id;
	cmd.mock_domain_replace.pt_id = iopf.out_hwpt_id;
	test_cmd(fd, &cmd, "IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE");
}

static void trigger(int fd, uint32_t idev_id, uint32_t pasid, uint32_t grpid,
		    uint32_t perm, uint64_t addr)
{
	struct iommu_test_cmd cmd;

	memset(&cmd, 0, sizeof(cmd));
	cmd.op = IOMMU_TEST_OP_TRIGGER_IOPF;
	cmd.trigger_iopf.dev_id = idev_id;
	cmd.trigger_iopf.pasid = pasid;
	cmd.trigger_iopf.grpid = grpid;
	cmd.trigger_iopf.perm = perm;
	cmd.trigger_iopf.addr = addr;
	test_cmd(fd, &cmd, "IOMMU_TEST_OP_TRIGGER_IOPF");
}

/* Reads until `want` page requests are in faults[], waiting up to a second
 * for each read. */
static void read_faults(int fault_fd, struct iommu_hwpt_pgfault *faults, size_t want)
{
	struct pollfd pfd = { .fd = fault_fd, .events = POLLIN };
	size_t got = 0;
	int idle = 0;

	while (got < want) {
		ssize_t n = read(fault_fd, faults + got,
				 (want - got) * sizeof(*faults));

		if (n < 0)
			die("read fault fd");
		if (n > 0) {
			got += (size_t)n / sizeof(*faults);
			idle = 0;
			continue;
		}
		if (++idle > 2) {
			errno = ETIMEDOUT;
			die("no fault to read");
		}
		if (poll(&pfd, 1, 1000) < 0)
			die("poll fault fd");
	}
}

/* One round's group on one device, as the program saw it. */
struct group {
	uint32_t pasid, grpid, cookie, flags;
	uint64_t addr;
	uint64_t t_trigger, t_read, t_write_start, t_write_done;
	unsigned long round, delay_us;
	int match, answered;
};

static void print_group(const struct options *o, const struct mock *m,
			unsigned long k, const struct group *g)
{
	printf("{\"fault\":%lu,\"dev\":%lu,\"idev\":%u,\"pasid\":%u,\"grpid\":%u,"
	       "\"perm\":%u,\"addr\":%" PRIu64 ",\"pages\":%lu,\"delay_us\":%lu,"
	       "\"t_trigger\":%" PRIu64 ",\"t_read\":%" PRIu64
	       ",\"t_write_start\":%" PRIu64 ",\"t_write_done\":%" PRIu64
	       ",\"flags\":%u,\"cookie\":%u,\"answered\":%s,\"code\":%d,"
	       "\"kworker\":%s,\"match\":%s}\n",
	       g->round, k, m->idev_id, g->pasid, g->grpid, o->perm, g->addr,
	       o->pages, g->delay_us, g->t_trigger, g->t_read, g->t_write_start,
	       g->t_write_done, g->flags, g->cookie,
	       g->answered ? "true" : "false",
	       g->answered ? IOMMUFD_PAGE_RESP_SUCCESS : 1,
	       o->kworker ? "true" : "false", g->match ? "true" : "false");
}

int main(int argc, char **argv)
{
	static struct iommu_hwpt_pgfault faults[MAX_DEVICES * MAX_PAGES];
	static struct group pending[64 * MAX_DEVICES];
	static unsigned long pending_dev[64 * MAX_DEVICES];
	struct iommu_ioas_alloc ioas = { .size = sizeof(ioas) };
	struct iommu_fault_alloc fault_alloc = { .size = sizeof(fault_alloc) };
	struct mock devs[MAX_DEVICES], orphan;
	unsigned long i, k, j, mismatches = 0, n_pending = 0;
	uint32_t trigger_perm;
	struct options o;
	int fd;

	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_args(argc, argv, &o);
	if (o.unanswered * o.devices > sizeof(pending) / sizeof(pending[0]))
		usage();
	trigger_perm = o.perm | (o.kworker ? UT_IOPF_FROM_WORK : 0);

	fd = open("/dev/iommu", O_RDWR);
	if (fd < 0)
		die("open /dev/iommu");
	if (ioctl(fd, IOMMU_IOAS_ALLOC, &ioas))
		die("IOMMU_IOAS_ALLOC");
	if (ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &fault_alloc))
		die("IOMMU_FAULT_QUEUE_ALLOC");
	for (k = 0; k < o.devices; k++) {
		mock_device(fd, ioas.out_ioas_id, &devs[k]);
		fault_domain(fd, ioas.out_ioas_id, fault_alloc.out_fault_id, &devs[k]);
	}
	if (o.orphans)
		mock_device(fd, ioas.out_ioas_id, &orphan);

	printf("{\"setup\":{\"pid\":%d,\"ioas\":%u,\"stdev\":%u,\"idev\":%u,"
	       "\"parent_hwpt\":%u,\"fault_id\":%u,\"fault_fd\":%u,\"iopf_hwpt\":%u,"
	       "\"kworker\":%s,\"devices\":[",
	       getpid(), ioas.out_ioas_id, devs[0].stdev_id, devs[0].idev_id,
	       devs[0].parent_hwpt, fault_alloc.out_fault_id,
	       fault_alloc.out_fault_fd, devs[0].iopf_hwpt,
	       o.kworker ? "true" : "false");
	for (k = 0; k < o.devices; k++)
		printf("%s{\"idev\":%u,\"name\":\"%s\"}", k ? "," : "",
		       devs[k].idev_id, devs[k].name);
	printf("]");
	if (o.orphans)
		printf(",\"orphan\":{\"idev\":%u,\"name\":\"%s\"}", orphan.idev_id,
		       orphan.name);
	printf("}}\n");

	for (i = 0; i < o.count; i++) {
		struct group g[MAX_DEVICES];
		uint32_t pasid = o.pasids[i % o.n_pasids];
		uint32_t grpid = o.grpid + (uint32_t)i;
		unsigned long delay_us = o.delays_us[i % o.n_delays];
		int answer = i < o.count - o.unanswered;
		uint64_t t_read;

		if (o.grpid_mod)
			grpid %= (uint32_t)o.grpid_mod;
		for (k = 0; k < o.devices; k++) {
			memset(&g[k], 0, sizeof(g[k]));
			g[k].round = i;
			g[k].pasid = pasid;
			g[k].grpid = grpid;
			g[k].delay_us = delay_us;
			g[k].addr = o.addr + (i * o.devices + k) * o.pages * 4096;
			g[k].match = 1;
			g[k].t_trigger = now_ns();
			for (j = 0; j < o.pages; j++)
				trigger(fd, devs[k].idev_id, pasid, grpid,
					trigger_perm |
						(j + 1 < o.pages ? UT_IOPF_NOT_LAST : 0),
					g[k].addr + j * 4096);
		}

		read_faults(fault_alloc.out_fault_fd, faults, o.devices * o.pages);
		t_read = now_ns();
		/* Each device's pages, in order, one cookie per group. */
		for (k = 0; k < o.devices; k++) {
			unsigned long seen = 0;

			g[k].t_read = t_read;
			for (j = 0; j < o.devices * o.pages; j++) {
				struct iommu_hwpt_pgfault *f = &faults[j];

				if (f->dev_id != devs[k].idev_id)
					continue;
				if (!seen) {
					g[k].cookie = f->cookie;
					g[k].flags = f->flags;
				}
				if (f->pasid != pasid || f->grpid != grpid ||
				    f->perm != o.perm || f->cookie != g[k].cookie ||
				    f->addr != g[k].addr + seen * 4096)
					g[k].match = 0;
				seen++;
			}
			if (seen != o.pages)
				g[k].match = 0;
		}

		/* Answer in reverse device order. */
		for (k = o.devices; k-- > 0;) {
			struct iommu_hwpt_page_response response = {
				.code = IOMMUFD_PAGE_RESP_SUCCESS,
				.cookie = g[k].cookie,
			};

			if (!g[k].match)
				mismatches++;
			if (!answer) {
				pending[n_pending] = g[k];
				pending_dev[n_pending++] = k;
				continue;
			}
			if (delay_us)
				sleep_until_ns(now_ns() + (uint64_t)delay_us * 1000);
			g[k].t_write_start = now_ns();
			if (write(fault_alloc.out_fault_fd, &response,
				  sizeof(response)) != sizeof(response))
				die("write page response");
			g[k].t_write_done = now_ns();
			g[k].answered = 1;
			print_group(&o, &devs[k], k, &g[k]);
		}
	}

	for (i = 0; i < o.orphans; i++) {
		uint32_t pasid = o.pasids[i % o.n_pasids];
		/* One group id for all: each has LAST_PAGE, so each is a group
		 * of its own that no response ever closes. */
		uint32_t grpid = o.grpid + (uint32_t)o.count;
		uint64_t addr = o.addr + (o.count * o.devices + i) * o.pages * 4096;
		uint64_t t = now_ns();

		if (o.grpid_mod)
			grpid %= (uint32_t)o.grpid_mod;
		trigger(fd, orphan.idev_id, pasid, grpid, trigger_perm, addr);
		printf("{\"orphan\":%lu,\"idev\":%u,\"device\":\"%s\",\"pasid\":%u,"
		       "\"grpid\":%u,\"addr\":%" PRIu64 ",\"t_trigger\":%" PRIu64 "}\n",
		       i, orphan.idev_id, orphan.name, pasid, grpid, addr, t);
	}

	if (n_pending) {
		uint64_t t_close_start, t_close_done;

		/* The fault fd holds the context: close it first, then the
		 * context's release destroys the objects and answers what is
		 * pending. */
		t_close_start = now_ns();
		close(fault_alloc.out_fault_fd);
		close(fd);
		t_close_done = now_ns();
		printf("{\"closed\":{\"t_close_start\":%" PRIu64
		       ",\"t_close_done\":%" PRIu64 "}}\n",
		       t_close_start, t_close_done);
		for (i = 0; i < n_pending; i++) {
			pending[i].t_write_start = t_close_start;
			pending[i].t_write_done = t_close_done;
			print_group(&o, &devs[pending_dev[i]], pending_dev[i],
				    &pending[i]);
		}
	}

	printf("{\"iopf_workload\":\"%s\",\"faults\":%lu,\"mismatches\":%lu}\n",
	       mismatches ? "fail" : "ok", o.count * o.devices, mismatches);
	return mismatches ? 1 : 0;
}
