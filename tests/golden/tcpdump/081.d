(000) ldh      [12]
(001) jeq      #0x800           jt 2	jf 10
(002) ldb      [23]
(003) st       M[1]
(004) ldb      [22]
(005) tax      
(006) ld       M[1]
(007) mul      x
(008) jeq      #0x0             jt 9	jf 10
(009) ret      #262144
(010) ret      #0
