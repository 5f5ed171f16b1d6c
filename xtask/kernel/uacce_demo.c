// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * uacce-demo: guest program of `cargo xtask demo` on the uacce-trace test
 * kernel. One process of the demo's workload: it faults through iommufd's
 * self-test mock device (the kernel's real IOPF path, as iopf-workload does)
 * at a given rate, with response delays drawn from a range (mostly short,
 * with a long tail), and pins pages through /dev/uacce_ctrl (the fixture)
 * or io_uring buffer registration, on a timeline:
 *
 *   uacce-demo --name COMM --seconds S [--rate R] [--delay-us MIN,MAX]
 *              [--pasid P] [--pages N] [--burst ON_MS,OFF_MS]
 *              [--pin-with uacce|iouring] [--pin-at T] [--faults-after-pin T]
 *              [--churn-ms MS] [--churn-pages N]
 *              [--request-rate Q] [--request-us W]
 *
 * - COMM becomes the process's command name (prctl PR_SET_NAME), so the
 *   demo's processes are told apart in `top`.
 * - R faults per second (0: none) for S seconds, on the pages of an
 *   N-page buffer (addresses inside it, hot pages more often), PASID P.
 *   With --burst the faults come only during ON_MS of every ON_MS+OFF_MS.
 * - --pin-at T: T seconds after the start the whole buffer is pinned
 *   (uacce: UACCE_CMD_PIN on /dev/uacce_ctrl; iouring: one registered
 *   buffer); the faults go on for --faults-after-pin seconds (default 1.5,
 *   inside the pinned range: a device that has not seen the new mapping
 *   yet) and then stop. The buffer is unpinned at the end of the run.
 * - --churn-ms MS: every MS milliseconds pin and unpin a separate
 *   N-page buffer (--churn-pages, default 8) with the --pin-with method.
 * - --request-rate Q: the process works in requests, Q calls per second of
 *   demo_request() (an unmangled, never-inlined symbol: `uacce-trace --op
 *   uacce-demo:demo_request` probes it), each spinning W us (--request-us,
 *   default 100). The faults then happen inside requests: those that fell
 *   due since the last request are raised inside the next one (at most 4),
 *   so some requests have faults and the others none; once the faults stop
 *   (the pin), every request is clean.
 *
 * Output, one JSON object per line on stdout, times CLOCK_MONOTONIC ns:
 *   {"demo":"COMM","pid":N,"phase":"start","t":ns}
 *   {"demo":"COMM","pid":N,"phase":"pinned","t":ns,"addr":A,"pages":N}
 *   {"demo":"COMM","pid":N,"phase":"faults_stopped","t":ns,"faults":F}
 *   {"demo":"COMM","pid":N,"phase":"end","t":ns,"faults":F,"churn":C,
 *    "requests":R,"faulted_requests":FR}
 * (R requests made, FR of them with at least one fault inside.)
 * Exit status 0 when every step worked, 1 otherwise (the reason on stderr).
 *
 * The mock device's set-up, the clock and the pin ABI are ut_guest.h's
 * (see there how it is built).
 */
#define _GNU_SOURCE
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include <linux/io_uring.h>
#include "ut_guest.h"

enum pin_with { PIN_UACCE, PIN_IOURING };

struct options {
	const char *name;
	double seconds;
	double rate;
	double delay_min_us, delay_max_us;
	uint32_t pasid;
	long pages;
	long burst_on_ms, burst_off_ms;
	enum pin_with pin_with;
	double pin_at; /* < 0: never */
	double faults_after_pin;
	long churn_ms; /* 0: no churn */
	long churn_pages;
	double request_rate; /* 0: no requests */
	double request_us;
};

/* Faults raised inside one request at most. */
#define MAX_REQUEST_FAULTS 4

static void usage(void)
{
	fprintf(stderr,
		"usage: uacce-demo --name COMM --seconds S [--rate R] [--delay-us MIN,MAX]\n"
		"       [--pasid P] [--pages N] [--burst ON_MS,OFF_MS]\n"
		"       [--pin-with uacce|iouring] [--pin-at T] [--faults-after-pin T]\n"
		"       [--churn-ms MS] [--churn-pages N] [--request-rate Q] [--request-us W]\n");
	exit(2);
}

static double parse_double(const char *s)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || v < 0)
		usage();
	return v;
}

static long parse_long(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 0);
	if (errno || end == s || *end || v < 0)
		usage();
	return v;
}

