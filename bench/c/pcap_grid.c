/* Time libpcap's bpf_filter() natively over a (program x packet) grid.
 *
 * Part of bpfio's benchmarks (bench/bench_native.py compiles it with `cc` at
 * bench time and links libpcap).  Inputs are two files the bench writes:
 *
 *   programs: u32 count, then per program: u32 length, length x struct bpf_insn
 *             (code u16, jt u8, jf u8, k u32; little-endian, 8 bytes each)
 *   packets:  u32 count, then per packet: u32 length, length bytes
 *
 * Usage: pcap_grid PROGRAMS PACKETS REPEAT VERDICTS_OUT
 *
 * Prints one line "ns_per_pair N pairs P" where N is the best of 5 timed
 * passes (CPU time of this process, as the Python benches use) of REPEAT
 * sweeps over every (program, packet) pair, programs outer, packets inner.
 * Writes every pair's verdict (u32, same order) to VERDICTS_OUT so the bench
 * can check libpcap computed what bpfio's interpreter computes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* <pcap/bpf.h>'s struct bpf_insn and bpf_filter(), declared here so that only
 * the library (not libpcap-dev's headers) is needed. */
struct bpf_insn {
    unsigned short code;
    unsigned char jt;
    unsigned char jf;
    uint32_t k;
};
extern unsigned int bpf_filter(const struct bpf_insn *, const unsigned char *,
                               unsigned int, unsigned int);

static unsigned char *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(n ? n : 1);
    if (!buf || fread(buf, 1, n, f) != (size_t)n) { perror(path); exit(2); }
    fclose(f);
    *size = n;
    return buf;
}

static uint32_t u32(const unsigned char *p)
{
    return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Split a "u32 count, then u32 length + payload" file into pointers. */
static uint32_t items(unsigned char *buf, size_t size, size_t unit,
                      unsigned char ***ptrs, uint32_t **lens)
{
    uint32_t n = u32(buf);
    size_t off = 4;
    *ptrs = calloc(n ? n : 1, sizeof **ptrs);
    *lens = calloc(n ? n : 1, sizeof **lens);
    for (uint32_t i = 0; i < n; i++) {
        if (off + 4 > size) { fprintf(stderr, "truncated input\n"); exit(2); }
        (*lens)[i] = u32(buf + off);
        (*ptrs)[i] = buf + off + 4;
        off += 4 + (size_t)(*lens)[i] * unit;
        if (off > size) { fprintf(stderr, "truncated input\n"); exit(2); }
    }
    return n;
}

static double cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s PROGRAMS PACKETS REPEAT VERDICTS_OUT\n", argv[0]);
        return 2;
    }
    size_t psize, ksize;
    unsigned char *pbuf = slurp(argv[1], &psize), *kbuf = slurp(argv[2], &ksize);
    unsigned char **progs, **pkts;
    uint32_t *plen, *klen;
    uint32_t np = items(pbuf, psize, 8, &progs, &plen);
    uint32_t nk = items(kbuf, ksize, 1, &pkts, &klen);
    long repeat = atol(argv[3]);
    if (repeat < 1)
        repeat = 1;

    /* Copy the programs into aligned struct arrays (the file's layout is the
     * struct's on x86-64, but alignment is not guaranteed in the buffer). */
    struct bpf_insn **insns = calloc(np ? np : 1, sizeof *insns);
    for (uint32_t i = 0; i < np; i++) {
        insns[i] = calloc(plen[i] ? plen[i] : 1, sizeof **insns);
        for (uint32_t j = 0; j < plen[i]; j++) {
            const unsigned char *q = progs[i] + 8 * j;
            insns[i][j].code = q[0] | q[1] << 8;
            insns[i][j].jt = q[2];
            insns[i][j].jf = q[3];
            insns[i][j].k = u32(q + 4);
        }
    }

    uint32_t *verdicts = calloc((size_t)np * nk + 1, sizeof *verdicts);
    for (uint32_t i = 0; i < np; i++)
        for (uint32_t j = 0; j < nk; j++)
            verdicts[(size_t)i * nk + j] = bpf_filter(insns[i], pkts[j], klen[j], klen[j]);

    volatile unsigned int sink = 0;     /* keeps the calls from being elided */
    double best = 1e300;
    for (int pass = 0; pass < 5; pass++) {
        unsigned int acc = 0;
        double t0 = cpu_ns();
        for (long r = 0; r < repeat; r++)
            for (uint32_t i = 0; i < np; i++)
                for (uint32_t j = 0; j < nk; j++)
                    acc += bpf_filter(insns[i], pkts[j], klen[j], klen[j]);
        double ns = (cpu_ns() - t0) / ((double)repeat * np * nk);
        sink += acc;
        if (ns < best)
            best = ns;
    }

    FILE *out = fopen(argv[4], "wb");
    if (!out || fwrite(verdicts, sizeof *verdicts, (size_t)np * nk, out) != (size_t)np * nk) {
        perror(argv[4]);
        return 2;
    }
    fclose(out);
    printf("ns_per_pair %.3f pairs %lu\n", best, (unsigned long)np * nk);
    return 0;
}
