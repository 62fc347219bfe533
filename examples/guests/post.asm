; post -- firmware-style progress output: POST codes to port 0x80 (also the
; Linux io_delay port) and a message on the Bochs/QEMU debug console 0xe9.
; CODES writes of code i & 0xff go to 0x80; the debugcon readback (0xe9
; reads as 0xe9 when present) is checked before the message is sent.
%include "lib.inc"

%ifndef CODES
%define CODES 4096
%endif

main:
        call uart_init_once
        xor ecx, ecx
.code:  mov al, cl
        out 0x80, al
        inc ecx
        cmp ecx, CODES
        jb .code
        in al, 0xE9
        mov [readback], al
        cmp al, 0xE9
        jne .report
        mov esi, dbgmsg
.dbg:   mov al, [esi]
        test al, al
        jz .report
        out 0xE9, al
        inc esi
        jmp .dbg
.report:
        print "post: "
        mov eax, CODES
        call put_dec
        print " codes to port 0x80, last "
        mov eax, CODES - 1
        mov cl, 2
        call put_hex
        print ", debugcon readback "
        movzx eax, byte [readback]
        mov cl, 2
        call put_hex
        call newline
        hlt

readback: db 0
dbgmsg: db "post: hello on debugcon", 10, 0
