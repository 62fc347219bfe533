; pit.asm -- i8254 PIT, ports 0x40-0x43: the read path on the fast path.
;
; Handled here (all byte accesses, QEMU's i8254 is impl 1..1):
;   * IN 0x40/0x41/0x42: a latched status byte, else a latched count (LSB /
;     MSB / LSB-then-MSB, consuming the latch), else the live count
;     computed from d = PIO_TICKS - LOAD with QEMU's pit_get_count formulas
;     (modes 0/1/4/5: (count - d) & 0xffff; mode 3: count - (2d mod count);
;     mode 2 and 6/7: count - d mod count) and the LSB/MSB read flip-flop.
;   * OUT 0x43 with RW = 00: the counter-latch command (pit_latch_count).
;   * OUT 0x43 with SC = 11: the read-back command -- for each channel
;     selected by bits 1-3, latch the count (bit 5 clear) and the status
;     byte OUT << 7 | RW << 4 | mode << 1 | BCD (bit 4 clear), OUT from
;     QEMU's pit_get_out per mode.  A latch already pending is kept.
;   * IN 0x43: QEMU returns 0 (the control register is write-only).
; Passed on to the model (bpfio/devices/pit.py), and why:
;   * control words that program a channel (RW != 00) and count writes to
;     0x40-0x42: they load counts and re-arm channel 0's IRQ timer in QEMU;
;     they are a handful per boot or calibration, not a hot loop;
;   * multi-byte accesses (QEMU splits them into per-port byte accesses);
;   * a live count when the elapsed ticks do not fit 32 bits (> 1 hour).
;
; cBPF has no indexed stores, so each channel's read and latch code is its
; own copy with that channel's M[] slots (PIT0_*, PIT1_*, PIT2_*): the three
; copies differ only in those numbers and in their labels.  Every path
; computes whatever may exit *before* its first store, so an exit leaves the
; shared words untouched for the model.  The one exception is a read-back
; naming several channels: an exit for channel 2 may follow stores for
; channel 0.  That is safe because both latches are idempotent within one
; access -- the model re-runs the whole command at the same instant, finds
; channel 0's latches pending and keeps them, exactly as if it had set them.

#include <pio.inc>
#include "pit.inc"

	ld [PIO_SIZE]
	jeq #1, byte, slow          ; wide: the model splits it per port
byte:	ld [PIO_OFFSET]
	jeq #3, ctrl, counter
counter:	ld [PIO_DIR]
	jeq #PIO_OUT, slow, rd      ; count writes load counters: the model
rd:	ld [PIO_OFFSET]
	jeq #0, to_rd0, rd12
rd12:	jeq #1, to_rd1, to_rd2      ; (ja: the blocks are too far for jt/jf)
to_rd0:	ja rd0
to_rd1:	ja rd1
to_rd2:	ja rd2

ctrl:	ld [PIO_DIR]
	jeq #PIO_IN, ctrl_in, ctrl_out
ctrl_in:	ld #0                       ; write-only register: QEMU reads 0
	ret #PIO_DONE
ctrl_out:	ld [PIO_DATA]
	jge #0xc0, to_rbc0, ctrl_cw ; read-back command
ctrl_cw:	and #0x30
	jeq #0, latch, slow         ; RW != 00 programs a channel: the model
latch:	ld [PIO_DATA]
	rsh #6
	jeq #0, lat0, lat12
lat12:	jeq #1, to_lat1, to_lat2
to_lat1:	ja lat1
to_lat2:	ja lat2
to_rbc0:	ja rbc0
slow:	ret #PIO_EXIT

; ---- counter-latch command for counter 0 (pit_latch_count) ----------------
lat0:	ld M[PIT0_COUNT_LATCHED]
	jeq #0, lat0_do, lat0_ign     ; a second latch before the read is ignored
lat0_ign:	ret #PIO_DONE
lat0_do:
	; -- lat0c: live count of channel 0 (pit_get_count) -> A, then lat0_got
	ld [PIO_TICKS_HI]           ; d = ticks - LOAD must fit 32 bits, else the model
	ldx M[PIT0_LOAD_HI]
	jeq x, lat0c_hi, lat0c_hi1
lat0c_hi:	ld [PIO_TICKS]
	ldx M[PIT0_LOAD_LO]
	jge x, lat0c_d, lat0c_x         ; (ticks < LOAD cannot happen; let the model decide)
lat0c_hi1:	txa
	add #1
	tax
	ld [PIO_TICKS_HI]
	jeq x, lat0c_lo1, lat0c_x       ; more than one high word apart: d >= 2^32
lat0c_lo1:	ld [PIO_TICKS]
	ldx M[PIT0_LOAD_LO]
	jge x, lat0c_x, lat0c_d         ; borrow needed, else d >= 2^32
lat0c_d:	sub x                       ; A = d (mod 2^32, exact here)
	tax                         ; X = d
	ld M[PIT0_MODE]
	jeq #3, lat0c_m3, lat0c_n3
lat0c_n3:	jeq #2, lat0c_m2, lat0c_n2
lat0c_n2:	jgt #5, lat0c_m2, lat0c_m0      ; 6, 7 fall in QEMU's default case (mode 2's formula)
lat0c_m0:	ld M[PIT0_COUNT]              ; modes 0, 1, 4, 5: (count - d) & 0xffff
	sub x
	and #0xffff
	ja lat0_got
lat0c_m2:	txa                         ; mode 2: count - d % count (never 0)
	ldx M[PIT0_COUNT]             ; COUNT is 1..0x10000; a 0 would abort -> model
	mod x
	neg
	add x
	ja lat0_got
lat0c_m3:	txa                         ; mode 3: count - (2 * d) % count, as
	ldx M[PIT0_COUNT]             ; count - (2 * (d % count)) % count: no overflow
	mod x
	lsh #1
	mod x
	neg
	add x
	ja lat0_got
lat0c_x:	ret #PIO_EXIT
lat0_got:	st M[PIT0_LATCHED]
	ld M[PIT0_RW_MODE]            ; read back in the channel's RW mode
	st M[PIT0_COUNT_LATCHED]      ; (0 if never programmed: QEMU then ignores it)
	ret #PIO_DONE

; ---- counter-latch command for counter 1 (pit_latch_count) ----------------
lat1:	ld M[PIT1_COUNT_LATCHED]
	jeq #0, lat1_do, lat1_ign     ; a second latch before the read is ignored
lat1_ign:	ret #PIO_DONE
lat1_do:
	; -- lat1c: live count of channel 1 (pit_get_count) -> A, then lat1_got
	ld [PIO_TICKS_HI]           ; d = ticks - LOAD must fit 32 bits, else the model
	ldx M[PIT1_LOAD_HI]
	jeq x, lat1c_hi, lat1c_hi1
lat1c_hi:	ld [PIO_TICKS]
	ldx M[PIT1_LOAD_LO]
	jge x, lat1c_d, lat1c_x         ; (ticks < LOAD cannot happen; let the model decide)
lat1c_hi1:	txa
	add #1
	tax
	ld [PIO_TICKS_HI]
	jeq x, lat1c_lo1, lat1c_x       ; more than one high word apart: d >= 2^32
lat1c_lo1:	ld [PIO_TICKS]
	ldx M[PIT1_LOAD_LO]
	jge x, lat1c_x, lat1c_d         ; borrow needed, else d >= 2^32
lat1c_d:	sub x                       ; A = d (mod 2^32, exact here)
	tax                         ; X = d
	ld M[PIT1_MODE]
	jeq #3, lat1c_m3, lat1c_n3
lat1c_n3:	jeq #2, lat1c_m2, lat1c_n2
lat1c_n2:	jgt #5, lat1c_m2, lat1c_m0      ; 6, 7 fall in QEMU's default case (mode 2's formula)
lat1c_m0:	ld M[PIT1_COUNT]              ; modes 0, 1, 4, 5: (count - d) & 0xffff
	sub x
	and #0xffff
	ja lat1_got
lat1c_m2:	txa                         ; mode 2: count - d % count (never 0)
	ldx M[PIT1_COUNT]             ; COUNT is 1..0x10000; a 0 would abort -> model
	mod x
	neg
	add x
	ja lat1_got
lat1c_m3:	txa                         ; mode 3: count - (2 * d) % count, as
	ldx M[PIT1_COUNT]             ; count - (2 * (d % count)) % count: no overflow
	mod x
	lsh #1
	mod x
	neg
	add x
	ja lat1_got
lat1c_x:	ret #PIO_EXIT
lat1_got:	st M[PIT1_LATCHED]
	ld M[PIT1_RW_MODE]            ; read back in the channel's RW mode
	st M[PIT1_COUNT_LATCHED]      ; (0 if never programmed: QEMU then ignores it)
	ret #PIO_DONE

; ---- counter-latch command for counter 2 (pit_latch_count) ----------------
lat2:	ld M[PIT2_COUNT_LATCHED]
	jeq #0, lat2_do, lat2_ign     ; a second latch before the read is ignored
lat2_ign:	ret #PIO_DONE
lat2_do:
	; -- lat2c: live count of channel 2 (pit_get_count) -> A, then lat2_got
	ld [PIO_TICKS_HI]           ; d = ticks - LOAD must fit 32 bits, else the model
	ldx M[PIT2_LOAD_HI]
	jeq x, lat2c_hi, lat2c_hi1
lat2c_hi:	ld [PIO_TICKS]
	ldx M[PIT2_LOAD_LO]
	jge x, lat2c_d, lat2c_x         ; (ticks < LOAD cannot happen; let the model decide)
lat2c_hi1:	txa
	add #1
	tax
	ld [PIO_TICKS_HI]
	jeq x, lat2c_lo1, lat2c_x       ; more than one high word apart: d >= 2^32
lat2c_lo1:	ld [PIO_TICKS]
	ldx M[PIT2_LOAD_LO]
	jge x, lat2c_x, lat2c_d         ; borrow needed, else d >= 2^32
lat2c_d:	sub x                       ; A = d (mod 2^32, exact here)
	tax                         ; X = d
	ld M[PIT2_MODE]
	jeq #3, lat2c_m3, lat2c_n3
lat2c_n3:	jeq #2, lat2c_m2, lat2c_n2
lat2c_n2:	jgt #5, lat2c_m2, lat2c_m0      ; 6, 7 fall in QEMU's default case (mode 2's formula)
lat2c_m0:	ld M[PIT2_COUNT]              ; modes 0, 1, 4, 5: (count - d) & 0xffff
	sub x
	and #0xffff
	ja lat2_got
lat2c_m2:	txa                         ; mode 2: count - d % count (never 0)
	ldx M[PIT2_COUNT]             ; COUNT is 1..0x10000; a 0 would abort -> model
	mod x
	neg
	add x
	ja lat2_got
lat2c_m3:	txa                         ; mode 3: count - (2 * d) % count, as
	ldx M[PIT2_COUNT]             ; count - (2 * (d % count)) % count: no overflow
	mod x
	lsh #1
	mod x
	neg
	add x
	ja lat2_got
lat2c_x:	ret #PIO_EXIT
lat2_got:	st M[PIT2_LATCHED]
	ld M[PIT2_RW_MODE]            ; read back in the channel's RW mode
	st M[PIT2_COUNT_LATCHED]      ; (0 if never programmed: QEMU then ignores it)
	ret #PIO_DONE

; ---- read of counter 0 (port 0x40) ---------------------------------------
rd0:	ld M[PIT0_STATUS_LATCHED]     ; a read-back status byte comes first
	jeq #0, rd0_cl, rd0_st
rd0_st:	ld #0
	st M[PIT0_STATUS_LATCHED]
	ld M[PIT0_STATUS]
	ret #PIO_DONE
rd0_cl:	ld M[PIT0_COUNT_LATCHED]      ; then a latched count
	jeq #0, rd0_live, rd0_l1
rd0_l1:	jeq #PIT_RW_MSB, rd0_lmsb, rd0_l2
rd0_l2:	jeq #PIT_RW_WORD0, rd0_lw0, rd0_llsb
rd0_lmsb:	ld #0                       ; MSB: the latch is consumed
	st M[PIT0_COUNT_LATCHED]
	ld M[PIT0_LATCHED]
	rsh #8
	ret #PIO_DONE
rd0_lw0:	ld #PIT_RW_MSB              ; LSB then MSB: MSB still to come
	st M[PIT0_COUNT_LATCHED]
	ld M[PIT0_LATCHED]
	ret #PIO_DONE
rd0_llsb:	ld #0                       ; LSB (and QEMU's default case)
	st M[PIT0_COUNT_LATCHED]
	ld M[PIT0_LATCHED]
	ret #PIO_DONE
rd0_live:
	; -- rd0c: live count of channel 0 (pit_get_count) -> A, then rd0_got
	ld [PIO_TICKS_HI]           ; d = ticks - LOAD must fit 32 bits, else the model
	ldx M[PIT0_LOAD_HI]
	jeq x, rd0c_hi, rd0c_hi1
rd0c_hi:	ld [PIO_TICKS]
	ldx M[PIT0_LOAD_LO]
	jge x, rd0c_d, rd0c_x         ; (ticks < LOAD cannot happen; let the model decide)
rd0c_hi1:	txa
	add #1
	tax
	ld [PIO_TICKS_HI]
	jeq x, rd0c_lo1, rd0c_x       ; more than one high word apart: d >= 2^32
rd0c_lo1:	ld [PIO_TICKS]
	ldx M[PIT0_LOAD_LO]
	jge x, rd0c_x, rd0c_d         ; borrow needed, else d >= 2^32
rd0c_d:	sub x                       ; A = d (mod 2^32, exact here)
	tax                         ; X = d
	ld M[PIT0_MODE]
	jeq #3, rd0c_m3, rd0c_n3
rd0c_n3:	jeq #2, rd0c_m2, rd0c_n2
rd0c_n2:	jgt #5, rd0c_m2, rd0c_m0      ; 6, 7 fall in QEMU's default case (mode 2's formula)
rd0c_m0:	ld M[PIT0_COUNT]              ; modes 0, 1, 4, 5: (count - d) & 0xffff
	sub x
	and #0xffff
	ja rd0_got
rd0c_m2:	txa                         ; mode 2: count - d % count (never 0)
	ldx M[PIT0_COUNT]             ; COUNT is 1..0x10000; a 0 would abort -> model
	mod x
	neg
	add x
	ja rd0_got
rd0c_m3:	txa                         ; mode 3: count - (2 * d) % count, as
	ldx M[PIT0_COUNT]             ; count - (2 * (d % count)) % count: no overflow
	mod x
	lsh #1
	mod x
	neg
	add x
	ja rd0_got
rd0c_x:	ret #PIO_EXIT
rd0_got:	tax                         ; X = count; the flip-flop picks the byte
	ld M[PIT0_READ_STATE]
	jeq #PIT_RW_MSB, rd0_msb, rd0_s3
rd0_s3:	jeq #PIT_RW_WORD0, rd0_w0, rd0_s4
rd0_s4:	jeq #PIT_RW_WORD1, rd0_w1, rd0_lsb
rd0_lsb:	txa                         ; LSB mode (and QEMU's default case)
	ret #PIO_DONE
rd0_msb:	txa
	rsh #8
	ret #PIO_DONE
rd0_w0:	ld #PIT_RW_WORD1            ; low byte now, high byte next
	st M[PIT0_READ_STATE]
	txa
	ret #PIO_DONE
rd0_w1:	ld #PIT_RW_WORD0
	st M[PIT0_READ_STATE]
	txa
	rsh #8
	ret #PIO_DONE

; ---- read of counter 1 (port 0x41) ---------------------------------------
rd1:	ld M[PIT1_STATUS_LATCHED]     ; a read-back status byte comes first
	jeq #0, rd1_cl, rd1_st
rd1_st:	ld #0
	st M[PIT1_STATUS_LATCHED]
	ld M[PIT1_STATUS]
	ret #PIO_DONE
rd1_cl:	ld M[PIT1_COUNT_LATCHED]      ; then a latched count
	jeq #0, rd1_live, rd1_l1
rd1_l1:	jeq #PIT_RW_MSB, rd1_lmsb, rd1_l2
rd1_l2:	jeq #PIT_RW_WORD0, rd1_lw0, rd1_llsb
rd1_lmsb:	ld #0                       ; MSB: the latch is consumed
	st M[PIT1_COUNT_LATCHED]
	ld M[PIT1_LATCHED]
	rsh #8
	ret #PIO_DONE
rd1_lw0:	ld #PIT_RW_MSB              ; LSB then MSB: MSB still to come
	st M[PIT1_COUNT_LATCHED]
	ld M[PIT1_LATCHED]
	ret #PIO_DONE
rd1_llsb:	ld #0                       ; LSB (and QEMU's default case)
	st M[PIT1_COUNT_LATCHED]
	ld M[PIT1_LATCHED]
	ret #PIO_DONE
rd1_live:
	; -- rd1c: live count of channel 1 (pit_get_count) -> A, then rd1_got
	ld [PIO_TICKS_HI]           ; d = ticks - LOAD must fit 32 bits, else the model
	ldx M[PIT1_LOAD_HI]
	jeq x, rd1c_hi, rd1c_hi1
rd1c_hi:	ld [PIO_TICKS]
	ldx M[PIT1_LOAD_LO]
	jge x, rd1c_d, rd1c_x         ; (ticks < LOAD cannot happen; let the model decide)
rd1c_hi1:	txa
	add #1
	tax
	ld [PIO_TICKS_HI]
	jeq x, rd1c_lo1, rd1c_x       ; more than one high word apart: d >= 2^32
rd1c_lo1:	ld [PIO_TICKS]
	ldx M[PIT1_LOAD_LO]
	jge x, rd1c_x, rd1c_d         ; borrow needed, else d >= 2^32
rd1c_d:	sub x                       ; A = d (mod 2^32, exact here)
	tax                         ; X = d
	ld M[PIT1_MODE]
	jeq #3, rd1c_m3, rd1c_n3
rd1c_n3:	jeq #2, rd1c_m2, rd1c_n2
rd1c_n2:	jgt #5, rd1c_m2, rd1c_m0      ; 6, 7 fall in QEMU's default case (mode 2's formula)
rd1c_m0:	ld M[PIT1_COUNT]              ; modes 0, 1, 4, 5: (count - d) & 0xffff
	sub x
	and #0xffff
	ja rd1_got
rd1c_m2:	txa                         ; mode 2: count - d % count (never 0)
	ldx M[PIT1_COUNT]             ; COUNT is 1..0x10000; a 0 would abort -> model
	mod x
	neg
	add x
	ja rd1_got
rd1c_m3:	txa                         ; mode 3: count - (2 * d) % count, as
	ldx M[PIT1_COUNT]             ; count - (2 * (d % count)) % count: no overflow
	mod x
	lsh #1
	mod x
	neg
	add x
	ja rd1_got
rd1c_x:	ret #PIO_EXIT
rd1_got:	tax                         ; X = count; the flip-flop picks the byte
	ld M[PIT1_READ_STATE]
	jeq #PIT_RW_MSB, rd1_msb, rd1_s3
rd1_s3:	jeq #PIT_RW_WORD0, rd1_w0, rd1_s4
rd1_s4:	jeq #PIT_RW_WORD1, rd1_w1, rd1_lsb
rd1_lsb:	txa                         ; LSB mode (and QEMU's default case)
	ret #PIO_DONE
rd1_msb:	txa
	rsh #8
	ret #PIO_DONE
rd1_w0:	ld #PIT_RW_WORD1            ; low byte now, high byte next
	st M[PIT1_READ_STATE]
	txa
	ret #PIO_DONE
rd1_w1:	ld #PIT_RW_WORD0
	st M[PIT1_READ_STATE]
	txa
	rsh #8
	ret #PIO_DONE

; ---- read of counter 2 (port 0x42) ---------------------------------------
rd2:	ld M[PIT2_STATUS_LATCHED]     ; a read-back status byte comes first
	jeq #0, rd2_cl, rd2_st
rd2_st:	ld #0
	st M[PIT2_STATUS_LATCHED]
	ld M[PIT2_STATUS]
	ret #PIO_DONE
rd2_cl:	ld M[PIT2_COUNT_LATCHED]      ; then a latched count
	jeq #0, rd2_live, rd2_l1
rd2_l1:	jeq #PIT_RW_MSB, rd2_lmsb, rd2_l2
rd2_l2:	jeq #PIT_RW_WORD0, rd2_lw0, rd2_llsb
rd2_lmsb:	ld #0                       ; MSB: the latch is consumed
	st M[PIT2_COUNT_LATCHED]
	ld M[PIT2_LATCHED]
	rsh #8
	ret #PIO_DONE
rd2_lw0:	ld #PIT_RW_MSB              ; LSB then MSB: MSB still to come
	st M[PIT2_COUNT_LATCHED]
	ld M[PIT2_LATCHED]
	ret #PIO_DONE
rd2_llsb:	ld #0                       ; LSB (and QEMU's default case)
	st M[PIT2_COUNT_LATCHED]
	ld M[PIT2_LATCHED]
	ret #PIO_DONE
rd2_live:
	; -- rd2c: live count of channel 2 (pit_get_count) -> A, then rd2_got
	ld [PIO_TICKS_HI]           ; d = ticks - LOAD must fit 32 bits, else the model
	ldx M[PIT2_LOAD_HI]
	jeq x, rd2c_hi, rd2c_hi1
rd2c_hi:	ld [PIO_TICKS]
	ldx M[PIT2_LOAD_LO]
	jge x, rd2c_d, rd2c_x         ; (ticks < LOAD cannot happen; let the model decide)
rd2c_hi1:	txa
	add #1
	tax
	ld [PIO_TICKS_HI]
	jeq x, rd2c_lo1, rd2c_x       ; more than one high word apart: d >= 2^32
rd2c_lo1:	ld [PIO_TICKS]
	ldx M[PIT2_LOAD_LO]
	jge x, rd2c_x, rd2c_d         ; borrow needed, else d >= 2^32
rd2c_d:	sub x                       ; A = d (mod 2^32, exact here)
	tax                         ; X = d
	ld M[PIT2_MODE]
	jeq #3, rd2c_m3, rd2c_n3
rd2c_n3:	jeq #2, rd2c_m2, rd2c_n2
rd2c_n2:	jgt #5, rd2c_m2, rd2c_m0      ; 6, 7 fall in QEMU's default case (mode 2's formula)
rd2c_m0:	ld M[PIT2_COUNT]              ; modes 0, 1, 4, 5: (count - d) & 0xffff
	sub x
	and #0xffff
	ja rd2_got
rd2c_m2:	txa                         ; mode 2: count - d % count (never 0)
	ldx M[PIT2_COUNT]             ; COUNT is 1..0x10000; a 0 would abort -> model
	mod x
	neg
	add x
	ja rd2_got
rd2c_m3:	txa                         ; mode 3: count - (2 * d) % count, as
	ldx M[PIT2_COUNT]             ; count - (2 * (d % count)) % count: no overflow
	mod x
	lsh #1
	mod x
	neg
	add x
	ja rd2_got
rd2c_x:	ret #PIO_EXIT
rd2_got:	tax                         ; X = count; the flip-flop picks the byte
	ld M[PIT2_READ_STATE]
	jeq #PIT_RW_MSB, rd2_msb, rd2_s3
rd2_s3:	jeq #PIT_RW_WORD0, rd2_w0, rd2_s4
rd2_s4:	jeq #PIT_RW_WORD1, rd2_w1, rd2_lsb
rd2_lsb:	txa                         ; LSB mode (and QEMU's default case)
	ret #PIO_DONE
rd2_msb:	txa
	rsh #8
	ret #PIO_DONE
rd2_w0:	ld #PIT_RW_WORD1            ; low byte now, high byte next
	st M[PIT2_READ_STATE]
	txa
	ret #PIO_DONE
rd2_w1:	ld #PIT_RW_WORD0
	st M[PIT2_READ_STATE]
	txa
	rsh #8
	ret #PIO_DONE

; ---- read-back of counter 0 (selected by bit 1) ---------------------------
rbc0:	ld [PIO_DATA]
	jset #0x2, rb0, rbc1
rb0:	jset #0x20, rb0_st, rb0_cnt     ; bit 5 clear: latch the count
rb0_cnt:	ld M[PIT0_COUNT_LATCHED]
	jeq #0, rb0_lc, rb0_st      ; (a pending latch is kept)
rb0_lc:
	; -- rb0c: live count of channel 0 (pit_get_count) -> A, then rb0_lgot
	ld [PIO_TICKS_HI]           ; d = ticks - LOAD must fit 32 bits, else the model
	ldx M[PIT0_LOAD_HI]
	jeq x, rb0c_hi, rb0c_hi1
rb0c_hi:	ld [PIO_TICKS]
	ldx M[PIT0_LOAD_LO]
	jge x, rb0c_d, rb0c_x         ; (ticks < LOAD cannot happen; let the model decide)
rb0c_hi1:	txa
	add #1
	tax
	ld [PIO_TICKS_HI]
	jeq x, rb0c_lo1, rb0c_x       ; more than one high word apart: d >= 2^32
rb0c_lo1:	ld [PIO_TICKS]
	ldx M[PIT0_LOAD_LO]
	jge x, rb0c_x, rb0c_d         ; borrow needed, else d >= 2^32
rb0c_d:	sub x                       ; A = d (mod 2^32, exact here)
	tax                         ; X = d
	ld M[PIT0_MODE]
	jeq #3, rb0c_m3, rb0c_n3
rb0c_n3:	jeq #2, rb0c_m2, rb0c_n2
rb0c_n2:	jgt #5, rb0c_m2, rb0c_m0      ; 6, 7 fall in QEMU's default case (mode 2's formula)
rb0c_m0:	ld M[PIT0_COUNT]              ; modes 0, 1, 4, 5: (count - d) & 0xffff
	sub x
	and #0xffff
	ja rb0_lgot
rb0c_m2:	txa                         ; mode 2: count - d % count (never 0)
	ldx M[PIT0_COUNT]             ; COUNT is 1..0x10000; a 0 would abort -> model
	mod x
	neg
	add x
	ja rb0_lgot
rb0c_m3:	txa                         ; mode 3: count - (2 * d) % count, as
	ldx M[PIT0_COUNT]             ; count - (2 * (d % count)) % count: no overflow
	mod x
	lsh #1
	mod x
	neg
	add x
	ja rb0_lgot
rb0c_x:	ret #PIO_EXIT
rb0_lgot:	st M[PIT0_LATCHED]
	ld M[PIT0_RW_MODE]
	st M[PIT0_COUNT_LATCHED]
rb0_st:	ld [PIO_DATA]
	jset #0x10, rb0_end, rb0_s1     ; bit 4 clear: latch the status
rb0_s1:	ld M[PIT0_STATUS_LATCHED]
	jeq #0, rb0_so, rb0_end     ; (a pending status is kept)
rb0_so:
	; -- rb0o: OUT of channel 0 (pit_get_out) -> A, then rb0_ogot
	ld [PIO_TICKS_HI]           ; d = ticks - LOAD must fit 32 bits, else the model
	ldx M[PIT0_LOAD_HI]
	jeq x, rb0o_hi, rb0o_hi1
rb0o_hi:	ld [PIO_TICKS]
	ldx M[PIT0_LOAD_LO]
	jge x, rb0o_d, rb0o_x         ; (ticks < LOAD cannot happen; let the model decide)
rb0o_hi1:	txa
	add #1
	tax
	ld [PIO_TICKS_HI]
	jeq x, rb0o_lo1, rb0o_x       ; more than one high word apart: d >= 2^32
rb0o_lo1:	ld [PIO_TICKS]
	ldx M[PIT0_LOAD_LO]
	jge x, rb0o_x, rb0o_d         ; borrow needed, else d >= 2^32
rb0o_d:	sub x                       ; A = d (mod 2^32, exact here)
	tax                         ; X = d
	ld M[PIT0_MODE]
	jeq #1, rb0o_m1, rb0o_n1
rb0o_n1:	jeq #2, rb0o_m2, rb0o_n2
rb0o_n2:	jeq #3, rb0o_m3, rb0o_n3
rb0o_n3:	jeq #4, rb0o_m45, rb0o_n4
rb0o_n4:	jeq #5, rb0o_m45, rb0o_m0     ; 0 and QEMU's default (6, 7): d >= count
rb0o_m0:	ld M[PIT0_COUNT]
	jgt x, rb0o_o0, rb0o_o1
rb0o_m1:	ld M[PIT0_COUNT]              ; d < count
	jgt x, rb0o_o1, rb0o_o0
rb0o_m45:	ld M[PIT0_COUNT]              ; a pulse when d == count
	jeq x, rb0o_o1, rb0o_o0
rb0o_m2:	txa                         ; d % count == 0 and d != 0
	jeq #0, rb0o_o0, rb0o_m2b
rb0o_m2b:	ldx M[PIT0_COUNT]
	mod x
	jeq #0, rb0o_o1, rb0o_o0
rb0o_m3:	txa                         ; d % count < (count + 1) / 2
	ldx M[PIT0_COUNT]
	mod x
	tax
	ld M[PIT0_COUNT]
	add #1
	rsh #1
	jgt x, rb0o_o1, rb0o_o0
rb0o_o0:	ld #0
	ja rb0_ogot
rb0o_o1:	ld #1
	ja rb0_ogot
rb0o_x:	ret #PIO_EXIT
rb0_ogot:	lsh #7                      ; OUT << 7 | RW << 4 | mode << 1 | BCD
	tax                         ; (QEMU never sets NULL COUNT)
	ld M[PIT0_RW_MODE]
	lsh #4
	or x
	tax
	ld M[PIT0_MODE]
	lsh #1
	or x
	tax
	ld M[PIT0_BCD]
	or x
	st M[PIT0_STATUS]
	ld #1
	st M[PIT0_STATUS_LATCHED]
rb0_end:	ja rbc1

; ---- read-back of counter 1 (selected by bit 2) ---------------------------
rbc1:	ld [PIO_DATA]
	jset #0x4, rb1, rbc2
rb1:	jset #0x20, rb1_st, rb1_cnt     ; bit 5 clear: latch the count
rb1_cnt:	ld M[PIT1_COUNT_LATCHED]
	jeq #0, rb1_lc, rb1_st      ; (a pending latch is kept)
rb1_lc:
	; -- rb1c: live count of channel 1 (pit_get_count) -> A, then rb1_lgot
	ld [PIO_TICKS_HI]           ; d = ticks - LOAD must fit 32 bits, else the model
	ldx M[PIT1_LOAD_HI]
	jeq x, rb1c_hi, rb1c_hi1
rb1c_hi:	ld [PIO_TICKS]
	ldx M[PIT1_LOAD_LO]
	jge x, rb1c_d, rb1c_x         ; (ticks < LOAD cannot happen; let the model decide)
rb1c_hi1:	txa
	add #1
	tax
	ld [PIO_TICKS_HI]
	jeq x, rb1c_lo1, rb1c_x       ; more than one high word apart: d >= 2^32
rb1c_lo1:	ld [PIO_TICKS]
	ldx M[PIT1_LOAD_LO]
	jge x, rb1c_x, rb1c_d         ; borrow needed, else d >= 2^32
rb1c_d:	sub x                       ; A = d (mod 2^32, exact here)
	tax                         ; X = d
	ld M[PIT1_MODE]
	jeq #3, rb1c_m3, rb1c_n3
rb1c_n3:	jeq #2, rb1c_m2, rb1c_n2
rb1c_n2:	jgt #5, rb1c_m2, rb1c_m0      ; 6, 7 fall in QEMU's default case (mode 2's formula)
rb1c_m0:	ld M[PIT1_COUNT]              ; modes 0, 1, 4, 5: (count - d) & 0xffff
	sub x
	and #0xffff
	ja rb1_lgot
rb1c_m2:	txa                         ; mode 2: count - d % count (never 0)
	ldx M[PIT1_COUNT]             ; COUNT is 1..0x10000; a 0 would abort -> model
	mod x
	neg
	add x
	ja rb1_lgot
rb1c_m3:	txa                         ; mode 3: count - (2 * d) % count, as
	ldx M[PIT1_COUNT]             ; count - (2 * (d % count)) % count: no overflow
	mod x
	lsh #1
	mod x
	neg
	add x
	ja rb1_lgot
rb1c_x:	ret #PIO_EXIT
rb1_lgot:	st M[PIT1_LATCHED]
	ld M[PIT1_RW_MODE]
	st M[PIT1_COUNT_LATCHED]
rb1_st:	ld [PIO_DATA]
	jset #0x10, rb1_end, rb1_s1     ; bit 4 clear: latch the status
rb1_s1:	ld M[PIT1_STATUS_LATCHED]
	jeq #0, rb1_so, rb1_end     ; (a pending status is kept)
rb1_so:
	; -- rb1o: OUT of channel 1 (pit_get_out) -> A, then rb1_ogot
	ld [PIO_TICKS_HI]           ; d = ticks - LOAD must fit 32 bits, else the model
	ldx M[PIT1_LOAD_HI]
	jeq x, rb1o_hi, rb1o_hi1
rb1o_hi:	ld [PIO_TICKS]
	ldx M[PIT1_LOAD_LO]
	jge x, rb1o_d, rb1o_x         ; (ticks < LOAD cannot happen; let the model decide)
rb1o_hi1:	txa
	add #1
	tax
	ld [PIO_TICKS_HI]
	jeq x, rb1o_lo1, rb1o_x       ; more than one high word apart: d >= 2^32
rb1o_lo1:	ld [PIO_TICKS]
	ldx M[PIT1_LOAD_LO]
	jge x, rb1o_x, rb1o_d         ; borrow needed, else d >= 2^32
rb1o_d:	sub x                       ; A = d (mod 2^32, exact here)
	tax                         ; X = d
	ld M[PIT1_MODE]
	jeq #1, rb1o_m1, rb1o_n1
rb1o_n1:	jeq #2, rb1o_m2, rb1o_n2
rb1o_n2:	jeq #3, rb1o_m3, rb1o_n3
rb1o_n3:	jeq #4, rb1o_m45, rb1o_n4
rb1o_n4:	jeq #5, rb1o_m45, rb1o_m0     ; 0 and QEMU's default (6, 7): d >= count
rb1o_m0:	ld M[PIT1_COUNT]
	jgt x, rb1o_o0, rb1o_o1
rb1o_m1:	ld M[PIT1_COUNT]              ; d < count
	jgt x, rb1o_o1, rb1o_o0
rb1o_m45:	ld M[PIT1_COUNT]              ; a pulse when d == count
	jeq x, rb1o_o1, rb1o_o0
rb1o_m2:	txa                         ; d % count == 0 and d != 0
	jeq #0, rb1o_o0, rb1o_m2b
rb1o_m2b:	ldx M[PIT1_COUNT]
	mod x
	jeq #0, rb1o_o1, rb1o_o0
rb1o_m3:	txa                         ; d % count < (count + 1) / 2
	ldx M[PIT1_COUNT]
	mod x
	tax
	ld M[PIT1_COUNT]
	add #1
	rsh #1
	jgt x, rb1o_o1, rb1o_o0
rb1o_o0:	ld #0
	ja rb1_ogot
rb1o_o1:	ld #1
	ja rb1_ogot
rb1o_x:	ret #PIO_EXIT
rb1_ogot:	lsh #7                      ; OUT << 7 | RW << 4 | mode << 1 | BCD
	tax                         ; (QEMU never sets NULL COUNT)
	ld M[PIT1_RW_MODE]
	lsh #4
	or x
	tax
	ld M[PIT1_MODE]
	lsh #1
	or x
	tax
	ld M[PIT1_BCD]
	or x
	st M[PIT1_STATUS]
	ld #1
	st M[PIT1_STATUS_LATCHED]
rb1_end:	ja rbc2

; ---- read-back of counter 2 (selected by bit 3) ---------------------------
rbc2:	ld [PIO_DATA]
	jset #0x8, rb2, rb_done
rb2:	jset #0x20, rb2_st, rb2_cnt     ; bit 5 clear: latch the count
rb2_cnt:	ld M[PIT2_COUNT_LATCHED]
	jeq #0, rb2_lc, rb2_st      ; (a pending latch is kept)
rb2_lc:
	; -- rb2c: live count of channel 2 (pit_get_count) -> A, then rb2_lgot
	ld [PIO_TICKS_HI]           ; d = ticks - LOAD must fit 32 bits, else the model
	ldx M[PIT2_LOAD_HI]
	jeq x, rb2c_hi, rb2c_hi1
rb2c_hi:	ld [PIO_TICKS]
	ldx M[PIT2_LOAD_LO]
	jge x, rb2c_d, rb2c_x         ; (ticks < LOAD cannot happen; let the model decide)
rb2c_hi1:	txa
	add #1
	tax
	ld [PIO_TICKS_HI]
	jeq x, rb2c_lo1, rb2c_x       ; more than one high word apart: d >= 2^32
rb2c_lo1:	ld [PIO_TICKS]
	ldx M[PIT2_LOAD_LO]
	jge x, rb2c_x, rb2c_d         ; borrow needed, else d >= 2^32
rb2c_d:	sub x                       ; A = d (mod 2^32, exact here)
	tax                         ; X = d
	ld M[PIT2_MODE]
	jeq #3, rb2c_m3, rb2c_n3
rb2c_n3:	jeq #2, rb2c_m2, rb2c_n2
rb2c_n2:	jgt #5, rb2c_m2, rb2c_m0      ; 6, 7 fall in QEMU's default case (mode 2's formula)
rb2c_m0:	ld M[PIT2_COUNT]              ; modes 0, 1, 4, 5: (count - d) & 0xffff
	sub x
	and #0xffff
	ja rb2_lgot
rb2c_m2:	txa                         ; mode 2: count - d % count (never 0)
	ldx M[PIT2_COUNT]             ; COUNT is 1..0x10000; a 0 would abort -> model
	mod x
	neg
	add x
	ja rb2_lgot
rb2c_m3:	txa                         ; mode 3: count - (2 * d) % count, as
	ldx M[PIT2_COUNT]             ; count - (2 * (d % count)) % count: no overflow
	mod x
	lsh #1
	mod x
	neg
	add x
	ja rb2_lgot
rb2c_x:	ret #PIO_EXIT
rb2_lgot:	st M[PIT2_LATCHED]
	ld M[PIT2_RW_MODE]
	st M[PIT2_COUNT_LATCHED]
rb2_st:	ld [PIO_DATA]
	jset #0x10, rb2_end, rb2_s1     ; bit 4 clear: latch the status
rb2_s1:	ld M[PIT2_STATUS_LATCHED]
	jeq #0, rb2_so, rb2_end     ; (a pending status is kept)
rb2_so:
	; -- rb2o: OUT of channel 2 (pit_get_out) -> A, then rb2_ogot
	ld [PIO_TICKS_HI]           ; d = ticks - LOAD must fit 32 bits, else the model
	ldx M[PIT2_LOAD_HI]
	jeq x, rb2o_hi, rb2o_hi1
rb2o_hi:	ld [PIO_TICKS]
	ldx M[PIT2_LOAD_LO]
	jge x, rb2o_d, rb2o_x         ; (ticks < LOAD cannot happen; let the model decide)
rb2o_hi1:	txa
	add #1
	tax
	ld [PIO_TICKS_HI]
	jeq x, rb2o_lo1, rb2o_x       ; more than one high word apart: d >= 2^32
rb2o_lo1:	ld [PIO_TICKS]
	ldx M[PIT2_LOAD_LO]
	jge x, rb2o_x, rb2o_d         ; borrow needed, else d >= 2^32
rb2o_d:	sub x                       ; A = d (mod 2^32, exact here)
	tax                         ; X = d
	ld M[PIT2_MODE]
	jeq #1, rb2o_m1, rb2o_n1
rb2o_n1:	jeq #2, rb2o_m2, rb2o_n2
rb2o_n2:	jeq #3, rb2o_m3, rb2o_n3
rb2o_n3:	jeq #4, rb2o_m45, rb2o_n4
rb2o_n4:	jeq #5, rb2o_m45, rb2o_m0     ; 0 and QEMU's default (6, 7): d >= count
rb2o_m0:	ld M[PIT2_COUNT]
	jgt x, rb2o_o0, rb2o_o1
rb2o_m1:	ld M[PIT2_COUNT]              ; d < count
	jgt x, rb2o_o1, rb2o_o0
rb2o_m45:	ld M[PIT2_COUNT]              ; a pulse when d == count
	jeq x, rb2o_o1, rb2o_o0
rb2o_m2:	txa                         ; d % count == 0 and d != 0
	jeq #0, rb2o_o0, rb2o_m2b
rb2o_m2b:	ldx M[PIT2_COUNT]
	mod x
	jeq #0, rb2o_o1, rb2o_o0
rb2o_m3:	txa                         ; d % count < (count + 1) / 2
	ldx M[PIT2_COUNT]
	mod x
	tax
	ld M[PIT2_COUNT]
	add #1
	rsh #1
	jgt x, rb2o_o1, rb2o_o0
rb2o_o0:	ld #0
	ja rb2_ogot
rb2o_o1:	ld #1
	ja rb2_ogot
rb2o_x:	ret #PIO_EXIT
rb2_ogot:	lsh #7                      ; OUT << 7 | RW << 4 | mode << 1 | BCD
	tax                         ; (QEMU never sets NULL COUNT)
	ld M[PIT2_RW_MODE]
	lsh #4
	or x
	tax
	ld M[PIT2_MODE]
	lsh #1
	or x
	tax
	ld M[PIT2_BCD]
	or x
	st M[PIT2_STATUS]
	ld #1
	st M[PIT2_STATUS_LATCHED]
rb2_end:	ja rb_done

rb_done:	ret #PIO_DONE
