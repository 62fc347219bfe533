(000) ldh      [12]
(001) jeq      #0x8100          jt 4	jf 2
(002) jeq      #0x88a8          jt 4	jf 3
(003) jeq      #0x9100          jt 4	jf 15
(004) ldh      [14]
(005) and      #0xfff
(006) jeq      #0x64            jt 7	jf 15
(007) ldh      [16]
(008) jeq      #0x8100          jt 11	jf 9
(009) jeq      #0x88a8          jt 11	jf 10
(010) jeq      #0x9100          jt 11	jf 15
(011) ldh      [18]
(012) and      #0xfff
(013) jeq      #0xc8            jt 14	jf 15
(014) ret      #262144
(015) ret      #0
