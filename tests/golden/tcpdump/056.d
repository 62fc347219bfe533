(000) ldh      [12]
(001) jeq      #0x800           jt 2	jf 11
(002) ldb      [23]
(003) jeq      #0x11            jt 4	jf 11
(004) ldh      [20]
(005) jset     #0x1fff          jt 11	jf 6
(006) jset     #0x1fff          jt 11	jf 7
(007) ldxb     4*([14]&0xf)
(008) ldh      [x + 16]
(009) jeq      #0x12b5          jt 10	jf 11
(010) ret      #262144
(011) ret      #0
