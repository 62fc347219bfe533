(000) ldh      [12]
(001) jeq      #0x800           jt 2	jf 9
(002) ldb      [23]
(003) sub      #1
(004) jge      #0x10            jt 9	jf 5
(005) ldb      [14]
(006) and      #0xf
(007) jgt      #0x5             jt 8	jf 9
(008) ret      #262144
(009) ret      #0
