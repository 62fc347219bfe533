; pci.asm -- fast path of PCI configuration mechanism #1 (0xCF8..0xCFF).
;
; Handles:
;   * every read of CONFIG_ADDRESS at 0xCF8/0xCFA/0xCFB: QEMU returns the
;     stored register at any width and offset (truncated, not shifted).
;   * 32-bit writes to 0xCF8: store CONFIG_ADDRESS.  Narrower writes at
;     0xCF8/0xCFA/0xCFB are ignored, as in QEMU (Linux's pci_check_type1
;     writes a byte to 0xCFB first): handled as no-ops.
;   * config-data reads at 0xCFC..0xCFF when the enable bit is clear or the
;     bus/device/function is absent: all ones at every width and byte lane
;     (that is how enumeration finds empty slots).
;   * config-data reads of present functions on bus 0: the config space is
;     kept in shared memory (pci.inc), so every read is a table look-up:
;     slot from a 256-byte devfn map, dword from the slot's 64 words, byte
;     lane by a right shift.
;
; Passes on to the model, and why:
;   * anything at 0xCF9: the reset control register (a write may reset).
;   * every config-data write: the target word is computed from
;     CONFIG_ADDRESS, and cBPF has no indexed store (st M[k] takes a constant
;     k), so a program cannot update the shadow; the write masks,
;     write-1-to-clear status bits and BAR sizing are per-byte rules anyway.
;     The model applies them to the shared copy, so the next read (the size
;     probe) is fast again.
;   * reads that cross a dword (byte lane + width > 4): QEMU reads across;
;     a single shifted word cannot.
#include <pio.inc>
#include "pci.inc"

        ld [PIO_OFFSET]
        jge #PCI_CONFIG_DATA, data, addr

; ---- 0xCF8..0xCFB ----------------------------------------------------------
addr:   jeq #PCI_RESET_CONTROL, slow, addr2
addr2:  ld [PIO_DIR]
        jeq #PIO_OUT, awrite, aread
aread:  ld M[PCI_ADDR]
        ret #PIO_DONE
awrite: ld [PIO_SIZE]
        jeq #4, awide, ignore
awide:  ld [PIO_OFFSET]
        jeq #0, astore, ignore          ; a dword at 0xCFA would be unaligned
astore: ld [PIO_DATA]
        st M[PCI_ADDR]
ignore: ret #PIO_DONE

; ---- 0xCFC..0xCFF ----------------------------------------------------------
data:   ld [PIO_DIR]
        jeq #PIO_OUT, slow, dread
dread:  ld M[PCI_ADDR]
        jset #0x80000000, enabled, ones
enabled:
        and #0x00ff0000
        jeq #0, bus0, ones              ; no bridges: only bus 0 has devices
bus0:   ld [PIO_OFFSET]
        and #3
        tax                             ; X = byte lane (port & 3)
        ld M[PCI_ADDR]
        or x                            ; QEMU: config_reg | (port & 3)
        and #0xff                       ; register byte address
        st M[PCI_TMP]
        and #3
        tax
        ld [PIO_SIZE]
        add x
        jgt #4, slow                    ; crosses a dword: the model reads across
        txa
        lsh #3
        st M[PCI_SHIFT]                 ; 8 * (reg & 3)
        ld M[PCI_ADDR]
        rsh #8
        and #0xff
        tax                             ; X = devfn
        ldb [x + PCI_MAP_BYTE]          ; slot + 1, or 0 when absent
        jeq #0, ones
        sub #1
        lsh #8                          ; 256 bytes of shadow per slot
        tax
        ld M[PCI_TMP]
        and #0xfc
        add x
        tax                             ; X = slot * 256 + dword byte offset
        ld [x + PCI_SHADOW_BYTE]        ; the dword, little-endian value
        ldx M[PCI_SHIFT]
        rsh x                           ; the engine masks A to the access size
        ret #PIO_DONE
ones:   ld #0xffffffff
        ret #PIO_DONE

slow:   ret #PIO_EXIT
