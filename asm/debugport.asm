; debugport.asm -- POST-code port 0x80 and debug console 0xE9: byte sinks.
;
; One program serves both; the model sets M[DBG_SINK] and M[DBG_READBACK]:
;   port 0x80 (QEMU hw/i386/pc.c ioport80): writes are ignored by QEMU, reads
;     return 0xff.  Linux writes it after every outb_p/inb_p (native_io_delay)
;     and firmware writes POST codes there, so every write must stay here:
;     the program records the last code and a count, 100% fast path.
;   port 0xE9 (QEMU hw/char/debugcon.c): every written byte goes to the
;     console; reads return the `readback` property (0xe9, the "E9 hack"
;     presence test).  Written bytes are appended to a ring of
;     DBG_RING_SLOTS shared words; the model drains it (like KVM's coalesced
;     PIO ring).  Only a write that finds the ring full exits: the model
;     drains the ring and then takes the byte itself, so order is kept.
;
; Registers handled: 1-byte IN (readback), 1-byte OUT (record / append).
; Passed on: wider accesses (QEMU splits them into byte accesses of the next
; ports, which belong to other devices; the model keeps the low byte) and
; writes to a full ring.
;
; cBPF has no indexed store (st M[x] does not exist), so "ring[head] = byte"
; is a binary-search jump table on head with one `stx M[k]` leaf per slot:
; five compares for 32 slots.  Nothing is stored before the full check, so an
; exit leaves the shared words exactly as the model expects them.

#include <pio.inc>
#include "debugport.inc"

	ld [PIO_SIZE]
	jeq #1, byte, slow          ; multi-byte: the model splits it
byte:	ld [PIO_DIR]
	jeq #PIO_OUT, write, read
read:	ld M[DBG_READBACK]          ; 0xff (POST) or 0xe9 (debugcon)
	ret #PIO_DONE

write:	ld M[DBG_SINK]
	jeq #0, record, append      ; port 0x80: nothing to keep but the code
append:	ld M[DBG_HEAD]
	jge #DBG_RING_SLOTS, slow, room
room:	ld [PIO_DATA]
	tax                         ; X = the byte, for the table's stx
	st M[DBG_LAST]
	ld M[DBG_COUNT]
	add #1
	st M[DBG_COUNT]
	ld M[DBG_HEAD]              ; A = head (< DBG_RING_SLOTS): pick the slot
s0_32:	jge #16, s16_32, s0_16
s0_16:	jge #8, s8_16, s0_8
s0_8:	jge #4, s4_8, s0_4
s0_4:	jge #2, s2_4, s0_2
s0_2:	jge #1, leaf1, leaf0
leaf0:	stx M[5]		; slot 0
	ja bump
leaf1:	stx M[6]		; slot 1
	ja bump
s2_4:	jge #3, leaf3, leaf2
leaf2:	stx M[7]		; slot 2
	ja bump
leaf3:	stx M[8]		; slot 3
	ja bump
s4_8:	jge #6, s6_8, s4_6
s4_6:	jge #5, leaf5, leaf4
leaf4:	stx M[9]		; slot 4
	ja bump
leaf5:	stx M[10]		; slot 5
	ja bump
s6_8:	jge #7, leaf7, leaf6
leaf6:	stx M[11]		; slot 6
	ja bump
leaf7:	stx M[12]		; slot 7
	ja bump
s8_16:	jge #12, s12_16, s8_12
s8_12:	jge #10, s10_12, s8_10
s8_10:	jge #9, leaf9, leaf8
leaf8:	stx M[13]		; slot 8
	ja bump
leaf9:	stx M[14]		; slot 9
	ja bump
s10_12:	jge #11, leaf11, leaf10
leaf10:	stx M[15]		; slot 10
	ja bump
leaf11:	stx M[16]		; slot 11
	ja bump
s12_16:	jge #14, s14_16, s12_14
s12_14:	jge #13, leaf13, leaf12
leaf12:	stx M[17]		; slot 12
	ja bump
leaf13:	stx M[18]		; slot 13
	ja bump
s14_16:	jge #15, leaf15, leaf14
leaf14:	stx M[19]		; slot 14
	ja bump
leaf15:	stx M[20]		; slot 15
	ja bump
s16_32:	jge #24, s24_32, s16_24
s16_24:	jge #20, s20_24, s16_20
s16_20:	jge #18, s18_20, s16_18
s16_18:	jge #17, leaf17, leaf16
leaf16:	stx M[21]		; slot 16
	ja bump
leaf17:	stx M[22]		; slot 17
	ja bump
s18_20:	jge #19, leaf19, leaf18
leaf18:	stx M[23]		; slot 18
	ja bump
leaf19:	stx M[24]		; slot 19
	ja bump
s20_24:	jge #22, s22_24, s20_22
s20_22:	jge #21, leaf21, leaf20
leaf20:	stx M[25]		; slot 20
	ja bump
leaf21:	stx M[26]		; slot 21
	ja bump
s22_24:	jge #23, leaf23, leaf22
leaf22:	stx M[27]		; slot 22
	ja bump
leaf23:	stx M[28]		; slot 23
	ja bump
s24_32:	jge #28, s28_32, s24_28
s24_28:	jge #26, s26_28, s24_26
s24_26:	jge #25, leaf25, leaf24
leaf24:	stx M[29]		; slot 24
	ja bump
leaf25:	stx M[30]		; slot 25
	ja bump
s26_28:	jge #27, leaf27, leaf26
leaf26:	stx M[31]		; slot 26
	ja bump
leaf27:	stx M[32]		; slot 27
	ja bump
s28_32:	jge #30, s30_32, s28_30
s28_30:	jge #29, leaf29, leaf28
leaf28:	stx M[33]		; slot 28
	ja bump
leaf29:	stx M[34]		; slot 29
	ja bump
s30_32:	jge #31, leaf31, leaf30
leaf30:	stx M[35]		; slot 30
	ja bump
leaf31:	stx M[36]		; slot 31
	ja bump

bump:	ld M[DBG_HEAD]              ; one more byte waiting
	add #1
	st M[DBG_HEAD]
	ret #PIO_DONE

record:	ld [PIO_DATA]
	st M[DBG_LAST]              ; the POST code
	ld M[DBG_COUNT]
	add #1
	st M[DBG_COUNT]
	ret #PIO_DONE

slow:	ret #PIO_EXIT               ; wide access or full ring: the model
