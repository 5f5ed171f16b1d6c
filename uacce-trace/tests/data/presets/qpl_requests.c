/* Makes N synchronous QPL requests (qpl_execute_job, software path: CRC64
 * of a buffer) on the test's word; checks each result against a plain C
 * CRC64. Protocol: prints "ready PID", reads a line, makes the requests,
 * prints "done OK BAD", exits. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <qpl/qpl.h>

static uint64_t crc64_msb(const uint8_t *p, size_t n, uint64_t poly) {
    uint64_t crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint64_t)p[i] << 56;
        for (int b = 0; b < 8; b++)
            crc = (crc & (1ULL << 63)) ? (crc << 1) ^ poly : crc << 1;
    }
    return crc;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100;
    uint32_t size = 0;
    if (qpl_get_job_size(qpl_path_software, &size) != QPL_STS_OK) {
        printf("error qpl_get_job_size\n");
        return 1;
    }
    qpl_job *job = malloc(size);
    if (!job || qpl_init_job(qpl_path_software, job) != QPL_STS_OK) {
        printf("error qpl_init_job\n");
        return 1;
    }
    uint8_t buf[4096];
    const uint64_t poly = 0x42F0E1EBA9EA3693ULL;
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin))
        return 1;
    int ok = 0, bad = 0;
    for (int i = 0; i < n; i++) {
        for (size_t j = 0; j < sizeof buf; j++)
            buf[j] = (uint8_t)(i * 131 + j * 7);
        job->op = qpl_op_crc64;
        job->next_in_ptr = buf;
        job->available_in = sizeof buf;
        job->crc64_poly = poly;
        job->crc64 = 0;
        job->flags = 0; /* MSB-first, no inversion: CRC-64/ECMA-182 with init 0 */
        qpl_status st = qpl_execute_job(job);
        if (st == QPL_STS_OK && job->crc64 == crc64_msb(buf, sizeof buf, poly))
            ok++;
        else {
            if (bad == 0)
                printf("mismatch status %u crc %016llx want %016llx\n", (unsigned)st,
                       (unsigned long long)job->crc64,
                       (unsigned long long)crc64_msb(buf, sizeof buf, poly));
            bad++;
        }
    }
    qpl_fini_job(job);
    printf("done %d %d\n", ok, bad);
    return bad != 0;
}
