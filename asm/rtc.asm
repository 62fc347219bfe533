; rtc.asm -- MC146818 CMOS RTC, ports 0x70 (index) and 0x71 (data).
;
; Handled here (byte accesses; QEMU's RTC is impl 1..1):
;   * OUT 0x70: the index write, index = value & 0x7f (bit 7 is the PC's NMI
;     mask; QEMU drops it).  This is the Windows tick hot path, 100% here.
;   * IN 0x70: 0xff, as QEMU.
;   * IN 0x71 of NVRAM, status B and D and the alarm registers: straight from
;     the CMOS copy in shared memory (`ldb [x + RTC_CMOS]`, X = index).
;   * IN 0x71 of a time register (seconds .. year, century): from the copy
;     when the copy holds the current second (M[RTC_KEY] equals this
;     access's second number) or the clock is stopped (SET or divider
;     reset: the registers then read as last set).  A new second exits once;
;     the model re-encodes the date (BCD/binary, 12/24 h per status B) and
;     the following reads of that second are fast again.
;   * IN 0x71 of status A: A | UIP, UIP set in the last 8/32768 s of the
;     RTC second (QEMU's UIP_HOLD_LENGTH) while the clock runs.
; Passed on to the model (bpfio/devices/rtc.py), and why:
;   * every write to 0x71: setting the time re-bases the clock, A/B change
;     timers and interrupts; NVRAM writes too (no indexed stores in cBPF,
;     and a 114-way jump table is not worth it for a cold path);
;   * status C reads: reading clears the flags and lowers IRQ 8;
;   * index 0x37 (QEMU re-points the index at 0x32 on access);
;   * multi-byte accesses (QEMU splits them per port).
;
; The second number needs the 64-bit tick count divided by 2^15 in 32 bits:
;   S = (TICKS_HI << 17) + (TICKS_LO >> 15) + (((TICKS_LO & 0x7fff) + FRAC) >> 15)
; (mod 2^32; the model computes the same number when it fills the copy).

#include <pio.inc>
#include "rtc.inc"

	ld [PIO_SIZE]
	jeq #1, byte, slow
byte:	ld [PIO_OFFSET]
	jeq #0, index, data
index:	ld [PIO_DIR]
	jeq #PIO_OUT, idx_w, idx_r
idx_w:	ld [PIO_DATA]
	and #0x7f
	st M[RTC_INDEX]
	ret #PIO_DONE
idx_r:	ld #0xff
	ret #PIO_DONE

data:	ld [PIO_DIR]
	jeq #PIO_OUT, slow, data_r  ; CMOS writes: the model
data_r:	ld M[RTC_INDEX]
	jeq #RTC_REG_C, slow, n_c   ; read-to-clear + IRQ 8: the model
n_c:	jeq #RTC_IBM_CENTURY, slow, n_37
n_37:	jeq #RTC_REG_A, reg_a, n_a
n_a:	jeq #RTC_CENTURY, time, n_cent
n_cent:	jgt #RTC_YEAR, plain, n_big ; B, D, NVRAM
n_big:	jeq #RTC_SECONDS_ALARM, plain, n_1
n_1:	jeq #RTC_MINUTES_ALARM, plain, n_3
n_3:	jeq #RTC_HOURS_ALARM, plain, time

time:	ld M[RTC_FLAGS]
	jset #RTC_F_RUNNING, live, plain    ; stopped: the registers as set
live:	jset #RTC_F_VALID, sec, slow
sec:	ldx M[RTC_FRAC]             ; S, the second number of this access
	ld [PIO_TICKS]
	and #0x7fff
	add x
	rsh #15                     ; carry out of the sub-second part
	tax
	ld [PIO_TICKS]
	rsh #15
	add x
	tax
	ld [PIO_TICKS_HI]
	lsh #17
	add x
	ldx M[RTC_KEY]
	jeq x, plain, slow          ; another second: the model re-encodes

reg_a:	ld M[RTC_FLAGS]
	jset #RTC_F_RUNNING, a_run, plain
a_run:	ldx M[RTC_FRAC]             ; position inside the RTC second
	ld [PIO_TICKS]
	add x
	and #0x7fff
	jge #RTC_UIP_TICKS, a_uip, plain
a_uip:	ldx M[RTC_INDEX]
	ldb [x + RTC_CMOS]
	or #0x80                    ; UIP
	ret #PIO_DONE

plain:	ldx M[RTC_INDEX]
	ldb [x + RTC_CMOS]
	ret #PIO_DONE

slow:	ret #PIO_EXIT

