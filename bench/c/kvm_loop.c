/* A bare KVM_RUN loop: the least a userspace VMM can do per PIO exit.
 *
 * Part of bpfio's benchmarks (bench/bench_native.py compiles it with `cc` at
 * bench time).  It creates a VM with 1 MiB of RAM, copies a flat real-mode
 * image to LOAD (the bench passes bpfio's own PM-timer read-storm guest,
 * bpfio.kvm.loop_guest: `in eax, dx; dec ecx; jnz`, then HLT), and runs it
 * on one vCPU, answering every IN exit with a counter and dropping OUTs.
 * Nothing else happens per exit: no device model, no dispatch.
 *
 * Usage: kvm_loop IMAGE LOAD REPEAT
 *
 * Prints "ns_per_exit N exits E": the best wall time per exit
 * over REPEAT runs of the guest (CLOCK_MONOTONIC, as bpfio's run_guest
 * times its runs) and the PIO exits of one run.
 * Exit status 1 with a message when KVM refuses something.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE 0x100000
#define TSS_ADDR 0xfffbd000UL   /* needed on Intel hosts without unrestricted guest */

static void die(const char *what)
{
    fprintf(stderr, "kvm_loop: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double wall_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s IMAGE LOAD REPEAT\n", argv[0]);
        return 2;
    }
    unsigned long load = strtoul(argv[2], NULL, 0);
    long repeat = atol(argv[3]);
    if (repeat < 1)
        repeat = 1;

    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        die("/dev/kvm");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0)
        die("KVM_CREATE_VM");
    ioctl(vm, KVM_SET_TSS_ADDR, TSS_ADDR);

    unsigned char *mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        die("mmap guest memory");
    FILE *f = fopen(argv[1], "rb");
    if (!f)
        die(argv[1]);
    size_t n = fread(mem + load, 1, MEM_SIZE - load, f);
    fclose(f);
    if (n == 0) {
        fprintf(stderr, "kvm_loop: empty image\n");
        return 1;
    }
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE,
        .userspace_addr = (uintptr_t)mem,
    };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
        die("KVM_SET_USER_MEMORY_REGION");

    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0)
        die("KVM_CREATE_VCPU");
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size < 0)
        die("KVM_GET_VCPU_MMAP_SIZE");
    struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED)
        die("mmap kvm_run");

    double best = 1e300;
    unsigned long exits = 0;
    for (long r = 0; r < repeat; r++) {
        /* Real mode, CS = 0, IP = LOAD (as bpfio's Vcpu.enter does). */
        struct kvm_sregs sregs;
        if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
            die("KVM_GET_SREGS");
        sregs.cs.selector = 0;
        sregs.cs.base = 0;
        sregs.ds.selector = sregs.es.selector = sregs.ss.selector = 0;
        sregs.ds.base = sregs.es.base = sregs.ss.base = 0;
        if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
            die("KVM_SET_SREGS");
        struct kvm_regs regs;
        memset(&regs, 0, sizeof regs);
        regs.rip = load;
        regs.rflags = 0x2;
        regs.rsp = 0x8000;
        if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
            die("KVM_SET_REGS");

        uint32_t counter = 0;
        unsigned long io = 0;
        double t0 = wall_ns();
        for (;;) {
            if (ioctl(vcpu, KVM_RUN, 0) < 0) {
                if (errno == EINTR)
                    continue;
                die("KVM_RUN");
            }
            if (run->exit_reason == KVM_EXIT_IO) {
                io++;
                if (run->io.direction == KVM_EXIT_IO_IN) {
                    unsigned char *data = (unsigned char *)run + run->io.data_offset;
                    for (uint32_t i = 0; i < run->io.count; i++, counter++)
                        memcpy(data + i * run->io.size, &counter, run->io.size);
                }
                continue;
            }
            if (run->exit_reason == KVM_EXIT_HLT)
                break;
            fprintf(stderr, "kvm_loop: unexpected exit reason %u\n", run->exit_reason);
            return 1;
        }
        double ns = (wall_ns() - t0) / (io ? io : 1);
        if (ns < best)
            best = ns;
        exits = io;
    }
    printf("ns_per_exit %.1f exits %lu\n", best, exits);
    return 0;
}
