(000) ldh      [12]
(001) jeq      #0x800           jt 2	jf 14
(002) ld       [26]
(003) jeq      #0x1020304       jt 4	jf 14
(004) ldb      [23]
(005) jeq      #0x84            jt 8	jf 6
(006) jeq      #0x6             jt 8	jf 7
(007) jeq      #0x11            jt 8	jf 14
(008) ldh      [20]
(009) jset     #0x1fff          jt 14	jf 10
(010) ldxb     4*([14]&0xf)
(011) ldh      [x + 16]
(012) jeq      #0x1bb           jt 13	jf 14
(013) ret      #262144
(014) ret      #0
