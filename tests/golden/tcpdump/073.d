(000) ldb      [0]
(001) and      #0xf0
(002) jeq      #0x40            jt 3	jf 6
(003) ldb      [9]
(004) jeq      #0x1             jt 5	jf 6
(005) ret      #262144
(006) ret      #0
