; port61.asm -- port 0x61 (system control port B: speaker gate/data, PIT
; channel 2 output, refresh toggle): reads on the fast path.
;
; Read value (QEMU hw/audio/pcspk.c and KVM's in-kernel speaker port):
;   bit 0  channel 2 gate            M[P61_GATE]
;   bit 1  speaker data enable       M[P61_DATA_ON]
;   bit 4  refresh toggle            bit 14 of host ns, as KVM does (QEMU
;                                    instead flips it on every read)
;   bit 5  channel 2 OUT             pit_get_out() from the channel-2 mirror
; Linux's pit_calibrate_tsc spins on bit 5 and quick_pit_calibrate gates
; channel 2 here, so reads must not exit.
;
; Passed on: writes (bit 0 changes channel 2's gate, which restarts modes
; 1/2/3/5 in the PIT model, and bit 1 drives the speaker), multi-byte
; accesses, and an elapsed time that does not fit 32 bits.
;
; This binding cannot see the PIT binding's memory; the PIT model mirrors
; the channel-2 fields OUT depends on (COUNT, LOAD, MODE, GATE) into
; M[P61_*] whenever it changes them.

#include <pio.inc>
#include "pit.inc"

	ld [PIO_SIZE]
	jeq #1, byte, slow
byte:	ld [PIO_DIR]
	jeq #PIO_OUT, slow, rd      ; gate/speaker writes: the model

rd:	ld [PIO_TICKS_HI]           ; d = ticks - LOAD, exit unless it fits 32 bits
	ldx M[P61_LOAD_HI]
	jeq x, hi, hi1
hi:	ld [PIO_TICKS]
	ldx M[P61_LOAD_LO]
	jge x, got_d, slow
hi1:	txa
	add #1
	tax
	ld [PIO_TICKS_HI]
	jeq x, lo1, slow
lo1:	ld [PIO_TICKS]
	ldx M[P61_LOAD_LO]
	jge x, slow, got_d
got_d:	sub x
	tax                         ; X = d
	ld M[P61_MODE]              ; pit_get_out(), per mode
	jeq #1, m1, n1
n1:	jeq #2, m2, n2
n2:	jeq #3, m3, n3
n3:	jeq #4, m45, n4
n4:	jeq #5, m45, m0             ; 0 and QEMU's default (6, 7): d >= count
m0:	ld M[P61_COUNT]
	jgt x, out0, out1
m1:	ld M[P61_COUNT]             ; d < count
	jgt x, out1, out0
m45:	ld M[P61_COUNT]             ; a pulse when d == count
	jeq x, out1, out0
m2:	txa                         ; d % count == 0 and d != 0
	jeq #0, out0, m2b
m2b:	ldx M[P61_COUNT]
	mod x
	jeq #0, out1, out0
m3:	txa                         ; d % count < (count + 1) / 2
	ldx M[P61_COUNT]
	mod x
	tax
	ld M[P61_COUNT]
	add #1
	rsh #1
	jgt x, out1, out0
out0:	ld #0
	ja value
out1:	ld #0x20                    ; OUT2 is bit 5
value:	tax
	ld [PIO_NS]                 ; refresh toggle: ns bit 14 -> bit 4
	rsh #10
	and #0x10
	or x
	tax
	ld M[P61_DATA_ON]
	lsh #1
	or x
	tax
	ld M[P61_GATE]
	or x
	ret #PIO_DONE
slow:	ret #PIO_EXIT
