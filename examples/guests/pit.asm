; pit -- calibrate the TSC against i8254 channel 2, the way Linux's
; quick_pit_calibrate() does: gate channel 2 on through port 0x61 (speaker
; off), program mode 0 with count 0xffff (0xb0 to 0x43, 0xff 0xff to 0x42),
; then read the count (LSB, MSB) in a loop and note the TSC around the read
; that sees the MSB change (pit_expect_msb).  The edge "the count left MSB v"
; lies between the TSC before the last read that still saw v and the TSC
; after the read that did not, so every edge carries an uncertainty d.  Like
; Linux the guest keeps going until at least STEPS MSB steps have passed and
; (d1 + d2) is below 1/256 of the TSC delta (about 0.4 %), or the count
; reaches MSB 0x10.  The PM timer is read at both ends as the reference
; (Linux's calc_pmtimer_ref), so both estimates of the TSC rate are printed,
; with the PIT one's error bound in ppm.
%include "lib.inc"

%ifndef STEPS
%define STEPS 40
%endif
%ifndef PMTMR
%define PMTMR 0x608
%endif

main:
        call uart_init_once
        in al, 0x61
        and al, ~0x02           ; speaker data off
        or al, 0x01             ; gate channel 2 on
        out 0x61, al
        mov al, 0xB0            ; channel 2, LSB then MSB, mode 0, binary
        out 0x43, al
        mov al, 0xFF
        out 0x42, al
        out 0x42, al

        mov bl, 0xFF            ; first edge: the count leaves MSB 0xff
        call wait_msb
        mov [minpolls], esi
        mov eax, [t_last]
        mov [t_start], eax
        mov eax, [t_now]
        sub eax, [t_prev]
        mov [d1], eax
        rdtsc
        mov [tsc_pm0], eax
        mov dx, PMTMR
        in eax, dx
        mov [pm0], eax

.step:  mov bl, [msb_new]       ; next edge: the count leaves the MSB seen last
        call wait_msb
        cmp esi, [minpolls]
        jae .notmin
        mov [minpolls], esi
.notmin:
        mov al, 0xFF
        sub al, bl
        movzx eax, al           ; MSB steps between the two edges
        cmp bl, 0x10
        jbe .done               ; out of count: take what we have
        cmp eax, STEPS
        jb .step
        mov eax, [t_last]
        sub eax, [t_start]
        shr eax, 8              ; delta / 256
        mov ecx, [t_now]
        sub ecx, [t_prev]
        add ecx, [d1]           ; d1 + d2
        cmp ecx, eax
        jae .step               ; too uncertain yet: wait for a cleaner edge
.done:  mov al, 0xFF
        sub al, bl
        movzx eax, al
        shl eax, 8
        mov [ticks], eax
        rdtsc
        mov [tsc_pm1], eax
        mov dx, PMTMR
        in eax, dx
        mov [pm1], eax

        ; PIT: kHz = tsc_delta * 1193182 / (ticks * 1000)
        mov eax, [t_last]
        sub eax, [t_start]
        mov [tsc_delta], eax
        mov ecx, 1193182
        mul ecx
        mov ecx, [ticks]
        imul ecx, ecx, 1000
        div ecx
        mov [pit_khz], eax
        ; error bound: (d1 + d2) * 1000000 / tsc_delta
        mov eax, [t_now]
        sub eax, [t_prev]
        add eax, [d1]
        mov ecx, 1000000
        mul ecx
        div dword [tsc_delta]
        mov [bound_ppm], eax
        ; PM timer: kHz = tsc_delta * 3579545 / (pm_delta * 1000)
        mov eax, [pm1]
        sub eax, [pm0]
        and eax, 0xFFFFFF
        mov ecx, 1000
        mul ecx
        mov ecx, eax
        mov eax, [tsc_pm1]
        sub eax, [tsc_pm0]
        mov ebx, 3579545
        mul ebx
        div ecx
        mov [pm_khz], eax

        print "pit: TSC "
        mov eax, [pit_khz]
        call put_dec
        print " kHz +- "
        mov eax, [bound_ppm]
        call put_dec
        print " ppm over "
        mov eax, [ticks]
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
; Out: ESI = polls that saw BL, [msb_new] = the MSB that differed,
; [t_prev] / [t_now] = TSC before the last read that saw BL / after the read
; that did not (the edge lies between), [t_last] = TSC right after the last
; read that saw BL (the edge estimate, as Linux's pit_expect_msb).
wait_msb:
        xor esi, esi
        rdtsc
        mov [t_last], eax
        mov [t_prev], eax
.poll:  in al, 0x42             ; LSB (discarded)
        in al, 0x42             ; MSB
        mov cl, al
        rdtsc
        cmp cl, bl
        jne .done
        mov edx, [t_last]
        mov [t_prev], edx
        mov [t_last], eax
        inc esi
        cmp esi, 5000000
        jb .poll
.done:  mov [t_now], eax
        mov [msb_new], cl
        ret

t_last: dd 0
t_prev: dd 0
t_now:  dd 0
t_start: dd 0
d1:     dd 0
msb_new: db 0
        align 4
ticks:  dd 0
tsc_delta: dd 0
tsc_pm0: dd 0
tsc_pm1: dd 0
pm0:    dd 0
pm1:    dd 0
pit_khz: dd 0
pm_khz: dd 0
bound_ppm: dd 0
minpolls: dd 0
