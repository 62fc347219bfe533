; pmtimer.asm -- ACPI PM timer (PM_TMR_BLK, 32-bit read-only counter), all fast path.
;
; Registers handled: the one 4-port register.  Every read returns
;     (PIO_TICKS - M[PMTMR_START]) & 0xffffff
; i.e. the 3.579545 MHz count since the VM started, 24 bits wide, exactly
; QEMU's acpi_pm_tmr_get() (floor(virtual ns * 3579545 / 1e9) & 0xffffff).
; The subtraction is done on the low 32 bits only: 2^24 divides 2^32, so the
; low 24 bits of the difference are right whatever the high words hold.
;
; Access sizes: QEMU >= 5.1 (impl.min_access_size = 4, valid.min = 1) turns a
; 1- or 2-byte read into a 4-byte read and returns its low bytes; the engine
; masks A to the access size on `ret #PIO_DONE`, which is the same thing.
; Writes: QEMU ignores them, so does this program (DONE, nothing stored).
;
; Passed on: nothing.  The timer-overflow status bit (PM1_STS.TMR_STS, set on
; every 2^23-tick boundary) and its SCI live in the PM1 event block, which is
; a different register block and interrupt logic -- not this binding's job.

#include <pio.inc>
#include "pmtimer.inc"

	ldx M[PMTMR_START]      ; X = ticks at VM start (written once by the model)
	ld [PIO_TICKS]          ; A = binding clock, low 32 bits
	sub x                   ; ticks since the VM started (mod 2^32)
	and #PMTMR_MASK         ; 24-bit counter
	ret #PIO_DONE           ; IN: guest gets A & size mask; OUT: ignored
