(000) ldb      [3]
(001) lsh      #8
(002) tax      
(003) ldb      [2]
(004) or       x
(005) tax      
(006) ldb      [x + 0]
(007) and      #0xc
(008) jeq      #0x8             jt 9	jf 10
(009) ret      #262144
(010) ret      #0
