; uart.asm -- fast path of a 16550A UART (COM1: base 0x3F8, length 8).
;
; Handles, without leaving the "kernel":
;   * byte reads of any register whose read is side-effect free right now
;     (LSR while no BI/OE, IIR while THR-empty is not the reported interrupt,
;     IER, LCR, MCR, MSR without deltas, SCR, DLL/DLM while DLAB).  The values
;     come from words 0..7 that bpfio.devices.uart publishes after each access
;     it serves; bit i of M[UART_FASTRD] says whether offset i may be served.
;     This is the LSR polling loop of every console driver: always 0x60.
;   * byte writes to SCR (the register is word 7 itself).
;   * byte writes to THR while M[UART_TXOK] says the write has no visible
;     effect besides the byte (DLAB, THR interrupt and loopback all off): the
;     byte goes to a 16-slot TX ring in shared memory.  cBPF has no indexed
;     store, so the ring is appended through a jump table on the fill count.
;     A full ring exits; the model drains the ring (oldest first) on every
;     entry before it does anything else, so output order is kept and there is
;     one exit per 17 bytes of console output instead of one per byte.
;
; Passes on to the model (ret #PIO_EXIT), and why:
;   * 2- and 4-byte accesses: QEMU splits them into byte accesses (impl 1..1);
;     the model does the same, one program run cannot.
;   * RBR reads: they pop the RX FIFO, re-arm the character timeout and let
;     the host deliver more input.
;   * IIR reads while THR-empty is reported (the read acknowledges it) or
;     while a character-timeout interrupt may become due.
;   * LSR reads with BI/OE set, MSR reads with deltas set (reads clear them).
;   * writes to IER, FCR, LCR, MCR (interrupt, FIFO and divisor side effects),
;     divisor latch writes, and THR writes when M[UART_TXOK] is 0.
#include <pio.inc>
#include "uart.inc"

        ld [PIO_SIZE]
        jeq #1, byte, slow
byte:   ld [PIO_DIR]
        jeq #PIO_OUT, write, read

; ---- IN: answer from the published register values -------------------------
read:   ld [PIO_OFFSET]
        tax                             ; X = register offset 0..7
        ld #1
        lsh x                           ; A = 1 << offset
        tax
        ld M[UART_FASTRD]
        and x
        jeq #0, slow                    ; this read has a side effect now
        ld [PIO_OFFSET]
        lsh #2
        tax                             ; X = 4 * offset
        ld [x + UART_SHADOW_BYTE]       ; M[offset]
        ret #PIO_DONE

; ---- OUT -------------------------------------------------------------------
write:  ld [PIO_OFFSET]
        jeq #UART_SCR, scr, notscr
scr:    ld [PIO_DATA]
        st M[UART_SCR_WORD]
        ret #PIO_DONE
notscr: jeq #UART_THR, thr, slow
thr:    ld M[UART_TXOK]
        jeq #0, slow                    ; DLAB, THRI or loopback: the model
        ld M[UART_TXCNT]
        ; jump table: slot = fill count (no indexed store in cBPF)
        jeq #0, s0
        jeq #1, s1
        jeq #2, s2
        jeq #3, s3
        jeq #4, s4
        jeq #5, s5
        jeq #6, s6
        jeq #7, s7
        jeq #8, s8
        jeq #9, s9
        jeq #10, s10
        jeq #11, s11
        jeq #12, s12
        jeq #13, s13
        jeq #14, s14
        jeq #15, s15, slow              ; ring full: the model drains it
s0:     ld [PIO_DATA]
        st M[16]                        ; UART_RING + 0
        ja bump
s1:     ld [PIO_DATA]
        st M[17]
        ja bump
s2:     ld [PIO_DATA]
        st M[18]
        ja bump
s3:     ld [PIO_DATA]
        st M[19]
        ja bump
s4:     ld [PIO_DATA]
        st M[20]
        ja bump
s5:     ld [PIO_DATA]
        st M[21]
        ja bump
s6:     ld [PIO_DATA]
        st M[22]
        ja bump
s7:     ld [PIO_DATA]
        st M[23]
        ja bump
s8:     ld [PIO_DATA]
        st M[24]
        ja bump
s9:     ld [PIO_DATA]
        st M[25]
        ja bump
s10:    ld [PIO_DATA]
        st M[26]
        ja bump
s11:    ld [PIO_DATA]
        st M[27]
        ja bump
s12:    ld [PIO_DATA]
        st M[28]
        ja bump
s13:    ld [PIO_DATA]
        st M[29]
        ja bump
s14:    ld [PIO_DATA]
        st M[30]
        ja bump
s15:    ld [PIO_DATA]
        st M[31]                        ; UART_RING + 15
bump:   ld M[UART_TXCNT]
        add #1
        st M[UART_TXCNT]
        ret #PIO_DONE

slow:   ret #PIO_EXIT
