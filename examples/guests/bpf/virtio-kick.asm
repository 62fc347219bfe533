; virtio-kick.asm -- the legacy virtio queue notify in exactly KVM ioeventfd's shape.
;
; A 16-bit write of queue index q (0, 1 or 2) to BAR0 + 16 signals notifier q
; and is done; every other access goes to the virtio model.  Unlike
; asm/virtio.asm it neither checks that the queue has a ring (QVALID) nor
; clears the queue's NEED_NOTIFY bit, so for each q the write's whole effect
; is "signal notifier q": `bpfio vm --offload` proves that and registers a
; KVM_IOEVENTFD with datamatch q, after which these kicks never exit.
#include <pio.inc>
#include "virtio.inc"

        ld [PIO_DIR]
        jeq #PIO_OUT, out, slow
out:    ld [PIO_OFFSET]
        jeq #VIRTIO_PCI_QUEUE_NOTIFY, notify, slow
notify: ld [PIO_SIZE]
        jeq #2, kick, slow
kick:   ld [PIO_DATA]
        jeq #0, q0
        jeq #1, q1
        jeq #2, q2, slow
q0:     ret #PIO_NOTIFY_0
q1:     ret #PIO_NOTIFY_1
q2:     ret #PIO_NOTIFY_2
slow:   ret #PIO_EXIT
