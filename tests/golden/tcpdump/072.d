(000) ld       #pktlen
(001) jge      #0x28            jt 2	jf 3
(002) ret      #0
(003) ret      #262144
