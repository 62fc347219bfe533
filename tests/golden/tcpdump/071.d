(000) ldb      [0]
(001) and      #0xf0
(002) jeq      #0x40            jt 3	jf 7
(003) ldb      [0]
(004) and      #0xf
(005) jeq      #0x5             jt 7	jf 6
(006) ret      #262144
(007) ret      #0
