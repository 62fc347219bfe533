; pmtimer -- a gettimeofday()-style clock loop over the ACPI PM timer.
; Like Linux's acpi_pm clocksource: every read is `inl(PM_TMR) & 0xffffff`
; and the elapsed time is the sum of (now - last) & mask.  The loop runs
; until ELAPSED ticks (default 35795 = 10 ms at 3.579545 MHz) have passed,
; then prints the reads, the elapsed ticks and microseconds, and how many
; deltas looked like the clock went backwards (more than half the mask).
%include "lib.inc"

%ifndef PMTMR
%define PMTMR 0x608
%endif
%ifndef ELAPSED
%define ELAPSED 35795
%endif

main:
        call uart_init_once
        mov dx, PMTMR
        in eax, dx
        and eax, 0xFFFFFF
        mov edi, eax            ; last reading
        xor ebp, ebp            ; elapsed ticks
        xor esi, esi            ; reads
        mov dword [backwards], 0
.loop:  in eax, dx
        and eax, 0xFFFFFF
        inc esi
        mov ecx, eax
        sub ecx, edi
        and ecx, 0xFFFFFF       ; (now - last) & mask, as clocksource_delta()
        mov edi, eax
        cmp ecx, 0x800000
        jb .fwd
        inc dword [backwards]
        jmp .next
.fwd:   add ebp, ecx
.next:  cmp ebp, ELAPSED
        jb .loop

        print "pmtimer: "
        mov eax, esi
        call put_dec
        print " reads, elapsed "
        mov eax, ebp
        call put_dec
        print " ticks = "
        mov eax, ebp
        mov ecx, 1000000
        mul ecx
        mov ecx, 3579545
        div ecx
        call put_dec
        print " us, backwards "
        mov eax, [backwards]
        call put_dec
        call newline
        hlt

backwards: dd 0
