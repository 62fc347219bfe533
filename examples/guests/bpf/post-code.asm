; post-code.asm -- port 0x80 as QEMU has it (reads 0xff, writes only matter
; as the last POST code), keeping the code and a count in shared memory.
;
; Every OUT is handled here (PIO_DONE) and depends only on the written
; value and shared memory -- no clock, no vCPU -- so replaying the writes
; later, in order, gives the same state: `bpfio vm --offload` registers the
; port as a KVM coalesced-PIO zone and the writes never exit; the ring is
; replayed through this program before any other exit is handled.
; Shared words follow asm/debugport.inc, so the PostPort model reads them.
#include <pio.inc>
#include "debugport.inc"

        ld [PIO_DIR]
        jeq #PIO_OUT, write
        ld M[DBG_READBACK]
        ret #PIO_DONE
write:  ld [PIO_DATA]
        and #0xff                   ; a wider write: its low byte is this port's
        st M[DBG_LAST]
        ld M[DBG_COUNT]
        add #1
        st M[DBG_COUNT]
        ret #PIO_DONE
