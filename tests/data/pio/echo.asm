; echo.asm -- a one-register latch: an OUT stores the value, an IN reads it back.
#include <pio.inc>
	ld [PIO_DIR]
	jeq #PIO_IN, rd
	ld [PIO_DATA]
	st M[0]
	ret #PIO_DONE
rd:	ld M[0]
	ret #PIO_DONE
