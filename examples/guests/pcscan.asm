; pcscan -- enumerate PCI bus 0 through configuration mechanism #1.
; First the Linux pci_check_type1() probe (byte write to 0xcfb, then
; 0x80000000 must read back from 0xcf8), then for every device 0..31 the
; vendor/device dword at register 0; the header-type byte (register 0x0e,
; read as a byte at 0xcfe) says whether functions 1..7 exist.  Prints one
; line per function found: "00:dd.f vvvv:dddd class cccccc".
%include "lib.inc"

main:
        call uart_init_once
        mov dx, 0xCFB
        mov al, 0x01
        out dx, al
        mov dx, 0xCF8
        in eax, dx
        mov ebp, eax            ; saved CONFIG_ADDRESS
        mov eax, 0x80000000
        out dx, eax
        in eax, dx
        xchg eax, ebp
        out dx, eax             ; restore
        cmp ebp, 0x80000000
        je .type1
        print "pcscan: no type 1 configuration mechanism", 10
        hlt
.type1: print "pcscan: type 1 configuration mechanism", 10
        xor edi, edi            ; functions found
        xor ebx, ebx            ; device << 11 | function << 8
.fn:    mov eax, ebx
        xor cl, cl
        call cfg_read
        cmp ax, 0xFFFF
        je .absent
        inc edi
        push eax
        print "00:"
        mov eax, ebx
        shr eax, 11
        mov cl, 2
        call put_hex
        print "."
        mov eax, ebx
        shr eax, 8
        and eax, 7
        mov cl, 1
        call put_hex
        print " "
        pop eax
        push eax
        mov cl, 4
        call put_hex            ; vendor
        print ":"
        pop eax
        shr eax, 16
        mov cl, 4
        call put_hex            ; device
        print " class "
        mov eax, ebx
        mov cl, 0x08
        call cfg_read
        shr eax, 8
        mov cl, 6
        call put_hex
        call newline
        test ebx, 0x700
        jnz .nextfn             ; function 1..7: keep scanning functions
        mov eax, ebx            ; function 0: header type bit 7 = multi-function
        mov cl, 0x0C
        or eax, 0x80000000
        mov dx, 0xCF8
        out dx, eax
        mov dx, 0xCFE
        in al, dx
        test al, 0x80
        jnz .nextfn
        jmp .nextdev
.absent:
        test ebx, 0x700
        jnz .nextfn
.nextdev:
        and ebx, ~0x7FF
        add ebx, 0x800
        jmp .check
.nextfn:
        add ebx, 0x100
.check: cmp ebx, 32 << 11
        jb .fn
        print "pcscan: "
        mov eax, edi
        call put_dec
        print " functions on bus 0", 10
        hlt

; cfg_read: EAX = dev/fn bits, CL = register -> EAX = config dword.
cfg_read:
        push edx
        movzx ecx, cl
        or eax, ecx
        or eax, 0x80000000
        mov dx, 0xCF8
        out dx, eax
        mov dx, 0xCFC
        in eax, dx
        pop edx
        ret
