(000) ldb      [0]
(001) and      #0xf0
(002) jeq      #0x60            jt 3	jf 4
(003) ret      #262144
(004) ret      #0
