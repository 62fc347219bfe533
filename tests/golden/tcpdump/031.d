(000) ldh      [12]
(001) jeq      #0x8100          jt 4	jf 2
(002) jeq      #0x88a8          jt 4	jf 3
(003) jeq      #0x9100          jt 4	jf 23
(004) ldh      [16]
(005) jeq      #0x86dd          jt 6	jf 12
(006) ldb      [24]
(007) jeq      #0x6             jt 8	jf 23
(008) ldh      [58]
(009) jeq      #0x50            jt 22	jf 10
(010) ldh      [60]
(011) jeq      #0x50            jt 22	jf 23
(012) jeq      #0x800           jt 13	jf 23
(013) ldb      [27]
(014) jeq      #0x6             jt 15	jf 23
(015) ldh      [24]
(016) jset     #0x1fff          jt 23	jf 17
(017) ldxb     4*([18]&0xf)
(018) ldh      [x + 18]
(019) jeq      #0x50            jt 22	jf 20
(020) ldh      [x + 20]
(021) jeq      #0x50            jt 22	jf 23
(022) ret      #262144
(023) ret      #0
