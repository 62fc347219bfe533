(000) ld       #pktlen
(001) jge      #0x3e8           jt 2	jf 3
(002) ret      #262144
(003) ret      #0