/* "A,B" into two numbers. */
static void parse_pair(const char *s, double *a, double *b)
{
	char buf[64];
	char *comma;

	if (strlen(s) >= sizeof(buf))
		usage();
	strcpy(buf, s);
	comma = strchr(buf, ',');
	if (!comma)
		usage();
	*comma = 0;
	*a = parse_double(buf);
	*b = parse_double(comma + 1);
}

static void parse_args(int argc, char **argv, struct options *o)
{
	int i;

	memset(o, 0, sizeof(*o));
	o->delay_min_us = 20;
	o->delay_max_us = 500;
	o->pasid = 1;
	o->pages = 64;
	o->pin_at = -1;
	o->faults_after_pin = 1.5;
	o->churn_pages = 8;
	o->request_us = 100;
	for (i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		double a, b;

		if (!val)
			usage();
		if (!strcmp(arg, "--name"))
			o->name = val;
		else if (!strcmp(arg, "--seconds"))
			o->seconds = parse_double(val);
		else if (!strcmp(arg, "--rate"))
			o->rate = parse_double(val);
		else if (!strcmp(arg, "--delay-us")) {
			parse_pair(val, &a, &b);
			if (a < 1 || b < a)
				usage();
			o->delay_min_us = a;
			o->delay_max_us = b;
		} else if (!strcmp(arg, "--pasid"))
			o->pasid = (uint32_t)parse_long(val);
		else if (!strcmp(arg, "--pages"))
			o->pages = parse_long(val);
		else if (!strcmp(arg, "--burst")) {
			parse_pair(val, &a, &b);
			o->burst_on_ms = (long)a;
			o->burst_off_ms = (long)b;
		} else if (!strcmp(arg, "--pin-with")) {
			if (!strcmp(val, "uacce"))
				o->pin_with = PIN_UACCE;
			else if (!strcmp(val, "iouring"))
				o->pin_with = PIN_IOURING;
			else
				usage();
		} else if (!strcmp(arg, "--pin-at"))
			o->pin_at = parse_double(val);
		else if (!strcmp(arg, "--faults-after-pin"))
			o->faults_after_pin = parse_double(val);
		else if (!strcmp(arg, "--churn-ms"))
			o->churn_ms = parse_long(val);
		else if (!strcmp(arg, "--churn-pages"))
			o->churn_pages = parse_long(val);
		else if (!strcmp(arg, "--request-rate"))
			o->request_rate = parse_double(val);
		else if (!strcmp(arg, "--request-us"))
			o->request_us = parse_double(val);
		else
			usage();
		i++;
	}
	if (!o->name || o->seconds <= 0 || o->pages < 1 || o->churn_pages < 1)
		usage();
}

/* xorshift64*: deterministic per process, no libc state. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static double uniform(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (double)((rng_state * 0x2545f4914f6cdd1dull) >> 11) / 9007199254740992.0;
}

/* ---- iommufd mock device ---------------------------------------------- */

/* Same set-up as iopf-workload: a mock device on a nested HWPT with a
 * fault queue. */
static void mock_setup(struct ut_iommufd *u, struct ut_mock *m)
{
	ut_iommufd_open(u);
	ut_mock_device(u, m);
	ut_fault_domain(u, m);
}

/* One fault at addr, answered delay_ns after it was read. */
static void mock_fault(const struct ut_iommufd *u, const struct ut_mock *m,
		       uint32_t pasid, uint32_t grpid, uint64_t addr, uint64_t delay_ns)
{
	struct iommu_hwpt_pgfault fault;

	ut_trigger(u->fd, m->idev_id, pasid, grpid,
		   IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE, addr);
	ut_read_faults(u->fault_fd, &fault, 1);
	if (delay_ns)
		ut_sleep_until_ns(ut_now_ns() + delay_ns);
	ut_respond(u->fault_fd, fault.cookie);
}

/* What a fault inside the process's buffer needs. */
struct faulter {
	const struct options *o;
	struct ut_iommufd *iommu;
	struct ut_mock *m;
	char *buf;
	long page;
	unsigned long *faults; /* the process's fault count, for group ids */
};

/* One fault on a page of the buffer (hot pages more often) with a delay
 * from the process's range (mostly short, with a long tail: u^3). */
