; debugport.asm -- POST-code port 0x80 and debug console 0xE9: byte sinks.
;
; One program serves both; the model sets M[DBG_SINK] and M[DBG_READBACK]:
;   port 0x80 (QEMU hw/i386/pc.c ioport80): writes are ignored by QEMU, reads
;     return 0xff.  Linux writes it after every outb_p/inb_p (native_io_delay)
;     and firmware writes POST codes there, so every write must stay here:
;     the program records the last code and a count, 100% fast path.
;   port 0xE9 (QEMU hw/char/debugcon.c): every written byte goes to the
;     console; reads return the `readback` property (0xe9, the "E9 hack"
;     presence test).  Written bytes are appended to a 128-byte ring packed
;     four to a shared word; the model drains it (like KVM's coalesced PIO
;     ring).  Only a write that finds the ring full exits: the model drains
;     the ring and then takes the byte itself, so order is kept.
;
; Registers handled: 1-byte IN (readback), 1-byte OUT (record / append).
; Passed on: wider accesses (QEMU splits them into byte accesses of the next
; ports, which belong to other devices; the model keeps the low byte) and
; writes to a full ring.
;
; cBPF has no indexed store (st M[x] does not exist), so "ring[head] = byte"
; is done as: read the ring word with the indexed load `ld [x + ...]`, OR the
; byte into its lane (the model zeroes drained words), then store it through
; a binary-search jump table on the word index with one `stx M[k]` leaf per
; word: five compares for 32 words.  Nothing is stored before the full
; check, so an exit leaves the shared words exactly as the model expects.

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
	jge #DBG_RING_BYTES, slow, room
room:	ld [PIO_DATA]
	st M[DBG_LAST]
	ld M[DBG_COUNT]
	add #1
	st M[DBG_COUNT]
	ld M[DBG_HEAD]              ; lane shift = 24 - 8 * (head % 4)
	and #3
	lsh #3
	tax
	ld #24
	sub x
	tax
	ld [PIO_DATA]
	lsh x
	st M[DBG_TMP]               ; the byte in its lane
	ld M[DBG_HEAD]              ; X = 4 * (head / 4): the word's byte offset
	rsh #2
	lsh #2
	tax
	ld [x + DBG_RING_BYTE]      ; the word so far
	ldx M[DBG_TMP]
	or x
	tax                         ; X = the new word
	ld M[DBG_HEAD]
	rsh #2                      ; A = word index (< 32): pick the leaf
w0_32:	jge #16, w16_32, w0_16
w0_16:	jge #8, w8_16, w0_8
w0_8:	jge #4, w4_8, w0_4
w0_4:	jge #2, w2_4, w0_2
w0_2:	jge #1, word1, word0
word0:	stx M[6]		; ring word 0
	ja bump
word1:	stx M[7]		; ring word 1
	ja bump
w2_4:	jge #3, word3, word2
word2:	stx M[8]		; ring word 2
	ja bump
word3:	stx M[9]		; ring word 3
	ja bump
w4_8:	jge #6, w6_8, w4_6
w4_6:	jge #5, word5, word4
word4:	stx M[10]		; ring word 4
	ja bump
word5:	stx M[11]		; ring word 5
	ja bump
w6_8:	jge #7, word7, word6
word6:	stx M[12]		; ring word 6
	ja bump
word7:	stx M[13]		; ring word 7
	ja bump
w8_16:	jge #12, w12_16, w8_12
w8_12:	jge #10, w10_12, w8_10
w8_10:	jge #9, word9, word8
word8:	stx M[14]		; ring word 8
	ja bump
word9:	stx M[15]		; ring word 9
	ja bump
w10_12:	jge #11, word11, word10
word10:	stx M[16]		; ring word 10
	ja bump
word11:	stx M[17]		; ring word 11
	ja bump
w12_16:	jge #14, w14_16, w12_14
w12_14:	jge #13, word13, word12
word12:	stx M[18]		; ring word 12
	ja bump
word13:	stx M[19]		; ring word 13
	ja bump
w14_16:	jge #15, word15, word14
word14:	stx M[20]		; ring word 14
	ja bump
word15:	stx M[21]		; ring word 15
	ja bump
w16_32:	jge #24, w24_32, w16_24
w16_24:	jge #20, w20_24, w16_20
w16_20:	jge #18, w18_20, w16_18
w16_18:	jge #17, word17, word16
word16:	stx M[22]		; ring word 16
	ja bump
word17:	stx M[23]		; ring word 17
	ja bump
w18_20:	jge #19, word19, word18
word18:	stx M[24]		; ring word 18
	ja bump
word19:	stx M[25]		; ring word 19
	ja bump
w20_24:	jge #22, w22_24, w20_22
w20_22:	jge #21, word21, word20
word20:	stx M[26]		; ring word 20
	ja bump
word21:	stx M[27]		; ring word 21
	ja bump
w22_24:	jge #23, word23, word22
word22:	stx M[28]		; ring word 22
	ja bump
word23:	stx M[29]		; ring word 23
	ja bump
w24_32:	jge #28, w28_32, w24_28
w24_28:	jge #26, w26_28, w24_26
w24_26:	jge #25, word25, word24
word24:	stx M[30]		; ring word 24
	ja bump
word25:	stx M[31]		; ring word 25
	ja bump
w26_28:	jge #27, word27, word26
word26:	stx M[32]		; ring word 26
	ja bump
word27:	stx M[33]		; ring word 27
	ja bump
w28_32:	jge #30, w30_32, w28_30
w28_30:	jge #29, word29, word28
word28:	stx M[34]		; ring word 28
	ja bump
word29:	stx M[35]		; ring word 29
	ja bump
w30_32:	jge #31, word31, word30
word30:	stx M[36]		; ring word 30
	ja bump
word31:	stx M[37]		; ring word 31
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
