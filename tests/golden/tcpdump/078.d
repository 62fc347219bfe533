(000) ld       #0x0
(001) st       M[0]
(002) st       M[1]
(003) ldb      [vlanp]
(004) jeq      #0x1             jt 12	jf 5
(005) ld       #0x4
(006) st       M[0]
(007) st       M[1]
(008) ldh      [12]
(009) jeq      #0x8100          jt 12	jf 10
(010) jeq      #0x88a8          jt 12	jf 11
(011) jeq      #0x9100          jt 12	jf 48
(012) ldx      M[1]
(013) ldh      [x + 12]
(014) jeq      #0x86dd          jt 15	jf 24
(015) ldx      M[0]
(016) ldb      [x + 20]
(017) jeq      #0x6             jt 18	jf 48
(018) ldx      M[0]
(019) ldh      [x + 54]
(020) jeq      #0x50            jt 47	jf 21
(021) ldx      M[0]
(022) ldh      [x + 56]
(023) jeq      #0x50            jt 47	jf 48
(024) jeq      #0x800           jt 25	jf 48
(025) ldx      M[0]
(026) ldb      [x + 23]
(027) jeq      #0x6             jt 28	jf 48
(028) ldx      M[0]
(029) ldh      [x + 20]
(030) jset     #0x1fff          jt 48	jf 31
(031) ldx      M[0]
(032) ldb      [x + 14]
(033) and      #0xf
(034) lsh      #2
(035) add      x
(036) tax      
(037) ldh      [x + 14]
(038) jeq      #0x50            jt 47	jf 39
(039) ldx      M[0]
(040) ldb      [x + 14]
(041) and      #0xf
(042) lsh      #2
(043) add      x
(044) tax      
(045) ldh      [x + 16]
(046) jeq      #0x50            jt 47	jf 48
(047) ret      #262144
(048) ret      #0
