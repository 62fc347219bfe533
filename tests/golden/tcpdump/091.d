(000) ldb      [3]
(001) lsh      #8
(002) tax      
(003) ldb      [2]
(004) or       x
(005) st       M[0]
(006) tax      
(007) txa      
(008) add      #24
(009) st       M[1]
(010) ldb      [x + 0]
(011) jset     #0x8             jt 12	jf 29
(012) jset     #0x4             jt 29	jf 13
(013) jset     #0x80            jt 14	jf 17
(014) ld       M[1]
(015) add      #2
(016) st       M[1]
(017) ld       [4]
(018) jset     #0x2000000       jt 19	jf 29
(019) jset     #0x80            jt 29	jf 20
(020) jset     #0x1000000       jt 21	jf 23
(021) ldb      [16]
(022) jset     #0x20            jt 25	jf 29
(023) ldb      [8]
(024) jset     #0x20            jt 25	jf 29
(025) ld       M[1]
(026) add      #3
(027) and      #0xfffffffc
(028) st       M[1]
(029) ldx      M[0]
(030) ldb      [x + 0]
(031) jset     #0x4             jt 39	jf 32
(032) ldx      M[0]
(033) ldb      [x + 0]
(034) jset     #0x8             jt 35	jf 39
(035) ldx      M[1]
(036) ldh      [x + 6]
(037) jeq      #0x800           jt 38	jf 39
(038) ret      #262144
(039) ret      #0
