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
(011) jeq      #0x9100          jt 12	jf 29
(012) ldb      [vlanp]
(013) jeq      #0x1             jt 14	jf 16
(014) ldb      [vlan_tci]
(015) ja       17
(016) ldh      [14]
(017) and      #0xfff
(018) jeq      #0x64            jt 19	jf 29
(019) ldx      M[1]
(020) ldh      [x + 12]
(021) jeq      #0x8100          jt 24	jf 22
(022) jeq      #0x88a8          jt 24	jf 23
(023) jeq      #0x9100          jt 24	jf 29
(024) ldx      M[0]
(025) ldh      [x + 14]
(026) and      #0xfff
(027) jeq      #0xc8            jt 28	jf 29
(028) ret      #262144
(029) ret      #0
