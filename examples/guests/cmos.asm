; cmos -- read the CMOS real-time clock the way Linux's classic
; mach_get_cmos_time() did: wait for the update-in-progress flag (register
; A bit 7) to rise, then to fall, so the time registers are read right after
; an update; then read seconds..year and the century and print them.  BCD or
; binary follows register B bit 2.
%include "lib.inc"

%define RTC_UIP 0x80

main:
        call uart_init_once
        xor esi, esi            ; polls
.rise:  mov al, 0x0A
        out 0x70, al
        in al, 0x71
        inc esi
        test al, RTC_UIP
        jnz .fall
        cmp esi, 2000000
        jb .rise
        print "cmos: UIP never rose", 10
.fall:  mov al, 0x0A
        out 0x70, al
        in al, 0x71
        inc esi
        test al, RTC_UIP
        jz .read
        cmp esi, 4000000
        jb .fall
        print "cmos: UIP never fell", 10
.read:  mov al, 0x0B
        call cmos_read
        mov [regb], al
        print "cmos: "
        mov al, 0x32            ; century
        call put_rtc
        mov al, 0x09            ; year
        call put_rtc
        print "-"
        mov al, 0x08
        call put_rtc
        print "-"
        mov al, 0x07
        call put_rtc
        print " "
        mov al, 0x04
        call put_rtc
        print ":"
        mov al, 0x02
        call put_rtc
        print ":"
        mov al, 0x00
        call put_rtc
        print " UTC (register B "
        movzx eax, byte [regb]
        mov cl, 2
        call put_hex
        print ", "
        mov eax, esi
        call put_dec
        print " UIP polls)", 10
        hlt

; cmos_read: AL = index -> AL = value.
cmos_read:
        out 0x70, al
        in al, 0x71
        ret

; put_rtc: print CMOS register AL as two digits (BCD or binary per register B).
put_rtc:
        call cmos_read
        test byte [regb], 0x04
        jnz .bin
        push ecx
        movzx eax, al
        mov cl, 2
        call put_hex
        pop ecx
        ret
.bin:   call put_dec2
        ret

regb:   db 0
