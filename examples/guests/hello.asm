; hello -- the UART "hello world": poll LSR before every THR write, then show
; string I/O both ways (rep outsb to THR, rep insb from LSR).
%include "lib.inc"

main:
        call uart_init_once
        print "Hello from a KVM guest, port I/O through bpfio!", 10
        ; count > 1 OUT: the whole line leaves in one KVM_EXIT_IO.
        mov esi, line
        mov ecx, line_end - line
        mov dx, UART_THR
        a32 rep outsb
        ; count > 1 IN: eight LSR reads into a buffer, printed in hex.
        mov edi, buffer
        mov ecx, 8
        mov dx, UART_LSR
        cld
        a32 rep insb
        print "lsr x8:"
        mov esi, buffer
        mov ecx, 8
.dump:  mov al, ' '
        call putc
        mov al, [esi]
        push ecx
        mov cl, 2
        call put_hex
        pop ecx
        inc esi
        loop .dump
        call newline
        print "vcpu "
        mov eax, ebx
        call put_dec
        print " of "
        mov eax, [vcpu_count]
        call put_dec
        print " halting", 10
        hlt

line:   db "string I/O: rep outsb", 10
line_end:
buffer: times 8 db 0
