; virtio -- a kick storm on a legacy virtio-PCI queue-notify register.
; Finds the first virtio device (vendor 0x1af4) on PCI bus 0 and its I/O
; BAR0 (assigning VIRTIO_BAR, as firmware would, when it reads 0; the
; default when there is no PCI at all), does the legacy
; driver handshake (reset, ACKNOWLEDGE, DRIVER, features, queue 0 size and
; PFN, DRIVER_OK), then writes the queue index to BAR0+16 KICKS times, 16
; bits wide -- what a driver does per virtqueue_kick().  The host counts the
; notifications; the guest prints what it did and the ISR it read at the end.
%include "lib.inc"

%ifndef KICKS
%define KICKS 10000
%endif
%ifndef QUEUE
%define QUEUE 0
%endif
%ifndef VIRTIO_BAR
%define VIRTIO_BAR 0xC000
%endif

%define VIRTIO_PCI_HOST_FEATURES  0
%define VIRTIO_PCI_GUEST_FEATURES 4
%define VIRTIO_PCI_QUEUE_PFN      8
%define VIRTIO_PCI_QUEUE_NUM      12
%define VIRTIO_PCI_QUEUE_SEL      14
%define VIRTIO_PCI_QUEUE_NOTIFY   16
%define VIRTIO_PCI_STATUS         18
%define VIRTIO_PCI_ISR            19

main:
        call uart_init_once
        mov ebp, VIRTIO_BAR
        xor ebx, ebx            ; dev << 11
.scan:  mov eax, ebx
        or eax, 0x80000000
        mov dx, 0xCF8
        out dx, eax
        mov dx, 0xCFC
        in eax, dx
        cmp ax, 0x1AF4
        je .found
        add ebx, 0x800
        cmp ebx, 32 << 11
        jb .scan
        print "virtio: no virtio device on PCI bus 0, using the default BAR", 10
        jmp .setup
.found: mov [devid], eax
        mov eax, ebx
        or eax, 0x80000010      ; BAR0
        mov dx, 0xCF8
        out dx, eax
        mov dx, 0xCFC
        in eax, dx
        test al, 1
        jz .setup               ; not an I/O BAR: keep the default
        and eax, 0xFFFC
        jnz .assigned
        ; BAR0 unassigned (power-on): do the firmware's job -- place it at
        ; VIRTIO_BAR and enable I/O decoding in the command register.
        mov eax, VIRTIO_BAR
        out dx, eax
        mov eax, ebx
        or eax, 0x80000004      ; command/status
        mov dx, 0xCF8
        out dx, eax
        mov dx, 0xCFC
        in ax, dx
        or ax, 1                ; I/O space enable
        out dx, ax
        mov eax, ebx
        or eax, 0x80000010
        mov dx, 0xCF8
        out dx, eax
        mov dx, 0xCFC
        in eax, dx
        and eax, 0xFFFC
.assigned:
        mov ebp, eax
        print "virtio: device "
        mov eax, [devid]
        shr eax, 16
        mov cl, 4
        call put_hex
        print " at 00:"
        mov eax, ebx
        shr eax, 11
        mov cl, 2
        call put_hex
        print ".0, I/O BAR0 "
        mov eax, ebp
        mov cl, 4
        call put_hex
        call newline
.setup: lea edx, [ebp + VIRTIO_PCI_STATUS]
        xor al, al              ; reset
        out dx, al
        mov al, 1               ; ACKNOWLEDGE
        out dx, al
        mov al, 3               ; | DRIVER
        out dx, al
        lea edx, [ebp + VIRTIO_PCI_HOST_FEATURES]
        in eax, dx
        mov [features], eax
        lea edx, [ebp + VIRTIO_PCI_GUEST_FEATURES]
        xor eax, eax            ; accept no optional features
        out dx, eax
        lea edx, [ebp + VIRTIO_PCI_QUEUE_SEL]
        mov ax, QUEUE
        out dx, ax
        lea edx, [ebp + VIRTIO_PCI_QUEUE_NUM]
        in ax, dx
        movzx eax, ax
        mov [qsize], eax
        lea edx, [ebp + VIRTIO_PCI_QUEUE_PFN]
        mov eax, 0x20000 >> 12  ; the ring would live at 128 KiB
        out dx, eax
        lea edx, [ebp + VIRTIO_PCI_STATUS]
        mov al, 7               ; | DRIVER_OK
        out dx, al

        lea edx, [ebp + VIRTIO_PCI_QUEUE_NOTIFY]
        mov ecx, KICKS
        mov ax, QUEUE
.kick:  out dx, ax
        dec ecx
        jnz .kick

        lea edx, [ebp + VIRTIO_PCI_ISR]
        in al, dx
        mov [isr], al
        print "virtio: features "
        mov eax, [features]
        mov cl, 8
        call put_hex
        print ", queue "
        mov eax, QUEUE
        call put_dec
        print " size "
        mov eax, [qsize]
        call put_dec
        print ", "
        mov eax, KICKS
        call put_dec
        print " kicks, isr "
        movzx eax, byte [isr]
        mov cl, 2
        call put_hex
        call newline
        hlt

devid:  dd 0
features: dd 0
qsize:  dd 0
isr:    db 0