static void buffer_fault(const struct faulter *f)
{
	const struct options *o = f->o;
	/* Hot pages: the low quarter of the buffer gets half. */
	long pg = uniform() < 0.5 ? (long)(uniform() * (o->pages / 4 + 1))
				  : (long)(uniform() * o->pages);
	double u = uniform();
	double delay_us = o->delay_min_us + (o->delay_max_us - o->delay_min_us) * u * u * u;

	if (pg >= o->pages)
		pg = o->pages - 1;
	mock_fault(f->iommu, f->m, o->pasid, (uint32_t)(*f->faults + 1),
		   (uintptr_t)f->buf + (uint64_t)pg * f->page + 0x40, (uint64_t)(delay_us * 1000));
	(*f->faults)++;
}

/* One request: `nfaults` faults, then work until `work_ns` after its
 * start; returns `id`. Never inlined and kept: `uacce-trace --op` probes
 * it. */
__attribute__((noinline, used)) long demo_request(long id, unsigned nfaults,
						  const struct faulter *f, uint64_t work_ns)
{
	uint64_t start = ut_now_ns();
	unsigned k;

	for (k = 0; k < nfaults; k++)
		buffer_fault(f);
	while (ut_now_ns() - start < work_ns)
		;
	__asm__ volatile("" ::: "memory");
	return id;
}

/* ---- pinning ---------------------------------------------------------- */

struct pinner {
	enum pin_with with;
	int fd; /* /dev/uacce_ctrl or the io_uring */
};

static void pinner_open(struct pinner *p, enum pin_with with)
{
	p->with = with;
	if (with == PIN_UACCE) {
		p->fd = open("/dev/uacce_ctrl", O_RDWR);
		if (p->fd < 0)
			ut_die("open /dev/uacce_ctrl");
	} else {
		struct io_uring_params params;

		memset(&params, 0, sizeof(params));
		p->fd = (int)syscall(__NR_io_uring_setup, 4, &params);
		if (p->fd < 0)
			ut_die("io_uring_setup");
	}
}

static void pin(struct pinner *p, void *addr, size_t len)
{
	if (p->with == PIN_UACCE) {
		struct uacce_pin_address a = { .addr = (uintptr_t)addr, .size = len };

		if (ioctl(p->fd, UACCE_CMD_PIN, &a))
			ut_die("UACCE_CMD_PIN");
	} else {
		struct iovec iov = { .iov_base = addr, .iov_len = len };

		if (syscall(__NR_io_uring_register, p->fd, IORING_REGISTER_BUFFERS, &iov, 1))
			ut_die("IORING_REGISTER_BUFFERS");
	}
}

static void unpin(struct pinner *p, void *addr, size_t len)
{
	if (p->with == PIN_UACCE) {
		struct uacce_pin_address a = { .addr = (uintptr_t)addr, .size = len };

		if (ioctl(p->fd, UACCE_CMD_UNPIN, &a))
			ut_die("UACCE_CMD_UNPIN");
	} else if (syscall(__NR_io_uring_register, p->fd, IORING_UNREGISTER_BUFFERS, NULL, 0)) {
		ut_die("IORING_UNREGISTER_BUFFERS");
	}
}

/* Whether a fault due at t is raised: always, or in the on part of the
 * --burst cycle. */
static int fault_on(const struct options *o, uint64_t start, uint64_t t)
{
	uint64_t cycle_ms = (uint64_t)(o->burst_on_ms + o->burst_off_ms);

	return !cycle_ms || ((t - start) / 1000000) % cycle_ms < (uint64_t)o->burst_on_ms;
}

static void phase(const struct options *o, const char *name, const char *extra)
{
	printf("{\"demo\":\"%s\",\"pid\":%d,\"phase\":\"%s\",\"t\":%" PRIu64 "%s}\n", o->name,
	       getpid(), name, ut_now_ns(), extra);
}

