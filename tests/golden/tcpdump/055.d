(000) ldh      [12]
(001) jeq      #0x800           jt 2	jf 20
(002) ld       [26]
(003) jeq      #0x1020304       jt 6	jf 4
(004) ld       [30]
(005) jeq      #0x1020304       jt 6	jf 20
(006) ldb      [23]
(007) jeq      #0x84            jt 10	jf 8
(008) jeq      #0x6             jt 10	jf 9
(009) jeq      #0x11            jt 10	jf 20
(010) ldh      [20]
(011) jset     #0x1fff          jt 20	jf 12
(012) ldxb     4*([14]&0xf)
(013) ldh      [x + 14]
(014) jeq      #0x50            jt 19	jf 15
(015) jeq      #0x1bb           jt 19	jf 16
(016) ldh      [x + 16]
(017) jeq      #0x50            jt 19	jf 18
(018) jeq      #0x1bb           jt 19	jf 20
(019) ret      #262144
(020) ret      #0
