(000) ldh      [2]
(001) jeq      #0x57            jt 2	jf 8
(002) ldb      [10]
(003) jeq      #0x6             jt 4	jf 19
(004) ldh      [44]
(005) jeq      #0x50            jt 18	jf 6
(006) ldh      [46]
(007) jeq      #0x50            jt 18	jf 19
(008) jeq      #0x21            jt 9	jf 19
(009) ldb      [13]
(010) jeq      #0x6             jt 11	jf 19
(011) ldh      [10]
(012) jset     #0x1fff          jt 19	jf 13
(013) ldxb     4*([4]&0xf)
(014) ldh      [x + 4]
(015) jeq      #0x50            jt 18	jf 16
(016) ldh      [x + 6]
(017) jeq      #0x50            jt 18	jf 19
(018) ret      #262144
(019) ret      #0
