(000) ld       [0]
(001) jeq      #0x2             jt 2	jf 5
(002) ldb      [13]
(003) jeq      #0x11            jt 4	jf 5
(004) ret      #262144
(005) ret      #0
