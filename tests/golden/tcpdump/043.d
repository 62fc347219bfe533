(000) ldh      [12]
(001) jeq      #0x800           jt 2	jf 12
(002) ldb      [23]
(003) jeq      #0x6             jt 5	jf 4
(004) jeq      #0x11            jt 5	jf 22
(005) ldh      [20]
(006) jset     #0x1fff          jt 22	jf 7
(007) ldxb     4*([14]&0xf)
(008) ldh      [x + 14]
(009) jeq      #0x35            jt 21	jf 10
(010) ldh      [x + 16]
(011) jeq      #0x35            jt 21	jf 22
(012) jeq      #0x86dd          jt 13	jf 22
(013) ldb      [20]
(014) jeq      #0x6             jt 17	jf 15
(015) jeq      #0x2c            jt 22	jf 16
(016) jeq      #0x11            jt 17	jf 22
(017) ldh      [54]
(018) jeq      #0x35            jt 21	jf 19
(019) ldh      [56]
(020) jeq      #0x35            jt 21	jf 22
(021) ret      #262144
(022) ret      #0