int main(int argc, char **argv)
{
	long page = sysconf(_SC_PAGESIZE);
	struct pinner buf_pinner = { .fd = -1 }, churn_pinner = { .fd = -1 };
	uint64_t start, end, next_fault, next_churn, next_request, pin_at = UINT64_MAX;
	uint64_t stop_faults_at = UINT64_MAX;
	unsigned long faults = 0, churns = 0, requests = 0, faulted_requests = 0;
	int pinned = 0, stopped = 0;
	char extra[192];
	struct faulter faulter;
	char *buf, *churn_buf = NULL;
	struct options o;
	struct ut_iommufd iommu = { .fd = -1 };
	struct ut_mock m;

	ut_prog = "uacce-demo";
	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_args(argc, argv, &o);
	ut_prog = o.name;
	if (prctl(PR_SET_NAME, o.name, 0, 0, 0))
		ut_die("prctl PR_SET_NAME");
	rng_state ^= (uint64_t)getpid() * 0x100000001b3ull;

	buf = ut_map_pages(o.pages, page);
	if (o.rate > 0)
		mock_setup(&iommu, &m);
	if (o.churn_ms) {
		churn_buf = ut_map_pages(o.churn_pages, page);
		pinner_open(&churn_pinner, o.pin_with);
	}

	start = ut_now_ns();
	end = start + (uint64_t)(o.seconds * 1e9);
	if (o.pin_at >= 0) {
		pin_at = start + (uint64_t)(o.pin_at * 1e9);
		stop_faults_at = pin_at + (uint64_t)(o.faults_after_pin * 1e9);
	}
	next_fault = o.rate > 0 ? start : UINT64_MAX;
	next_churn = o.churn_ms ? start : UINT64_MAX;
	next_request = o.request_rate > 0 ? start : UINT64_MAX;
	faulter = (struct faulter){ &o, &iommu, &m, buf, page, &faults };
	phase(&o, "start", "");

	for (;;) {
		uint64_t t = ut_now_ns();
		uint64_t next;

		if (t >= end)
			break;
		if (!pinned && t >= pin_at) {
			pinner_open(&buf_pinner, o.pin_with);
			pin(&buf_pinner, buf, (size_t)(o.pages * page));
			pinned = 1;
			snprintf(extra, sizeof(extra), ",\"addr\":%" PRIuPTR ",\"pages\":%ld",
				 (uintptr_t)buf, o.pages);
			phase(&o, "pinned", extra);
		}
		if (!stopped && t >= stop_faults_at) {
			stopped = 1;
			next_fault = UINT64_MAX;
			snprintf(extra, sizeof(extra), ",\"faults\":%lu", faults);
			phase(&o, "faults_stopped", extra);
		}
		if (t >= next_request) {
			/* The faults due since the last request, inside this one. */
			uint64_t period = (uint64_t)(1e9 / (o.rate > 0 ? o.rate : 1));
			unsigned nfaults = 0;

			while (t >= next_fault && nfaults < MAX_REQUEST_FAULTS) {
				nfaults += fault_on(&o, start, next_fault);
				next_fault += period;
			}
			if (next_fault < t)
				next_fault = t + period / 2;
			if (demo_request((long)requests, nfaults, &faulter,
					 (uint64_t)(o.request_us * 1000)) != (long)requests)
				ut_die("demo_request returned another id");
			requests++;
			faulted_requests += nfaults > 0;
			next_request += (uint64_t)(1e9 / o.request_rate);
			if (next_request < t)
				next_request = t + (uint64_t)(0.5e9 / o.request_rate);
		} else if (o.request_rate <= 0 && t >= next_fault) {
			uint64_t period = (uint64_t)(1e9 / o.rate);

			if (fault_on(&o, start, t))
				buffer_fault(&faulter);
			next_fault += period;
			if (next_fault < t)
				next_fault = t + period / 2;
		}
		if (t >= next_churn) {
			pin(&churn_pinner, churn_buf, (size_t)(o.churn_pages * page));
			unpin(&churn_pinner, churn_buf, (size_t)(o.churn_pages * page));
			churns++;
			next_churn += (uint64_t)o.churn_ms * 1000000;
		}
		next = end;
		/* With requests, faults wait for the next request. */
		if (o.request_rate <= 0 && next_fault < next)
			next = next_fault;
		if (next_request < next)
			next = next_request;
		if (next_churn < next)
			next = next_churn;
		if (!pinned && pin_at < next)
			next = pin_at;
		if (!stopped && stop_faults_at < next)
			next = stop_faults_at;
		ut_sleep_until_ns(next);
	}
	/* Unpin here, in this process: a ring torn down at exit would be
	 * unpinned later by a kernel worker. */
	if (pinned)
		unpin(&buf_pinner, buf, (size_t)(o.pages * page));
	snprintf(extra, sizeof(extra),
		 ",\"faults\":%lu,\"churn\":%lu,\"requests\":%lu,\"faulted_requests\":%lu", faults,
		 churns, requests, faulted_requests);
	phase(&o, "end", extra);
	return 0;
}
