(000) ld       [0]
(001) jeq      #0x1e000000      jt 4	jf 2
(002) jeq      #0x18000000      jt 4	jf 3
(003) jeq      #0x1c000000      jt 4	jf 5
(004) ret      #262144
(005) ret      #0
