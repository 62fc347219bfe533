(000) ld       #pktlen
(001) sub      #14
(002) jge      #0x200           jt 3	jf 4
(003) ret      #262144
(004) ret      #0
