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
 * The request test (xtask/src/vm_test/requests.rs, `uacce-trace --op`):
 *   --requests N  instead of the faults above, N calls of the request
 *                 function iopf_request() (an unmangled, never-inlined
 *                 symbol the tracer probes with a uprobe): request i raises
 *                 i % 3 mock faults (0, 1 or 2; pasid P[0], grpid G + 4i + f,
 *                 each answered after the first delay D[0]) and spins 300 us.
 *                 One line per request: {"request":i,"faults":F,
 *                 "t_enter":ns,"t_exit":ns,"inner_start":ns,"inner_end":ns}
 *                 (around the call, and inside it), then
 *                 {"iopf_workload":"ok","requests":N,"faulted":F}.
 *   --fault-every K  (with --requests) request i raises one fault when
 *                 i % K == 0 and none otherwise, at an address inside a
 *                 buffer of its own (64 pages, page i % 64), instead of
 *                 i % 3 faults at --addr;
 *   --request-us W  each request spins W us (default 300);
 *   --pin-buffer  (with --fault-every) first pin that buffer through
 *                 /dev/uacce_ctrl (UACCE_CMD_PIN; {"pinned":{"addr":A,
 *                 "pages":64}}): the device finds its pages, so no request
 *                 raises a fault; unpinned after the last request. The
 *                 before/after pinning check (xtask/src/vm_test/pinverdict.rs)
 *                 records one run without and one with it.
 *
 * The attribution and pairing tests (xtask/src/vm_test/attribution.rs) add:
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
 * The set-up, the clock and the fault queue's read and write are
 * ut_guest.h's (see there how it is built).
 */
#define _GNU_SOURCE
#include <dirent.h>

#include "ut_guest.h"

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
	unsigned long requests;
	unsigned long fault_every;
	unsigned long request_us;
	int pin_buffer;
};

/* The buffer of --fault-every, in pages. */
#define REQ_BUF_PAGES 64

