; virtio.asm -- legacy virtio-PCI queue notify without an exit: the ioeventfd,
; as a program.  Binding: BAR0 (0xC000, length 0x20), notifiers = 8.
;
; Handles: a 16-bit write to VIRTIO_PCI_QUEUE_NOTIFY (BAR0 + 16) whose value
; is a queue with a ring (bit set in M[VIRTIO_QVALID]): clear the queue's bit
; in M[VIRTIO_NEED_NOTIFY], then ret #PIO_NOTIFY_q.  That is KVM's PIO
; ioeventfd with len 2 and datamatch = q, one per queue, plus the flag.
; cBPF cannot compute a verdict's notifier index, so a jump table maps the
; queue to its constant ret (VIRTIO_QUEUES_MAX of them).
;
; Passes on to the model (bpfio.devices.virtio), and why:
;   * 1- and 4-byte writes to +16: a len-2 datamatch ioeventfd misses them
;     too; QEMU's register handler still notifies, and so does the model (it
;     signals the same notifier, so both paths look alike to the host).
;   * kicks of queues without a ring or beyond the table (QEMU ignores them).
;   * every other register: features, PFN, queue select/size, status (device
;     setup and reset), ISR (read-and-clear plus INTx deassert), config.
;   * every read.
#include <pio.inc>
#include "virtio.inc"

        ld [PIO_DIR]
        jeq #PIO_OUT, out, slow
out:    ld [PIO_OFFSET]
        jeq #VIRTIO_PCI_QUEUE_NOTIFY, notify, slow
notify: ld [PIO_SIZE]
        jeq #2, kick, slow
kick:   ld [PIO_DATA]
        jge #VIRTIO_QUEUES_MAX, slow    ; also keeps the shifts below 32
        tax                             ; X = queue
        ld M[VIRTIO_QVALID]
        rsh x
        jset #1, valid, slow
valid:  ld #1
        lsh x
        xor #0xffffffff
        tax                             ; X = ~(1 << queue)
        ld M[VIRTIO_NEED_NOTIFY]
        and x
        st M[VIRTIO_NEED_NOTIFY]        ; clear the flag, then signal
        ld [PIO_DATA]
        jeq #0, q0
        jeq #1, q1
        jeq #2, q2
        jeq #3, q3
        jeq #4, q4
        jeq #5, q5
        jeq #6, q6
        jeq #7, q7, slow
q0:     ret #PIO_NOTIFY_0
q1:     ret #PIO_NOTIFY_1
q2:     ret #PIO_NOTIFY_2
q3:     ret #PIO_NOTIFY_3
q4:     ret #PIO_NOTIFY_4
q5:     ret #PIO_NOTIFY_5
q6:     ret #PIO_NOTIFY_6
q7:     ret #PIO_NOTIFY_7
slow:   ret #PIO_EXIT
