// Pango lays text out (shaping, line breaking, fonts found by fontconfig); cairo draws it and the
// table's lines into a PDF surface that writes through a callback (no temporary file).
#include <pango/pangocairo.h>
#include <cairo-pdf.h>
