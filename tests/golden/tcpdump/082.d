(000) ldh      [12]
(001) jeq      #0x800           jt 2	jf 10
(002) ldh      [16]
(003) st       M[1]
(004) ldb      [14]
(005) and      #0xf
(006) tax      
(007) ld       M[1]
(008) jgt      x                jt 9	jf 10
(009) ret      #262144
(010) ret      #0
