; pit -- calibrate the TSC against i8254 channel 2, the way Linux's
; quick_pit_calibrate() does: gate channel 2 on through port 0x61 (speaker
; off), program mode 0 with count 0xffff (0xb0 to 0x43, 0xff 0xff to 0x42),
; then read the count (LSB, MSB) in a loop and take the TSC when the MSB
; steps.  STEPS MSB steps of 256 PIT ticks (default 40, about 8.6 ms) are
; timed; the PM timer is read at the same two moments as the reference
; (Linux's calc_pmtimer_ref), so both estimates of the TSC rate are printed.
%include "lib.inc"

%ifndef STEPS
%define STEPS 40
%endif
%ifndef PMTMR
%define PMTMR 0x608
%endif

main:
        call uart_init
        in al, 0x61
        and al, ~0x02           ; speaker data off
        or al, 0x01             ; gate channel 2 on
        out 0x61, al
        mov al, 0xB0            ; channel 2, LSB then MSB, mode 0, binary
        out 0x43, al
        mov al, 0xFF
        out 0x42, al
        out 0x42, al

        mov bl, 0xFF            ; wait for the MSB to leave 0xff
        call wait_msb
        mov [polls_first], esi
        rdtsc
        mov [tsc0], eax
        mov dx, PMTMR
        in eax, dx
        mov [pm0], eax

        mov bl, 0xFE            ; then wait for STEPS further steps
        mov dword [minpolls], 0xFFFFFFFF
.step:  call wait_msb
        cmp esi, [minpolls]
        jae .notmin
        mov [minpolls], esi
.notmin:
        dec bl
        cmp bl, 0xFE - STEPS
        jne .step
        rdtsc
        mov [tsc1], eax
        mov dx, PMTMR
        in eax, dx
        mov [pm1], eax

        ; kHz = tsc_delta * 1193182 / (STEPS * 256 * 1000)
        mov eax, [tsc1]
        sub eax, [tsc0]
        mov ecx, 1193182
        mul ecx
        mov ecx, STEPS * 256 * 1000
        div ecx
        mov [pit_khz], eax
        ; kHz = tsc_delta * 3579545 / (pm_delta * 1000)
        mov eax, [pm1]
        sub eax, [pm0]
        and eax, 0xFFFFFF
        mov ecx, 1000
        mul ecx
        mov ecx, eax
        mov eax, [tsc1]
        sub eax, [tsc0]
        mov ebx, 3579545
        mul ebx
        div ecx
        mov [pm_khz], eax

        print "pit: TSC "
        mov eax, [pit_khz]
        call put_dec
        print " kHz over "
        mov eax, STEPS * 256
        call put_dec
        print " PIT ticks (min "
        mov eax, [minpolls]
        call put_dec
        print " polls per MSB step)", 10
        print "pmtimer reference: TSC "
        mov eax, [pm_khz]
        call put_dec
        print " kHz", 10
        hlt

; wait_msb: poll channel 2 (LSB, then MSB) while the MSB equals BL.
; Returns ESI = number of polls that saw BL (Linux pit_expect_msb wants > 5).
wait_msb:
        xor esi, esi
.poll:  in al, 0x42             ; LSB (discarded)
        in al, 0x42             ; MSB
        cmp al, bl
        jne .done
        inc esi
        cmp esi, 5000000
        jb .poll
.done:  ret

tsc0:   dd 0
tsc1:   dd 0
pm0:    dd 0
pm1:    dd 0
pit_khz: dd 0
pm_khz: dd 0
minpolls: dd 0
polls_first: dd 0
