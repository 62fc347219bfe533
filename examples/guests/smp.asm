; smp -- every vCPU hammers the same device at once.  Each vCPU writes
; ROUNDS values to port SMP_PORT (16 bits: vCPU index << 12 | round & 0xfff)
; and reads it back ROUNDS times; then it bumps a shared counter in guest RAM
; with `lock inc` and halts -- except vCPU 0, which waits until every vCPU
; is done and prints the total.  The host checks the device's counters.
%include "lib.inc"

%ifndef ROUNDS
%define ROUNDS 2000
%endif
%ifndef SMP_PORT
%define SMP_PORT 0x510
%endif

main:
        mov ebp, ebx            ; vCPU index
        test ebp, ebp
        jnz .work
        call uart_init
.work:  mov dx, SMP_PORT
        xor esi, esi
.round: mov eax, ebp
        shl eax, 12
        mov edi, esi
        and edi, 0xFFF
        or eax, edi
        out dx, ax
        in ax, dx
        inc esi
        cmp esi, ROUNDS
        jb .round
        lock inc dword [done]
        test ebp, ebp
        jz .wait
        hlt
.wait:  mov eax, [done]
        cmp eax, [vcpu_count]
        jb .wait
        print "smp: "
        mov eax, [vcpu_count]
        call put_dec
        print " vcpus x "
        mov eax, ROUNDS
        call put_dec
        print " out+in rounds done", 10
        hlt

done:   dd 0
