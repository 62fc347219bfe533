(000) ldh      [12]
(001) jeq      #0x800           jt 2	jf 9
(002) ldb      [14]
(003) st       M[1]
(004) ldb      [15]
(005) tax      
(006) ld       M[1]
(007) jeq      x                jt 8	jf 9
(008) ret      #262144
(009) ret      #0