/* ut_on_die: the last line says why. */
static void fail_line(const char *what, int err)
{
	printf("{\"iopf_workload\":\"fail\",\"error\":\"%s\",\"errno\":%d}\n", what,
	       err);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: iopf-workload [--requests N [--fault-every K] [--request-us W] "
		"[--pin-buffer]] [--count N] [--delays-us D1,D2,...] "
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
	o->request_us = 300;
	for (i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(arg, "--kworker")) {
			o->kworker = 1;
			continue;
		}
		if (!strcmp(arg, "--pin-buffer")) {
			o->pin_buffer = 1;
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
		else if (!strcmp(arg, "--requests"))
			o->requests = parse_num(val);
		else if (!strcmp(arg, "--fault-every"))
			o->fault_every = parse_num(val);
		else if (!strcmp(arg, "--request-us"))
			o->request_us = parse_num(val);
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
	    (o->perm & (UT_IOPF_FROM_WORK | UT_IOPF_NOT_LAST)) ||
	    ((o->fault_every || o->pin_buffer) && !o->requests) ||
	    (o->pin_buffer && !o->fault_every))
		usage();
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

/* A mock device on the IOAS, its dev_name() learnt from sysfs. */
static void mock_device(const struct ut_iommufd *u, struct ut_mock *m)
{
	char before[4096], after[4096], *line, *save;

	mock_names(before, sizeof(before));
	ut_mock_device(u, m);
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

/* One round's group on one device, as the program saw it. */
struct group {
	uint32_t pasid, grpid, cookie, flags;
	uint64_t addr;
	uint64_t t_trigger, t_read, t_write_start, t_write_done;
	unsigned long round, delay_us;
	int match, answered;
};

static void print_group(const struct options *o, const struct ut_mock *m,
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

/* The times iopf_request() measured inside itself. */
struct request_inner {
	uint64_t start;
	uint64_t end;
};

/* One request: `nfaults` mock faults, each read and answered after
 * `delay_us`, then `work_us` of work in all; returns `id` (what the tracer
 * sees as the return value). Never inlined and kept: `uacce-trace --op`
 * probes it. */
__attribute__((noinline, used)) long iopf_request(long id, unsigned long nfaults,
						  const struct ut_iommufd *u,
						  const struct ut_mock *m, uint32_t pasid,
						  uint32_t grpid, uint64_t addr,
						  unsigned long delay_us,
						  unsigned long work_us,
						  struct request_inner *inner)
{
	struct iommu_hwpt_pgfault f;
	unsigned long k;

	inner->start = ut_now_ns();
	for (k = 0; k < nfaults; k++) {
		ut_trigger(u->fd, m->idev_id, pasid, grpid + (uint32_t)k,
			   IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE,
			   addr + k * 4096);
		ut_read_faults(u->fault_fd, &f, 1);
		if (delay_us)
			ut_sleep_until_ns(ut_now_ns() + (uint64_t)delay_us * 1000);
		ut_respond(u->fault_fd, f.cookie);
	}
	while (ut_now_ns() - inner->start < (uint64_t)work_us * 1000)
		;
	inner->end = ut_now_ns();
	__asm__ volatile("" ::: "memory");
	return id;
}

static int run_requests(const struct options *o, const struct ut_iommufd *u,
			const struct ut_mock *m)
{
	long page = sysconf(_SC_PAGESIZE);
	unsigned long i, faulted = 0;
	char *buf = NULL;
	int ctrl = -1;
	struct uacce_pin_address pin = { 0, 0 };

	if (o->fault_every)
		buf = ut_map_pages(REQ_BUF_PAGES, page);
	if (o->pin_buffer) {
		ctrl = open("/dev/uacce_ctrl", O_RDWR);
		if (ctrl < 0)
			ut_die("open /dev/uacce_ctrl");
		pin.addr = (uintptr_t)buf;
		pin.size = (uint64_t)REQ_BUF_PAGES * (uint64_t)page;
		if (ioctl(ctrl, UACCE_CMD_PIN, &pin))
			ut_die("UACCE_CMD_PIN");
		printf("{\"pinned\":{\"addr\":%" PRIuPTR ",\"pages\":%d}}\n",
		       (uintptr_t)buf, REQ_BUF_PAGES);
	}
	for (i = 0; i < o->requests; i++) {
		struct request_inner inner = { 0, 0 };
		unsigned long nfaults = i % 3;
		uint64_t addr = o->addr + 4 * i * 4096;
		uint64_t t_enter, t_exit;
		long ret;

		if (o->fault_every) {
			/* A pinned buffer never faults: the device finds its pages. */
			nfaults = !o->pin_buffer && i % o->fault_every == 0;
			addr = (uintptr_t)buf + (i % REQ_BUF_PAGES) * (uint64_t)page + 0x40;
		}
		t_enter = ut_now_ns();
		ret = iopf_request((long)i, nfaults, u, m, (uint32_t)o->pasids[0],
				   o->grpid + (uint32_t)(4 * i), addr, o->delays_us[0],
				   o->request_us, &inner);
		t_exit = ut_now_ns();
		faulted += nfaults > 0;
		if (ret != (long)i)
			ut_die("iopf_request returned another id");
		printf("{\"request\":%lu,\"faults\":%lu,\"t_enter\":%" PRIu64
		       ",\"t_exit\":%" PRIu64 ",\"inner_start\":%" PRIu64
		       ",\"inner_end\":%" PRIu64 "}\n",
		       i, nfaults, t_enter, t_exit, inner.start, inner.end);
	}
	if (ctrl >= 0) {
		if (ioctl(ctrl, UACCE_CMD_UNPIN, &pin))
			ut_die("UACCE_CMD_UNPIN");
		close(ctrl);
	}
	printf("{\"iopf_workload\":\"ok\",\"requests\":%lu,\"faulted\":%lu}\n",
	       o->requests, faulted);
	return 0;
}

int main(int argc, char **argv)
{
	static struct iommu_hwpt_pgfault faults[MAX_DEVICES * MAX_PAGES];
	static struct group pending[64 * MAX_DEVICES];
	static unsigned long pending_dev[64 * MAX_DEVICES];
	struct ut_mock devs[MAX_DEVICES], orphan;
	unsigned long i, k, j, mismatches = 0, n_pending = 0;
	uint32_t trigger_perm;
	struct options o;
	struct ut_iommufd u;

	ut_prog = "iopf-workload";
	ut_on_die = fail_line;
	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_args(argc, argv, &o);
	if (o.unanswered * o.devices > sizeof(pending) / sizeof(pending[0]))
		usage();
	trigger_perm = o.perm | (o.kworker ? UT_IOPF_FROM_WORK : 0);

	ut_iommufd_open(&u);
	for (k = 0; k < o.devices; k++) {
		mock_device(&u, &devs[k]);
		ut_fault_domain(&u, &devs[k]);
	}
	if (o.orphans)
		mock_device(&u, &orphan);

	printf("{\"setup\":{\"pid\":%d,\"ioas\":%u,\"stdev\":%u,\"idev\":%u,"
	       "\"parent_hwpt\":%u,\"fault_id\":%u,\"fault_fd\":%u,\"iopf_hwpt\":%u,"
	       "\"kworker\":%s,\"devices\":[",
	       getpid(), u.ioas_id, devs[0].stdev_id, devs[0].idev_id,
	       devs[0].parent_hwpt, u.fault_id, u.fault_fd, devs[0].iopf_hwpt,
	       o.kworker ? "true" : "false");
	for (k = 0; k < o.devices; k++)
		printf("%s{\"idev\":%u,\"name\":\"%s\"}", k ? "," : "",
		       devs[k].idev_id, devs[k].name);
	printf("]");
	if (o.orphans)
		printf(",\"orphan\":{\"idev\":%u,\"name\":\"%s\"}", orphan.idev_id,
		       orphan.name);
	printf("}}\n");

	if (o.requests)
		return run_requests(&o, &u, &devs[0]);

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
			g[k].t_trigger = ut_now_ns();
			for (j = 0; j < o.pages; j++)
				ut_trigger(u.fd, devs[k].idev_id, pasid, grpid,
					trigger_perm |
						(j + 1 < o.pages ? UT_IOPF_NOT_LAST : 0),
					g[k].addr + j * 4096);
		}

		ut_read_faults(u.fault_fd, faults, o.devices * o.pages);
		t_read = ut_now_ns();
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
			if (!g[k].match)
				mismatches++;
			if (!answer) {
				pending[n_pending] = g[k];
				pending_dev[n_pending++] = k;
				continue;
			}
			if (delay_us)
				ut_sleep_until_ns(ut_now_ns() + (uint64_t)delay_us * 1000);
			g[k].t_write_start = ut_now_ns();
			ut_respond(u.fault_fd, g[k].cookie);
			g[k].t_write_done = ut_now_ns();
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
		uint64_t t = ut_now_ns();

		if (o.grpid_mod)
			grpid %= (uint32_t)o.grpid_mod;
		ut_trigger(u.fd, orphan.idev_id, pasid, grpid, trigger_perm, addr);
		printf("{\"orphan\":%lu,\"idev\":%u,\"device\":\"%s\",\"pasid\":%u,"
		       "\"grpid\":%u,\"addr\":%" PRIu64 ",\"t_trigger\":%" PRIu64 "}\n",
		       i, orphan.idev_id, orphan.name, pasid, grpid, addr, t);
	}

	if (n_pending) {
		uint64_t t_close_start, t_close_done;

		/* The fault fd holds the context: close it first, then the
		 * context's release destroys the objects and answers what is
		 * pending. */
		t_close_start = ut_now_ns();
		close((int)u.fault_fd);
		close(u.fd);
		t_close_done = ut_now_ns();
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
